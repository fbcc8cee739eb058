"""Writes shared by the tasks: idempotent upserts of sources, raw items, contents and stories, and
source health. Everything takes the caller's session; nothing commits."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from tasks.db.models import Content, RawItem, Source, SourceHealth, Story
from tasks.lib.providers import StoryText
from tasks.lib.text import Extracted, content_hash, truncate

#: Longest back-off between checks of a failing source (seconds).
MAX_BACKOFF = 24 * 3600


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def get_or_create_source(session: Session, type_: str, url: str, name: str | None = None) -> Source:
    """The source with this (type, url), created if missing (concurrency-safe)."""
    session.execute(
        insert(Source)
        .values(id=uuid.uuid4(), type=type_, url=url, name=name)
        .on_conflict_do_nothing(index_elements=[Source.type, Source.url])
    )
    return session.scalars(select(Source).where(Source.type == type_, Source.url == url)).one()


def insert_raw_item(session: Session, **values: Any) -> uuid.UUID | None:
    """Insert a raw item; its id, or None when (source_id, external_id) already exists."""
    values.setdefault("id", uuid.uuid4())
    return session.scalar(
        insert(RawItem)
        .values(**values)
        .on_conflict_do_nothing(index_elements=[RawItem.source_id, RawItem.external_id])
        .returning(RawItem.id)
    )


def record_health(
    session: Session,
    source: Source,
    status: str,
    *,
    http_status: int | None = None,
    error: str | None = None,
    now: dt.datetime | None = None,
) -> int:
    """Record the outcome of one check of ``source`` and schedule the next one.

    ``status``: ok, warn (usable but something is off, e.g. a broken feed that still had entries) or
    error. Returns the consecutive failure count. Failing sources back off exponentially.
    """
    now = now or utcnow()
    failed = status == "error"
    message = truncate(error, 1000) if error else None
    stmt = insert(SourceHealth).values(
        source_id=source.id,
        status=status,
        last_http_status=http_status,
        last_error=message,
        consecutive_failures=1 if failed else 0,
        last_checked_at=now,
        last_success_at=None if failed else now,
        last_error_at=now if failed else None,
        updated_at=now,
    )
    excluded = stmt.excluded
    stmt = stmt.on_conflict_do_update(
        index_elements=[SourceHealth.source_id],
        set_={
            "status": excluded.status,
            "last_http_status": excluded.last_http_status,
            "last_error": excluded.last_error,
            "consecutive_failures": (SourceHealth.consecutive_failures + 1) if failed else 0,
            "last_checked_at": now,
            "last_success_at": SourceHealth.last_success_at if failed else now,
            "last_error_at": now if failed else SourceHealth.last_error_at,
            "updated_at": now,
        },
    ).returning(SourceHealth.consecutive_failures)
    failures = int(session.scalar(stmt) or 0)
    interval = source.check_interval_seconds
    delay = min(interval * (2 ** min(failures, 10)), MAX_BACKOFF) if failures else interval
    source.next_check_at = now + dt.timedelta(seconds=delay)
    return failures


@dataclass(frozen=True)
class Stored:
    story_id: uuid.UUID
    content_id: uuid.UUID
    #: A new story (so it needs analysing); False when the text was already known.
    created: bool


def store_document(
    session: Session,
    raw_item: RawItem,
    extracted: Extracted,
    *,
    content_type: str,
    story_kind: str,
    html_url: str | None = None,
) -> Stored:
    """Attach ``extracted`` text to ``raw_item``: one content row per distinct text, one story per content.

    The raw item is marked fetched. Safe against concurrent workers storing the same text.
    """
    digest = content_hash(extracted.text)
    session.execute(
        insert(Content)
        .values(
            id=uuid.uuid4(),
            raw_item_id=raw_item.id,
            content_type=content_type,
            title=extracted.title,
            text=extracted.text,
            html_url=html_url,
            language=extracted.language,
            content_hash=digest,
        )
        .on_conflict_do_nothing(index_elements=[Content.content_hash])
    )
    content_id = session.scalar(select(Content.id).where(Content.content_hash == digest))
    assert content_id is not None
    story_id = session.scalar(
        insert(Story)
        .values(
            id=uuid.uuid4(),
            content_id=content_id,
            source_id=raw_item.source_id,
            kind=story_kind,
            url=raw_item.canonical_url or html_url or raw_item.url,
            title=extracted.title or raw_item.title,
            published_at=raw_item.published_at,
        )
        .on_conflict_do_nothing(index_elements=[Story.content_id])
        .returning(Story.id)
    )
    created = story_id is not None
    if story_id is None:
        story_id = session.scalar(select(Story.id).where(Story.content_id == content_id))
    assert story_id is not None
    raw_item.content_id = content_id
    raw_item.status = "fetched"
    raw_item.fetch_error = None
    return Stored(story_id, content_id, created)


def story_text(story: Story) -> StoryText:
    """What providers and extractors see of a story (its content's text, source authority)."""
    return StoryText(
        title=story.title or story.content.title,
        text=story.content.text,
        url=story.url or story.content.html_url,
        published_at=story.published_at,
        authority=story.source.authority if story.source is not None else None,
    )
