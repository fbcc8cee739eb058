"""ingest-source: check one RSS/Atom source and store its new entries as raw items.

Conditional GET (ETag / Last-Modified), feedparser (a broken feed that still yields entries is used
and the source marked ``warn``), entries normalised (canonical URL, guid/link, title, published time),
raw items upserted idempotently on (source, external id), source health recorded, and the new items
sent to fetch-content in chunks. A failed check is recorded in ``source_health`` and backs the source
off; it does not fail the job (the next pull retries it).
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Literal

from sqlalchemy import select

from tasks.db.models import RawItem, Source
from tasks.ingestion.fetch_content import FetchContentPayload
from tasks.lib.context import Context, Payload, chunked, send
from tasks.lib.fetching import Fetcher
from tasks.lib.sources import FeedCheck, SourceRef, check_feed, save_check
from tasks.lib.store import insert_raw_item, utcnow

TASK_ID = "ingest-source"
#: Pending items older than this with no content are sent to fetch-content again (their job was lost).
STALE_PENDING = dt.timedelta(hours=1)


class IngestSourcePayload(Payload):
    task_id = TASK_ID

    source_id: uuid.UUID
    reason: Literal["schedule", "manual", "retry"] = "schedule"
    #: Ignore the stored ETag/Last-Modified and fetch the whole feed.
    force: bool = False


PAYLOAD = IngestSourcePayload


def run(payload: IngestSourcePayload, ctx: Context) -> dict:
    with ctx.session_factory.begin() as session:
        source = session.get(Source, payload.source_id)
        ref = SourceRef.of(source) if source is not None else None
    if ref is None:
        ctx.logger.warning("ingest_source_missing", source_id=str(payload.source_id))
        return {"sourceId": str(payload.source_id), "status": "missing"}
    if ref.type != "rss" or not ref.url:
        return {
            "sourceId": str(ref.id),
            "status": "skipped",
            "reason": f"not an rss source with a url ({ref.type})",
        }
    if not ref.active and payload.reason == "schedule":
        return {"sourceId": str(ref.id), "status": "skipped", "reason": "inactive"}

    with Fetcher(ctx.settings) as fetcher:
        check = check_feed(
            fetcher,
            ref.url,
            etag=None if payload.force else ref.etag,
            last_modified=None if payload.force else ref.last_modified,
            limit=ctx.settings.max_feed_items,
        )
    new_ids, stale_ids, failures = _store(ctx, ref.id, check)
    if check.failed:
        ctx.logger.warning(
            "ingest_source_failed", source_id=str(ref.id), error=check.error, failures=failures
        )
    for ids in chunked(new_ids + stale_ids, ctx.settings.fetch_chunk_size):
        send(ctx, FetchContentPayload(raw_item_ids=ids))
    result = {
        "sourceId": str(ref.id),
        "status": check.status,
        "httpStatus": check.http_status,
        "itemsSeen": len(check.feed.entries) if check.feed else 0,
        "itemsInserted": len(new_ids),
        "itemsRequeued": len(stale_ids),
    }
    if check.error:
        result["error"] = check.error
    if check.failed:
        result["consecutiveFailures"] = failures
        result["retryable"] = check.retry_after is not None
    ctx.logger.info("ingest_source_done", **result)
    return result


def _store(
    ctx: Context, source_id: uuid.UUID, check: FeedCheck
) -> tuple[list[uuid.UUID], list[uuid.UUID], int]:
    now = utcnow()
    new_ids: list[uuid.UUID] = []
    with ctx.session_factory.begin() as session:
        source = session.get(Source, source_id, with_for_update=True)
        if source is None:  # deleted while we were fetching
            return [], [], 0
        failures = save_check(session, source, check, now)
        for entry in check.feed.entries if check.feed else ():
            new_id = insert_raw_item(
                session,
                source_id=source_id,
                external_id=entry.external_id,
                kind="article",
                title=entry.title,
                url=entry.url,
                canonical_url=entry.canonical_url,
                published_at=entry.published_at,
                summary=entry.summary,
                metadata_={"src": "feed"},
            )
            if new_id is not None and entry.url:
                new_ids.append(new_id)
        stale_ids = list(
            session.scalars(
                select(RawItem.id)
                .where(
                    RawItem.source_id == source_id,
                    RawItem.status == "pending",
                    RawItem.url.is_not(None),
                    RawItem.created_at < now - STALE_PENDING,
                    RawItem.updated_at < now - STALE_PENDING,
                    RawItem.fetch_attempts < ctx.settings.fetch_max_attempts,
                )
                .order_by(RawItem.created_at)
                .limit(100)
            )
        )
    return new_ids, stale_ids, failures
