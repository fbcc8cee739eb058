from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import select

from tasks.db.models import Highlight
from tests.tasks.conftest import make_story
from tests.tasks.helpers import RecordingContext, run_task
from tests.textutil import QUILL


def _highlights(ctx: RecordingContext, story_id: uuid.UUID) -> list[Highlight]:
    with ctx.session_factory() as session:
        return list(
            session.scalars(select(Highlight).where(Highlight.story_id == story_id).order_by(Highlight.kind))
        )


def test_extract_highlights_is_idempotent_and_triggers_scoring(ctx: RecordingContext) -> None:
    story_id = make_story(ctx.session_factory, QUILL)
    first = run_task("extract-highlights", {"storyId": str(story_id)}, ctx)
    assert first["count"] >= 5 and first["created"] == first["count"]
    rows = _highlights(ctx, story_id)
    assert all(h.origin == "system" and 0 < h.confidence <= 1 and len(h.dedupe_key) == 40 for h in rows)
    assert ctx.sent("score-relevance") == [{"storyId": str(story_id), "keywords": None}]

    second = run_task("extract-highlights", {"storyId": str(story_id)}, ctx)
    assert second["created"] == 0 and second["count"] == first["count"]
    assert sorted(h.id for h in _highlights(ctx, story_id)) == sorted(h.id for h in rows)


def test_short_or_plain_text_has_no_highlights(ctx: RecordingContext) -> None:
    short = make_story(ctx.session_factory, "Too short to bother.")
    assert run_task("extract-highlights", {"storyId": str(short)}, ctx)["status"] == "too_short"
    plain = make_story(ctx.session_factory, "The weather was pleasant and the meeting went well. " * 10)
    assert run_task("extract-highlights", {"storyId": str(plain)}, ctx)["count"] == 0
    assert ctx.sent("score-relevance") == []


def test_score_relevance_breakdown(ctx: RecordingContext) -> None:
    now = dt.datetime.now(dt.UTC)
    story_id = make_story(
        ctx.session_factory, QUILL, title="Quillstack API release", published_at=now, authority=0.9
    )
    run_task("extract-highlights", {"storyId": str(story_id)}, ctx)
    result = run_task("score-relevance", {"storyId": str(story_id)}, ctx)
    assert result["status"] == "scored" and result["highlightsScored"] == len(_highlights(ctx, story_id))
    for h in _highlights(ctx, story_id):
        parts = h.score_breakdown
        expected = (
            0.4 * parts["keyword"] + 0.3 * parts["kind"] + 0.2 * parts["authority"] + 0.1 * parts["freshness"]
        )
        assert abs(h.relevance_score - expected) < 1e-3 and 0 <= h.relevance_score <= 1
        assert parts["authority"] == 0.9 and parts["freshness"] > 0.99 and h.scored_at is not None
        assert (
            "api" in parts["keywordMatches"] and "release" in parts["keywordMatches"]
        )  # from the story title
    by_kind = {h.kind: h.score_breakdown["kind"] for h in _highlights(ctx, story_id)}
    assert by_kind["api_change"] > by_kind["metric"] > by_kind["quote"]


def test_freshness_and_authority_move_the_score(ctx: RecordingContext) -> None:
    now = dt.datetime.now(dt.UTC)
    fresh = make_story(ctx.session_factory, QUILL, published_at=now, authority=1.0)
    stale = make_story(
        ctx.session_factory, QUILL + "\nOld news.", published_at=now - dt.timedelta(days=90), authority=None
    )
    scores = {}
    for story_id in (fresh, stale):
        run_task("extract-highlights", {"storyId": str(story_id)}, ctx)
        result = run_task("score-relevance", {"storyId": str(story_id)}, ctx)
        scores[story_id] = result
        assert result["status"] == "scored"
    assert scores[fresh]["authority"] == 1.0 and scores[stale]["authority"] == 0.5  # no source: the default
    assert scores[fresh]["freshness"] > 0.99 and scores[stale]["freshness"] == 0.2
    by_key = {}
    for story_id in (fresh, stale):
        for h in _highlights(ctx, story_id):
            by_key.setdefault(h.dedupe_key, {})[story_id] = h.relevance_score
    assert by_key and all(s[fresh] > s[stale] for s in by_key.values() if len(s) == 2)


def test_score_relevance_with_custom_keywords_and_no_highlights(ctx: RecordingContext) -> None:
    story_id = make_story(ctx.session_factory, QUILL)
    assert run_task("score-relevance", {"storyId": str(story_id)}, ctx)["status"] == "no_highlights"
    run_task("extract-highlights", {"storyId": str(story_id)}, ctx)
    run_task("score-relevance", {"storyId": str(story_id), "keywords": ["plugin", "graph"]}, ctx)
    matches = {m for h in _highlights(ctx, story_id) for m in h.score_breakdown["keywordMatches"]}
    assert matches <= {"plugin", "graph"} and matches
    assert run_task("score-relevance", {"storyId": str(uuid.uuid4())}, ctx)["status"] == "missing"
