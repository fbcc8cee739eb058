"""generate-brief: a one-liner (≤140 characters), a two-liner (≤280) and an elevator pitch (3–4
sentences) for a story, from OpenAI or the offline provider. Uses the story's analysis when there is
one. With ``reason="new_story"`` an existing brief is kept."""

from __future__ import annotations

import uuid
from typing import Literal

from sqlalchemy.dialects.postgresql import insert

from tasks.db.models import Story, StoryAnalysis
from tasks.lib.context import Context, Payload
from tasks.lib.providers import Analysis, Citation, provider_for
from tasks.lib.store import story_text, utcnow

TASK_ID = "generate-brief"


class GenerateBriefPayload(Payload):
    task_id = TASK_ID

    story_id: uuid.UUID
    reason: Literal["new_story", "manual", "regenerate"] = "new_story"


PAYLOAD = GenerateBriefPayload


def run(payload: GenerateBriefPayload, ctx: Context) -> dict:
    with ctx.session_factory.begin() as session:
        story = session.get(Story, payload.story_id)
        if story is None:
            return {"storyId": str(payload.story_id), "status": "missing"}
        row = session.get(StoryAnalysis, story.id)
        if row is not None and row.one_liner and payload.reason == "new_story":
            return {"storyId": str(story.id), "status": "exists", "oneLiner": row.one_liner}
        analysis = None
        if row is not None and row.why_it_matters:
            analysis = Analysis(
                why_it_matters=row.why_it_matters,
                chili=row.chili or 0,
                confidence=row.confidence or 0.0,
                citations=[Citation.model_validate(c) for c in row.citations or []],
            )
        doc = story_text(story)

    outcome = provider_for(ctx.settings).brief(doc, analysis)
    brief = outcome.value
    now = utcnow()
    values = {
        "one_liner": brief.one_liner,
        "two_liner": brief.two_liner,
        "elevator": brief.elevator,
        "brief_provider": outcome.provider,
        "brief_model": outcome.model,
        "brief_generated_at": now,
        "updated_at": now,
    }
    usage = {"brief": outcome.usage.as_dict()}
    with ctx.session_factory.begin() as session:
        stmt = insert(StoryAnalysis).values(story_id=payload.story_id, token_usage=usage, **values)
        stmt = stmt.on_conflict_do_update(
            index_elements=[StoryAnalysis.story_id],
            set_={**values, "token_usage": StoryAnalysis.token_usage.op("||")(stmt.excluded.token_usage)},
        )
        session.execute(stmt)
    ctx.logger.info("generate_brief_done", story_id=str(payload.story_id), provider=outcome.provider)
    return {
        "storyId": str(payload.story_id),
        "status": "generated",
        "provider": outcome.provider,
        "oneLiner": brief.one_liner,
        "twoLiner": brief.two_liner,
        "elevator": brief.elevator,
    }
