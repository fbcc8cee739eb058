"""score-relevance: a 0..1 relevance score for each highlight of a story, with its breakdown.

score = 0.4·keyword + 0.3·kind + 0.2·authority + 0.1·freshness, where
keyword = min(1, distinct keyword matches / 4) over the highlight and the story title; kind = a weight
per highlight kind; authority = the story source's authority (0.5 when unknown); freshness = 1 for a
story published now, falling linearly to 0.2 at 60 days (age from ``published_at``, else
``created_at``). Merged highlights are skipped.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Sequence

from pydantic import Field
from sqlalchemy import select

from tasks.db.models import Highlight, Story
from tasks.lib.context import Context, Payload
from tasks.lib.store import utcnow

TASK_ID = "score-relevance"

WEIGHTS = {"keyword": 0.4, "kind": 0.3, "authority": 0.2, "freshness": 0.1}
KIND_WEIGHTS = {"api_change": 1.0, "code_example": 0.9, "metric": 0.85, "quote": 0.6, "other": 0.5}
DEFAULT_AUTHORITY = 0.5
KEYWORDS_FOR_FULL_SCORE = 4
FRESH_DAYS = 60
FRESHNESS_FLOOR = 0.2


class ScoreRelevancePayload(Payload):
    task_id = TASK_ID

    story_id: uuid.UUID
    #: Keywords to use instead of the configured ones (``ZEKE_RELEVANCE_KEYWORDS``).
    keywords: list[str] | None = Field(default=None, max_length=200)


PAYLOAD = ScoreRelevancePayload


def keyword_matches(text: str, keywords: Sequence[str]) -> list[str]:
    """Keywords found in ``text``, case-insensitive. Keywords match at a word start ("deprecat" matches
    "deprecated"); short ones (three characters or fewer, like "ai") only as whole words."""
    lowered = text.lower()
    found = []
    for keyword in keywords:
        pattern = r"(?<![a-z0-9])" + re.escape(keyword.lower())
        if len(keyword) <= 3:
            pattern += r"(?![a-z0-9])"
        if re.search(pattern, lowered):
            found.append(keyword)
    return found


def freshness(published: dt.datetime | None, now: dt.datetime) -> float:
    if published is None:
        return FRESHNESS_FLOOR
    days = max(0.0, (now - published).total_seconds() / 86400)
    return round(max(FRESHNESS_FLOOR, 1.0 - (1.0 - FRESHNESS_FLOOR) * days / FRESH_DAYS), 4)


def run(payload: ScoreRelevancePayload, ctx: Context) -> dict:
    keywords = payload.keywords or list(ctx.settings.relevance_keywords)
    now = utcnow()
    with ctx.session_factory.begin() as session:
        story = session.get(Story, payload.story_id)
        if story is None:
            return {"storyId": str(payload.story_id), "status": "missing", "highlightsScored": 0}
        authority = story.source.authority if story.source is not None else DEFAULT_AUTHORITY
        fresh = freshness(story.published_at or story.created_at, now)
        highlights = session.scalars(
            select(Highlight)
            .where(Highlight.story_id == story.id, Highlight.merged_into.is_(None))
            .order_by(Highlight.created_at, Highlight.id)
            .with_for_update()
        ).all()
        scores: dict[str, float] = {}
        for highlight in highlights:
            haystack = " ".join(
                part
                for part in (highlight.title, highlight.summary, (highlight.quote or "")[:500], story.title)
                if part
            )
            matches = keyword_matches(haystack, keywords)
            parts = {
                "keyword": round(min(1.0, len(matches) / KEYWORDS_FOR_FULL_SCORE), 4),
                "kind": KIND_WEIGHTS.get(highlight.kind, KIND_WEIGHTS["other"]),
                "authority": round(float(authority), 4),
                "freshness": fresh,
            }
            score = round(sum(WEIGHTS[name] * value for name, value in parts.items()), 4)
            highlight.relevance_score = score
            highlight.score_breakdown = {**parts, "weights": WEIGHTS, "keywordMatches": matches}
            highlight.scored_at = now
            scores[str(highlight.id)] = score
    ctx.logger.info("score_relevance_done", story_id=str(payload.story_id), scored=len(scores))
    return {
        "storyId": str(payload.story_id),
        "status": "scored" if scores else "no_highlights",
        "highlightsScored": len(scores),
        "authority": authority,
        "freshness": fresh,
        "scores": scores,
    }
