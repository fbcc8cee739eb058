"""analyze-story: why a story matters, how hot it is (chili 0–5), how sure we are, with citations.

OpenAI structured outputs when ``OPENAI_API_KEY`` is set, else the offline extractive provider; the
row records which. Rate limits and timeouts raise :class:`~tasks.lib.errors.RetryLater`; a malformed
answer raises :class:`~tasks.lib.errors.ProviderResponseInvalid` (not retried). Afterwards
generate-brief and extract-highlights are triggered (score-relevance follows extract-highlights, once
highlights exist). With ``trigger="auto"`` a story that already has an analysis is not analysed again;
only the follow-ups are re-sent.
"""

from __future__ import annotations

import uuid
from typing import Literal

from sqlalchemy.dialects.postgresql import insert

from tasks.ai.extract_highlights import ExtractHighlightsPayload
from tasks.ai.generate_brief import GenerateBriefPayload
from tasks.db.models import Story, StoryAnalysis
from tasks.lib.context import Context, Payload, send
from tasks.lib.providers import provider_for
from tasks.lib.store import story_text, utcnow

TASK_ID = "analyze-story"


class AnalyzeStoryPayload(Payload):
    task_id = TASK_ID

    story_id: uuid.UUID
    trigger: Literal["auto", "manual", "retry"] = "auto"


PAYLOAD = AnalyzeStoryPayload


def run(payload: AnalyzeStoryPayload, ctx: Context) -> dict:
    with ctx.session_factory.begin() as session:
        story = session.get(Story, payload.story_id)
        if story is None:
            ctx.logger.warning("analyze_story_missing", story_id=str(payload.story_id))
            return {"storyId": str(payload.story_id), "status": "missing"}
        existing = session.get(StoryAnalysis, story.id)
        done = existing is not None and existing.analyzed_at is not None
        doc = story_text(story)

    if done and payload.trigger == "auto":
        result = {"storyId": str(payload.story_id), "status": "already_analyzed"}
    else:
        provider = provider_for(ctx.settings)
        outcome = provider.analyze(doc)  # RetryLater / ProviderResponseInvalid propagate to the queue
        analysis = outcome.value
        now = utcnow()
        with ctx.session_factory.begin() as session:
            values = {
                "why_it_matters": analysis.why_it_matters,
                "chili": analysis.chili,
                "confidence": analysis.confidence,
                "citations": [c.model_dump() for c in analysis.citations],
                "provider": outcome.provider,
                "model": outcome.model,
                "analyzed_at": now,
                "updated_at": now,
            }
            usage = {"analysis": outcome.usage.as_dict()}
            stmt = insert(StoryAnalysis).values(story_id=payload.story_id, token_usage=usage, **values)
            stmt = stmt.on_conflict_do_update(
                index_elements=[StoryAnalysis.story_id],
                set_={**values, "token_usage": StoryAnalysis.token_usage.op("||")(stmt.excluded.token_usage)},
            )
            session.execute(stmt)
        result = {
            "storyId": str(payload.story_id),
            "status": "analyzed",
            "provider": outcome.provider,
            "model": outcome.model,
            "chili": analysis.chili,
            "confidence": analysis.confidence,
            "usage": outcome.usage.as_dict(),
        }
        ctx.logger.info("analyze_story_done", **{k: v for k, v in result.items() if k != "usage"})

    send(ctx, GenerateBriefPayload(story_id=payload.story_id, reason="new_story"))
    send(ctx, ExtractHighlightsPayload(story_id=payload.story_id))
    return result
