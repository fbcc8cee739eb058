"""fetch-content: fetch raw items' pages, extract the main text, and make one story per distinct text.

Each item is handled on its own: a failure is recorded on that raw item (``fetch_error``,
``fetch_attempts``, ``status``) and the others go on. Transient failures (timeouts, 429/5xx) are
re-queued as one delayed follow-up job until ``fetch_max_attempts``; permanent ones (4xx, refused URL,
no text) mark the item ``failed``. New stories are sent to analyze-story; an item whose text is
already known joins the existing story and triggers nothing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from pydantic import Field
from sqlalchemy import select

from tasks.ai.analyze_story import AnalyzeStoryPayload
from tasks.db.models import RawItem, Story
from tasks.lib.context import Context, Payload, send
from tasks.lib.errors import ExtractionFailed, PermanentError, RetryLater
from tasks.lib.fetching import PAGE_TYPES, Fetcher, FetchResult
from tasks.lib.store import store_document
from tasks.lib.text import Extracted, extract_html, extract_markdown, extract_pdf, extract_plain, truncate
from transport.redact import redact_url

TASK_ID = "fetch-content"


class FetchContentPayload(Payload):
    task_id = TASK_ID

    raw_item_ids: list[uuid.UUID] = Field(min_length=1, max_length=100)
    #: Fetch again items that are already fetched or failed.
    force: bool = False


PAYLOAD = FetchContentPayload


@dataclass
class _Outcome:
    raw_item_id: uuid.UUID
    #: fetched | duplicate | already_fetched | missing | skipped | failed | retrying
    status: str
    story_id: uuid.UUID | None = None
    new_story: bool = False
    error: str | None = None
    retry_after: float | None = None


def run(payload: FetchContentPayload, ctx: Context) -> dict:
    outcomes: list[_Outcome] = []
    with Fetcher(ctx.settings) as fetcher:
        for raw_item_id in dict.fromkeys(payload.raw_item_ids):
            outcome = _process(ctx, fetcher, raw_item_id, payload.force)
            outcomes.append(outcome)
            log = ctx.logger.warning if outcome.status in ("failed", "retrying") else ctx.logger.info
            log(
                "fetch_content_item", raw_item_id=str(raw_item_id), status=outcome.status, error=outcome.error
            )

    for outcome in outcomes:
        if outcome.new_story and outcome.story_id is not None:
            send(ctx, AnalyzeStoryPayload(story_id=outcome.story_id, trigger="auto"))
    retrying = [o for o in outcomes if o.status == "retrying"]
    if retrying:
        delay = max(o.retry_after or ctx.settings.default_retry_after for o in retrying)
        send(ctx, FetchContentPayload(raw_item_ids=[o.raw_item_id for o in retrying]), countdown=delay)

    by_status: dict[str, list[str]] = {}
    for outcome in outcomes:
        by_status.setdefault(outcome.status, []).append(str(outcome.raw_item_id))
    return {
        "items": len(outcomes),
        "counts": {status: len(ids) for status, ids in by_status.items()},
        "storiesCreated": [str(o.story_id) for o in outcomes if o.new_story],
        "errors": {str(o.raw_item_id): o.error for o in outcomes if o.error},
        "retrying": by_status.get("retrying", []),
    }


def _process(ctx: Context, fetcher: Fetcher, raw_item_id: uuid.UUID, force: bool) -> _Outcome:
    with ctx.session_factory.begin() as session:
        item = session.get(RawItem, raw_item_id)
        if item is None:
            return _Outcome(raw_item_id, "missing")
        if not force and item.status == "fetched":
            return _Outcome(raw_item_id, "already_fetched")
        if not force and item.status == "failed":
            return _Outcome(raw_item_id, "skipped", error=item.fetch_error)
        url, kind = item.url, item.kind
        # The same page may arrive from several sources: reuse text we already have.
        if item.canonical_url and not force:
            known = session.execute(
                select(RawItem.content_id).where(
                    RawItem.canonical_url == item.canonical_url,
                    RawItem.content_id.is_not(None),
                    RawItem.id != item.id,
                )
            ).first()
            if known is not None:
                item.content_id = known.content_id
                item.status = "fetched"
                story_id = session.scalar(select(Story.id).where(Story.content_id == known.content_id))
                return _Outcome(raw_item_id, "duplicate", story_id=story_id)

    if not url:
        return _fail(ctx, raw_item_id, "raw item has no URL", permanent=True)
    try:
        result = fetcher.get(
            url, headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}, accept=PAGE_TYPES
        )
        extracted = extract(result, ctx.settings.min_content_chars)
    except RetryLater as exc:
        return _fail(ctx, raw_item_id, str(exc), permanent=False, retry_after=exc.seconds)
    except PermanentError as exc:
        return _fail(ctx, raw_item_id, str(exc), permanent=True)
    except Exception as exc:  # the item boundary: one bad page must not stop the batch
        return _fail(ctx, raw_item_id, f"{type(exc).__name__}: {exc}", permanent=False)

    with ctx.session_factory.begin() as session:
        item = session.get(RawItem, raw_item_id, with_for_update=True)
        if item is None:
            return _Outcome(raw_item_id, "missing")
        story_kind = "video" if kind == "video" else ("pdf" if extracted.format == "pdf" else "article")
        stored = store_document(
            session,
            item,
            extracted,
            content_type=extracted.format,
            story_kind=story_kind,
            html_url=result.url,
        )
        item.fetch_attempts += 1
    return _Outcome(raw_item_id, "fetched", story_id=stored.story_id, new_story=stored.created)


def extract(result: FetchResult, min_chars: int) -> Extracted:
    """Main text of a fetched document, by media type; :class:`ExtractionFailed` when there is none."""
    media = result.media_type
    if media == "application/pdf" or result.content[:5] == b"%PDF-":
        extracted = extract_pdf(result.content)
    elif media == "text/plain":
        extracted = extract_plain(result.text())
    elif media == "text/markdown":
        extracted = extract_markdown(result.text())
    else:
        extracted = extract_html(result.text(), url=result.url)
    if len(extracted.text) < min_chars:
        shown = redact_url(result.url)
        raise ExtractionFailed(f"no text extracted from {shown} ({len(extracted.text)} characters)")
    return extracted


def _fail(
    ctx: Context, raw_item_id: uuid.UUID, error: str, *, permanent: bool, retry_after: float | None = None
) -> _Outcome:
    with ctx.session_factory.begin() as session:
        item = session.get(RawItem, raw_item_id, with_for_update=True)
        if item is None:
            return _Outcome(raw_item_id, "missing")
        item.fetch_attempts += 1
        item.fetch_error = truncate(error, 1000)
        gave_up = permanent or item.fetch_attempts >= ctx.settings.fetch_max_attempts
        item.status = "failed" if gave_up else "pending"
    return _Outcome(raw_item_id, "failed" if gave_up else "retrying", error=error, retry_after=retry_after)
