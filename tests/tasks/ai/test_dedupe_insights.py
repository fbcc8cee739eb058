from __future__ import annotations

import datetime as dt
import uuid

import pytest
from pydantic import ValidationError
from sqlalchemy import select, update

from tasks.db.models import Highlight
from tasks.lib.highlights import dedupe_key
from tests.tasks.conftest import make_story
from tests.tasks.helpers import RecordingContext, run_task


def _add(ctx: RecordingContext, story_id: uuid.UUID, text: str, *, kind: str = "metric", **kw) -> uuid.UUID:
    row = Highlight(
        story_id=story_id,
        kind=kind,
        title=kw.pop("title", text[:30]),
        summary=text,
        quote=text,
        dedupe_key=kw.pop("key", dedupe_key(kind, text)),
        **kw,
    )
    with ctx.session_factory.begin() as session:
        session.add(row)
    return row.id


def _rows(ctx: RecordingContext) -> dict[uuid.UUID, Highlight]:
    with ctx.session_factory() as session:
        return {h.id: h for h in session.scalars(select(Highlight))}


def test_exact_and_near_duplicates_keep_the_best(ctx: RecordingContext) -> None:
    story = make_story(ctx.session_factory, "text " * 50)
    best = _add(ctx, story, "Throughput rose to 2,400 tokens per second on one GPU.", relevance_score=0.9)
    exact = _add(
        ctx, story, "Throughput rose to 2,400 tokens per second on one GPU!", relevance_score=0.4, key="k2"
    )
    near = _add(ctx, story, "Throughput rose to 2,400 tokens/second on a single GPU.", relevance_score=0.5)
    other = _add(ctx, story, "Prompt caching cut the cost of system prompts by 60%.", relevance_score=0.7)
    quote = _add(ctx, story, "Throughput rose to 2,400 tokens per second on one GPU.", kind="quote")

    result = run_task("dedupe-insights", {"storyId": str(story)}, ctx)

    assert result["merged"] == 2 and len(result["groups"]) == 1
    group = result["groups"][0]
    assert group["kept"] == str(best) and set(group["merged"]) == {str(exact), str(near)}
    rows = _rows(ctx)
    assert rows[exact].merged_into == best and rows[near].merged_into == best
    assert rows[other].merged_into is None and rows[quote].merged_into is None  # other kind: not compared
    assert set(rows[best].metadata_["mergedFrom"]) == {str(exact), str(near)}

    again = run_task("dedupe-insights", {"storyId": str(story)}, ctx)  # idempotent
    assert again["merged"] == 0 and again["compared"] == 3

    across = run_task("dedupe-insights", {"storyId": str(story), "acrossKinds": True}, ctx)
    assert across["merged"] == 1 and across["groups"][0]["exact"] is True
    assert _rows(ctx)[quote].merged_into == best  # the scored metric beats the unscored quote


def test_ties_keep_the_oldest_and_chains_are_flattened(ctx: RecordingContext) -> None:
    story = make_story(ctx.session_factory, "text " * 50)
    first = _add(
        ctx, story, "The new endpoint GET /v1/queue reports queue depth per model.", kind="api_change"
    )
    second = _add(
        ctx, story, "A new endpoint GET /v1/queue reports the queue depth per model.", kind="api_change"
    )
    with ctx.session_factory.begin() as session:
        session.execute(
            update(Highlight)
            .where(Highlight.id == second)
            .values(created_at=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5))
        )
    old_loser = _add(ctx, story, "unrelated", kind="api_change", merged_into=second)
    result = run_task("dedupe-insights", {"storyId": str(story)}, ctx)
    assert result["groups"][0]["kept"] == str(first)
    rows = _rows(ctx)
    assert rows[second].merged_into == first and rows[old_loser].merged_into == first


def test_new_insights_are_added_unless_duplicate(ctx: RecordingContext) -> None:
    story = make_story(ctx.session_factory, "text " * 50)
    existing = _add(ctx, story, "Cold builds are 38% faster on the reference monorepo.")
    result = run_task(
        "dedupe-insights",
        {
            "storyId": str(story),
            "createdBy": "user_123",
            "insights": [
                {"kind": "metric", "summary": "Cold builds are 38% faster on the reference monorepo"},
                {"kind": "other", "summary": "Plugin authors should run the codemod before upgrading."},
                {"kind": "other", "summary": "Plugin authors should run the codemod before upgrading!"},
            ],
        },
        ctx,
    )
    assert result["insightsDuplicate"][0]["duplicateOf"] == str(existing)
    assert len(result["insightsAdded"]) == 1
    assert result["insightsDuplicate"][1]["index"] == 2
    added = _rows(ctx)[uuid.UUID(result["insightsAdded"][0])]
    assert added.origin == "assistant" and added.metadata_["createdBy"] == "user_123"


def test_window_mode_spans_stories_and_payload_rules(ctx: RecordingContext) -> None:
    a = make_story(ctx.session_factory, "alpha " * 50)
    b = make_story(ctx.session_factory, "beta " * 50)
    one = _add(
        ctx, a, "Median latency fell from 220 ms to 90 ms after the cache change.", relevance_score=0.8
    )
    two = _add(ctx, b, "Median latency fell from 220 ms to 90 ms after the cache change", relevance_score=0.3)
    result = run_task("dedupe-insights", {"sinceHours": 1}, ctx)
    assert result["groups"][0]["kept"] == str(one) and _rows(ctx)[two].merged_into == one
    with pytest.raises(ValidationError):
        run_task("dedupe-insights", {"insights": [{"summary": "x"}]}, ctx)
    assert run_task("dedupe-insights", {"storyId": str(uuid.uuid4())}, ctx)["status"] == "missing"
