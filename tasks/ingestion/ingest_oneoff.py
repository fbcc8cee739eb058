"""ingest-oneoff: one URL on demand → canonicalise, refuse unsafe targets, dedupe, then fetch-content.

The URL's host is resolved and every address must be public (unless ``ZEKE_ALLOW_PRIVATE_URLS`` or
``ZEKE_ALLOWED_NETWORKS`` say otherwise); fetch-content checks again on every redirect hop and pins the
connection to a checked address. A URL already known (same canonical URL, any source) is not fetched
again: the existing raw item (and its story, if any) is returned.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from sqlalchemy import select

from tasks.db.models import RawItem, Story
from tasks.ingestion.fetch_content import FetchContentPayload
from tasks.lib.context import Context, Payload, send
from tasks.lib.errors import UnsafeURL
from tasks.lib.netguard import AddressPolicy, check_url
from tasks.lib.store import get_or_create_source, insert_raw_item
from tasks.lib.urls import canonicalize_url, hostname
from transport.redact import redact_url

TASK_ID = "ingest-oneoff"


class IngestOneOffPayload(Payload):
    task_id = TASK_ID

    url: str = Field(min_length=1, max_length=4096)
    #: Who asked (the auth system's user id; any string).
    requested_by: str | None = Field(default=None, max_length=200)
    #: Kept for compatibility with the original API; it does not change anything yet.
    priority: Literal["normal", "high"] = "normal"


PAYLOAD = IngestOneOffPayload


def run(payload: IngestOneOffPayload, ctx: Context) -> dict:
    try:
        canonical = canonicalize_url(payload.url)
    except ValueError as exc:
        raise UnsafeURL(f"refusing {redact_url(payload.url)!r}: {exc}") from None
    check_url(canonical, AddressPolicy.from_settings(ctx.settings))
    shown = redact_url(canonical)  # what outputs and logs name: the URL without its password
    host = hostname(canonical)

    with ctx.session_factory.begin() as session:
        existing = session.execute(
            select(RawItem.id, RawItem.content_id, RawItem.status)
            .where(RawItem.canonical_url == canonical)
            .order_by(RawItem.content_id.is_(None), RawItem.created_at)
            .limit(1)
        ).first()
        if existing is not None:
            story_id = (
                session.scalar(select(Story.id).where(Story.content_id == existing.content_id))
                if existing.content_id
                else None
            )
            result = {
                "status": "duplicate",
                "canonicalUrl": shown,
                "rawItemId": str(existing.id),
                "rawItemStatus": existing.status,
                "storyId": str(story_id) if story_id else None,
            }
            ctx.logger.info("ingest_oneoff_duplicate", **result)
            return result
        source = get_or_create_source(session, "manual", f"manual://{host}", name=host)
        raw_item_id = insert_raw_item(
            session,
            source_id=source.id,
            external_id=canonical,
            kind="article",
            url=canonical,
            canonical_url=canonical,
            metadata_={
                "src": "manual",
                "submittedUrl": payload.url.strip(),
                "requestedBy": payload.requested_by,
                "priority": payload.priority,
            },
        )
    if raw_item_id is None:  # a concurrent request for the same URL won the insert
        return {"status": "duplicate", "canonicalUrl": shown, "rawItemId": None, "storyId": None}
    send(ctx, FetchContentPayload(raw_item_ids=[raw_item_id]))
    ctx.logger.info("ingest_oneoff_queued", raw_item_id=str(raw_item_id), canonical_url=shown)
    return {"status": "queued", "canonicalUrl": shown, "rawItemId": str(raw_item_id)}
