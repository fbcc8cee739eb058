"""extract-highlights: code examples, code/API changes, metrics and notable quotes from a story's text.

Idempotent: each highlight is keyed by (story, kind + normalised text), so a re-run updates the rows it
made before instead of adding copies. When the story has highlights, score-relevance is triggered,
so scoring always runs after extraction.
"""

from __future__ import annotations

import uuid

from pydantic import Field
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert

from tasks.ai.score_relevance import ScoreRelevancePayload
from tasks.db.models import Highlight, Story
from tasks.lib.context import Context, Payload, send
from tasks.lib.highlights import MAX_HIGHLIGHTS, extract_highlights
from tasks.lib.store import utcnow

TASK_ID = "extract-highlights"
#: Texts shorter than this have nothing worth highlighting.
MIN_TEXT = 200


class ExtractHighlightsPayload(Payload):
    task_id = TASK_ID

    story_id: uuid.UUID
    #: Who asked (kept in each highlight's metadata; the system when omitted).
    requested_by: str | None = Field(default=None, max_length=200)


PAYLOAD = ExtractHighlightsPayload


def run(payload: ExtractHighlightsPayload, ctx: Context) -> dict:
    with ctx.session_factory.begin() as session:
        story = session.get(Story, payload.story_id)
        if story is None:
            return {"storyId": str(payload.story_id), "status": "missing", "count": 0}
        text = story.content.text

    if len(text) < MIN_TEXT:
        return {"storyId": str(payload.story_id), "status": "too_short", "count": 0}
    candidates = extract_highlights(text, MAX_HIGHLIGHTS)
    now = utcnow()
    with ctx.session_factory.begin() as session:
        known = set(
            session.scalars(select(Highlight.dedupe_key).where(Highlight.story_id == payload.story_id))
        )
        ids: list[uuid.UUID] = []
        for candidate in candidates:
            values = {
                "kind": candidate.kind,
                "title": candidate.title,
                "summary": candidate.summary,
                "quote": candidate.quote,
                "confidence": candidate.confidence,
                "metadata_": {
                    **candidate.metadata,
                    "extractor": "regex-v1",
                    "requestedBy": payload.requested_by,
                },
            }
            stmt = insert(Highlight).values(
                id=uuid.uuid4(),
                story_id=payload.story_id,
                origin="system",
                dedupe_key=candidate.dedupe_key,
                **values,
            )
            stmt = stmt.on_conflict_do_update(
                index_elements=[Highlight.story_id, Highlight.dedupe_key],
                set_={
                    "title": stmt.excluded.title,
                    "summary": stmt.excluded.summary,
                    "quote": stmt.excluded.quote,
                    "confidence": stmt.excluded.confidence,
                    "metadata": stmt.excluded.metadata,
                    "updated_at": now,
                },
            ).returning(Highlight.id)
            ids.append(session.scalar(stmt))
        active = session.scalar(
            select(Highlight.id)
            .where(Highlight.story_id == payload.story_id, Highlight.merged_into.is_(None))
            .limit(1)
        )
    created = sum(1 for c in candidates if c.dedupe_key not in known)
    kinds: dict[str, int] = {}
    for candidate in candidates:
        kinds[candidate.kind] = kinds.get(candidate.kind, 0) + 1
    if active is not None:
        send(ctx, ScoreRelevancePayload(story_id=payload.story_id))
    ctx.logger.info(
        "extract_highlights_done", story_id=str(payload.story_id), count=len(ids), created=created
    )
    return {
        "storyId": str(payload.story_id),
        "status": "extracted",
        "count": len(ids),
        "created": created,
        "kinds": kinds,
        "highlightIds": [str(i) for i in ids],
    }
