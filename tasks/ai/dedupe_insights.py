"""dedupe-insights: find exact and near-duplicate highlights ("insights"), keep the best of each group
and mark the others ``merged_into`` it.

Scope: one story's highlights (``storyId``), or every highlight created in the last ``sinceHours``.
Texts (quote, else summary) are compared normalised (lower case, no punctuation, collapsed spaces):
equal texts are exact duplicates; near duplicates have a similarity (the larger of word-set Jaccard
and difflib's ratio) of at least ``threshold``. Only highlights of the same kind are compared unless
``acrossKinds``. The best of a group has the highest relevance score, then confidence, then is the
oldest.

``insights`` (optional, needs ``storyId``) are new insights, e.g. from an assistant: each is added as a
highlight unless it duplicates one already there, in which case the report says which.
"""

from __future__ import annotations

import datetime as dt
import uuid
from difflib import SequenceMatcher
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert

from tasks.db.models import Highlight, Story
from tasks.lib.context import Context, Payload
from tasks.lib.highlights import dedupe_key, normalize_for_compare
from tasks.lib.store import utcnow
from tasks.lib.text import truncate

TASK_ID = "dedupe-insights"
#: Highlights compared in one run (pairwise, so this bounds the work).
MAX_SCOPE = 2000


class InsightIn(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, validate_by_name=True, validate_by_alias=True)

    kind: Literal["code_example", "api_change", "metric", "quote", "other"] = "other"
    title: str | None = Field(default=None, max_length=500)
    summary: str = Field(min_length=1, max_length=5000)
    quote: str | None = Field(default=None, max_length=5000)
    confidence: float = Field(default=0.6, ge=0, le=1)
    metadata: dict[str, Any] = Field(default_factory=dict)


class DedupeInsightsPayload(Payload):
    task_id = TASK_ID

    story_id: uuid.UUID | None = None
    since_hours: int = Field(default=24, ge=1, le=24 * 90)
    threshold: float = Field(default=0.85, ge=0.5, le=1.0)
    across_kinds: bool = False
    insights: list[InsightIn] = Field(default_factory=list, max_length=100)
    created_by: str | None = Field(default=None, max_length=200)

    @model_validator(mode="after")
    def _insights_need_story(self) -> DedupeInsightsPayload:
        if self.insights and self.story_id is None:
            raise ValueError("insights can only be added to a story: give storyId")
        return self


PAYLOAD = DedupeInsightsPayload


def similarity(a: str, b: str, threshold: float = 0.0) -> float:
    """Similarity of two normalised texts, 0..1 (1 = equal). Below ``threshold`` the exact value is not
    computed (a cheaper upper bound may be returned)."""
    if a == b:
        return 1.0
    wa, wb = set(a.split()), set(b.split())
    jaccard = len(wa & wb) / len(wa | wb) if wa | wb else 0.0
    if jaccard >= threshold and threshold > 0:
        return jaccard
    matcher = SequenceMatcher(None, a, b, autojunk=False)
    if matcher.real_quick_ratio() < threshold or matcher.quick_ratio() < threshold:
        return jaccard
    return max(jaccard, matcher.ratio())


def _text(h: Highlight) -> str:
    return normalize_for_compare(h.quote or h.summary or h.title or "")


def _rank(h: Highlight) -> tuple:
    created = h.created_at or dt.datetime.max.replace(tzinfo=dt.UTC)
    return (
        -(h.relevance_score if h.relevance_score is not None else -1.0),
        -h.confidence,
        created,
        str(h.id),
    )


