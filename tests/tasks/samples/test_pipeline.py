"""The sample content end to end, in-process: pulls → ingest → fetch → analysis → briefs → highlights →
scores, with the offline provider. This is what ``make run`` does through real queues."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import func, select

from tasks.db.models import Highlight, RawItem, SourceHealth, Story, StoryAnalysis
from tasks.samples import seed_sources, serve_samples, youtube_feed_base
from tests.tasks.helpers import RecordingContext, drain, run_task


@pytest.fixture
def samples() -> Iterator[str]:
    base, stop = serve_samples()
    yield base
    stop()


def test_whole_pipeline_on_the_samples(ctx: RecordingContext, samples: str) -> None:
    env = ctx.with_settings(
        allow_private_urls=False,
        allowed_networks=("127.0.0.1/32",),
        youtube_feed_base=youtube_feed_base(samples),
    )
    ids = seed_sources(env.session_factory, samples)
    assert len(ids) == 4 and seed_sources(env.session_factory, samples) == ids  # idempotent

    run_task("ingest-pull", {}, env)
    run_task("ingest-pull-youtube", {}, env)
    ran = drain(env)

    order = [job.task_id for job in ran]
    assert order.count("ingest-source") == 3
    with env.session_factory() as session:
        assert session.scalar(select(func.count()).select_from(RawItem)) == 15  # 13 feed items + 2 videos
        assert {i.status for i in session.scalars(select(RawItem))} == {"fetched"}
        stories = list(session.scalars(select(Story)))
        assert len(stories) == 14  # the Ferrite link in two feeds is one story
        assert {s.kind for s in stories} == {"article", "video"}
        analyses = list(session.scalars(select(StoryAnalysis)))
        assert len(analyses) == 14 and {a.provider for a in analyses} == {"offline"}
        assert all(a.one_liner and len(a.one_liner) <= 140 and a.elevator for a in analyses)
        highlights = list(session.scalars(select(Highlight)))
        assert {h.kind for h in highlights} >= {"code_example", "api_change", "metric", "quote"}
        assert all(h.relevance_score is not None for h in highlights)  # scoring ran after extraction
        assert {h.status for h in session.scalars(select(SourceHealth))} == {"ok"}
        ferrite = session.scalars(select(Story).where(Story.title.like("Ferrite 2.0%"))).one()
        assert ferrite.url == f"{samples}/articles/ferrite-2.html"

    for story in {job.payload["storyId"] for job in ran if job.task_id == "score-relevance"}:
        extracted = max(
            i
            for i, j in enumerate(ran)
            if j.task_id == "extract-highlights" and j.payload["storyId"] == story
        )
        scored = min(
            i for i, j in enumerate(ran) if j.task_id == "score-relevance" and j.payload["storyId"] == story
        )
        assert extracted < scored

    # the next forced pull revalidates: every feed answers 304, nothing new is stored
    run_task("ingest-pull", {"reason": "manual", "force": True}, env)
    again = drain(env)
    assert [j.task_id for j in again] == ["ingest-source"] * 3
    with env.session_factory() as session:
        assert session.scalar(select(func.count()).select_from(RawItem)) == 15

    result = run_task("dedupe-insights", {"sinceHours": 1}, env)
    assert result["compared"] == len(highlights)
    for story in stories[:3]:
        assert run_task("story-summarize", {"storyId": str(story.id)}, env)["status"] == "summarized"
