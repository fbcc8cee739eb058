"""Checking a source's feed: conditional GET, parse, and the bookkeeping (validators, health, next
check) that ingest-source and ingest-pull-youtube share."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from tasks.db.models import Source
from tasks.lib.errors import FetchFailed, RetryLater, TaskError
from tasks.lib.feeds import ParsedFeed, parse_feed
from tasks.lib.fetching import FEED_TYPES, Fetcher
from tasks.lib.store import record_health, utcnow

#: ``metadata`` key marking a source the demo registered (tasks.demo); its value names the sample.
DEMO_KEY = "demo"


@dataclass(frozen=True)
class SourceRef:
    """A source's fields as read before the (transaction-free) fetch."""

    id: uuid.UUID
    type: str
    url: str | None
    active: bool
    etag: str | None
    last_modified: str | None
    metadata: dict

    @classmethod
    def of(cls, source: Source) -> SourceRef:
        return cls(
            source.id,
            source.type,
            source.url,
            source.active,
            source.etag,
            source.last_modified,
            dict(source.metadata_ or {}),
        )


@dataclass(frozen=True)
class FeedCheck:
    """What one feed request gave."""

    #: ok | warn | not_modified | error
    status: str
    http_status: int | None = None
    feed: ParsedFeed | None = None
    etag: str | None = None
    last_modified: str | None = None
    error: str | None = None
    #: The failure is transient; the server asked for this many seconds (or our default).
    retry_after: float | None = None

    @property
    def failed(self) -> bool:
        return self.status == "error"


def check_feed(
    fetcher: Fetcher,
    url: str,
    *,
    etag: str | None = None,
    last_modified: str | None = None,
    limit: int = 200,
) -> FeedCheck:
    """GET and parse a feed; never raises for a fetch or parse failure (it is in the result)."""
    headers = {"Accept": "application/rss+xml, application/atom+xml, application/xml;q=0.9, */*;q=0.5"}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    try:
        result = fetcher.get(url, headers=headers, accept=FEED_TYPES)
    except RetryLater as exc:
        return FeedCheck("error", error=str(exc), retry_after=exc.seconds)
    except FetchFailed as exc:
        return FeedCheck("error", http_status=exc.status, error=str(exc))
    except TaskError as exc:  # UnsafeURL and friends
        return FeedCheck("error", error=str(exc))
    if result.not_modified:
        return FeedCheck("not_modified", 304, etag=etag, last_modified=last_modified)
    try:
        feed = parse_feed(
            result.content, url=result.url, content_type=result.headers.get("content-type"), limit=limit
        )
    except TaskError as exc:
        return FeedCheck("error", result.status, error=str(exc))
    return FeedCheck(
        "warn" if feed.problem else "ok",
        result.status,
        feed,
        etag=result.headers.get("etag"),
        last_modified=result.headers.get("last-modified"),
        error=feed.problem,
    )


def save_check(session: Session, source: Source, check: FeedCheck, now: dt.datetime | None = None) -> int:
    """Store validators and health of one check; returns the consecutive failure count."""
    now = now or utcnow()
    if check.status in ("ok", "warn"):
        source.etag = check.etag
        source.last_modified = check.last_modified
    health = "ok" if check.status == "not_modified" else check.status
    failures = record_health(
        session, source, health, http_status=check.http_status, error=check.error, now=now
    )
    if check.retry_after and source.next_check_at is not None:
        source.next_check_at = max(source.next_check_at, now + dt.timedelta(seconds=check.retry_after))
    return failures


def claim_due_sources(
    session: Session,
    type_: str,
    *,
    force: bool = False,
    only: list[uuid.UUID] | None = None,
    now: dt.datetime | None = None,
    include_demo: bool = False,
) -> list[Source]:
    """Active sources of ``type_`` that are due (or all active ones with ``force``), locked and leased.

    Demo sources (``metadata.demo``) point at the sample server of a ``zeke run`` demo, which is gone
    once that run ends: only a demo run's own processes (``include_demo``) take them.

    Leasing moves ``next_check_at`` one interval ahead, so a second pull before the check finishes
    does not enqueue the source twice; the check then sets the real next time.
    """
    now = now or utcnow()
    query = select(Source).where(Source.type == type_, Source.active.is_(True), Source.url.is_not(None))
    if not force:
        query = query.where(or_(Source.next_check_at.is_(None), Source.next_check_at <= now))
    if only:
        query = query.where(Source.id.in_(only))
    if not include_demo:
        query = query.where(~Source.metadata_.has_key(DEMO_KEY))
    sources = list(
        session.scalars(
            query.order_by(Source.next_check_at.nulls_first(), Source.id).with_for_update(skip_locked=True)
        )
    )
    for source in sources:
        source.next_check_at = now + dt.timedelta(seconds=source.check_interval_seconds)
    return sources