def run(payload: DedupeInsightsPayload, ctx: Context) -> dict:
    now = utcnow()
    with ctx.session_factory.begin() as session:
        if payload.story_id is not None and session.get(Story, payload.story_id) is None:
            return {"status": "missing", "storyId": str(payload.story_id), "merged": 0, "groups": []}
        query = select(Highlight).where(Highlight.merged_into.is_(None))
        if payload.story_id is not None:
            query = query.where(Highlight.story_id == payload.story_id)
        else:
            query = query.where(Highlight.created_at >= now - dt.timedelta(hours=payload.since_hours))
        pool = list(
            session.scalars(
                query.order_by(Highlight.created_at, Highlight.id).limit(MAX_SCOPE).with_for_update()
            )
        )
        added, duplicates = _add_insights(session, payload, pool)
        groups = _merge(session, pool, payload.threshold, payload.across_kinds, now)

    merged = sum(len(g["merged"]) for g in groups)
    ctx.logger.info("dedupe_insights_done", compared=len(pool), groups=len(groups), merged=merged)
    return {
        "status": "done",
        "storyId": str(payload.story_id) if payload.story_id else None,
        "compared": len(pool),
        "merged": merged,
        "groups": groups,
        "insightsAdded": added,
        "insightsDuplicate": duplicates,
    }


def _add_insights(
    session: Any, payload: DedupeInsightsPayload, pool: list[Highlight]
) -> tuple[list[str], list[dict[str, Any]]]:
    added: list[str] = []
    duplicates: list[dict[str, Any]] = []
    for index, insight in enumerate(payload.insights):
        text = normalize_for_compare(insight.quote or insight.summary)
        match = None
        for existing in pool:
            if not payload.across_kinds and existing.kind != insight.kind:
                continue
            score = similarity(text, _text(existing), payload.threshold)
            if score >= payload.threshold:
                match = (existing, score)
                break
        if match is not None:
            duplicates.append(
                {"index": index, "duplicateOf": str(match[0].id), "similarity": round(match[1], 3)}
            )
            continue
        new_id = session.scalar(
            insert(Highlight)
            .values(
                id=uuid.uuid4(),
                story_id=payload.story_id,
                kind=insight.kind,
                origin="assistant",
                title=insight.title,
                summary=insight.summary,
                quote=insight.quote,
                confidence=insight.confidence,
                dedupe_key=dedupe_key(insight.kind, insight.quote or insight.summary),
                metadata_={**insight.metadata, "createdBy": payload.created_by},
            )
            .on_conflict_do_nothing(index_elements=[Highlight.story_id, Highlight.dedupe_key])
            .returning(Highlight.id)
        )
        if new_id is None:
            duplicates.append({"index": index, "duplicateOf": None, "similarity": 1.0})
            continue
        added.append(str(new_id))
        pool.append(session.get_one(Highlight, new_id))
    return added, duplicates


def _merge(
    session: Any, pool: list[Highlight], threshold: float, across_kinds: bool, now: dt.datetime
) -> list[dict[str, Any]]:
    texts = [_text(h) for h in pool]
    parent = list(range(len(pool)))
    best_score: dict[tuple[int, int], float] = {}

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(pool)):
        if not texts[i]:
            continue
        for j in range(i + 1, len(pool)):
            if not texts[j] or (not across_kinds and pool[i].kind != pool[j].kind):
                continue
            score = similarity(texts[i], texts[j], threshold)
            if score >= threshold:
                best_score[(i, j)] = score
                parent[find(j)] = find(i)

    clusters: dict[int, list[int]] = {}
    for i in range(len(pool)):
        clusters.setdefault(find(i), []).append(i)
    groups: list[dict[str, Any]] = []
    for members in clusters.values():
        if len(members) < 2:
            continue
        ordered = sorted(members, key=lambda i: _rank(pool[i]))
        keep, rest = pool[ordered[0]], [pool[i] for i in ordered[1:]]
        for other in rest:
            other.merged_into = keep.id
            other.updated_at = now
        # Rows merged into a loser earlier now point at the winner: no chains.
        session.execute(
            update(Highlight)
            .where(Highlight.merged_into.in_([o.id for o in rest]))
            .values(merged_into=keep.id, updated_at=now)
        )
        keep.metadata_ = {**(keep.metadata_ or {}), "mergedFrom": [str(o.id) for o in rest]}
        pair_scores = [s for (a, b), s in best_score.items() if a in members and b in members]
        groups.append(
            {
                "kept": str(keep.id),
                "merged": [str(o.id) for o in rest],
                "exact": all(texts[i] == texts[ordered[0]] for i in members),
                "minSimilarity": round(min(pair_scores), 3) if pair_scores else 1.0,
                "text": truncate(keep.quote or keep.summary or "", 120),
            }
        )
    return groups
