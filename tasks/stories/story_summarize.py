"""story-summarize: set ``stories.summary`` from the story's analysis (elevator pitch, else why it
matters), or extractively from its text when there is no analysis. ``mode="auto"`` keeps a summary
that is already there; ``mode="force"`` rewrites it."""

from __future__ import annotations

import uuid
from typing import Literal

from tasks.db.models import Story, StoryAnalysis
from tasks.lib.context import Context, Payload
from tasks.lib.extractive import top_sentences
from tasks.lib.store import utcnow
from tasks.lib.text import truncate

TASK_ID = "story-summarize"
SUMMARY_MAX = 800
EXTRACTIVE_SENTENCES = 3


class StorySummarizePayload(Payload):
    task_id = TASK_ID

    story_id: uuid.UUID
    mode: Literal["auto", "force"] = "auto"


PAYLOAD = StorySummarizePayload


def run(payload: StorySummarizePayload, ctx: Context) -> dict:
    with ctx.session_factory.begin() as session:
        story = session.get(Story, payload.story_id, with_for_update=True)
        if story is None:
            return {"storyId": str(payload.story_id), "status": "missing"}
        if payload.mode == "auto" and story.summary:
            return {"storyId": str(story.id), "status": "skipped", "summary": story.summary}
        summary, origin = _summary(story, session.get(StoryAnalysis, story.id))
        story.summary = truncate(summary, SUMMARY_MAX)
        story.updated_at = utcnow()
        result = {"storyId": str(story.id), "status": "summarized", "from": origin, "summary": story.summary}
    ctx.logger.info("story_summarize_done", story_id=str(payload.story_id), origin=origin)
    return result


def _summary(story: Story, analysis: StoryAnalysis | None) -> tuple[str, str]:
    if analysis is not None and analysis.elevator:
        return analysis.elevator, "analysis"
    if analysis is not None and analysis.why_it_matters:
        lines = [line.strip().lstrip("•*- ").strip() for line in analysis.why_it_matters.splitlines()]
        return " ".join(line for line in lines if line), "analysis"
    picked = top_sentences(story.content.text, story.title, EXTRACTIVE_SENTENCES)
    if picked:
        return " ".join(picked), "extractive"
    return story.title or truncate(story.content.text, 300) or "No summary available yet.", "title"
