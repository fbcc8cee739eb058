from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import select, update

from tasks.db.models import Story, TeamStoryState
from tests.tasks.conftest import make_story
from tests.tasks.helpers import FIXTURES, RecordingContext, run_task

NOTES = (FIXTURES / "pages/notes.md").read_text()


def _summary(ctx: RecordingContext, story_id: uuid.UUID) -> str | None:
    with ctx.session_factory() as session:
        return session.get_one(Story, story_id).summary


def _states(ctx: RecordingContext) -> dict[tuple[str, uuid.UUID], TeamStoryState]:
    with ctx.session_factory() as session:
        return {(r.team_id, r.story_id): r for r in session.scalars(select(TeamStoryState))}


# -- story-summarize -------------------------------------------------------------------------------


def test_summary_falls_back_to_the_text_then_uses_the_analysis(ctx: RecordingContext) -> None:
    story_id = make_story(ctx.session_factory, NOTES, title="tidewire 0.9")
    result = run_task("story-summarize", {"storyId": str(story_id)}, ctx)
    assert result["from"] == "extractive"
    summary = _summary(ctx, story_id)
    assert summary and all(part in " ".join(NOTES.split()) for part in summary.split(". ")[0:1])

    assert (
        run_task("story-summarize", {"storyId": str(story_id)}, ctx)["status"] == "skipped"
    )  # auto keeps it
    run_task("analyze-story", {"storyId": str(story_id)}, ctx)
    forced = run_task("story-summarize", {"storyId": str(story_id), "mode": "force"}, ctx)
    assert forced["from"] == "analysis" and "•" not in _summary(ctx, story_id)
    run_task("generate-brief", {"storyId": str(story_id)}, ctx)
    run_task("story-summarize", {"storyId": str(story_id), "mode": "force"}, ctx)
    with ctx.session_factory() as session:
        story = session.get_one(Story, story_id)
        assert story.summary == story.analysis.elevator


def test_summary_of_missing_story(ctx: RecordingContext) -> None:
    assert run_task("story-summarize", {"storyId": str(uuid.uuid4())}, ctx)["status"] == "missing"


# -- stories-update-status ---------------------------------------------------------------------------


def test_forward_moves_per_team(ctx: RecordingContext) -> None:
    story = make_story(ctx.session_factory, NOTES)
    move = {"storyId": str(story), "teamId": "team-a"}
    assert run_task("stories-update-status", {**move, "state": "unread"}, ctx)["teams"] == {
        "team-a": "updated"
    }
    assert run_task("stories-update-status", {**move, "state": "read"}, ctx)["teams"] == {"team-a": "updated"}
    row = _states(ctx)[("team-a", story)]
    assert row.state == "read" and row.read_at is not None
    assert run_task("stories-update-status", {**move, "state": "read"}, ctx)["teams"] == {
        "team-a": "unchanged"
    }
    refused = run_task("stories-update-status", {**move, "state": "unread"}, ctx)["teams"]["team-a"]
    assert refused.startswith("refused")
    assert run_task("stories-update-status", {**move, "state": "archived"}, ctx)["updated"] == 1
    assert _states(ctx)[("team-a", story)].archived_at is not None
    back = run_task("stories-update-status", {**move, "state": "unread", "allowBackwards": True}, ctx)
    assert back["updated"] == 1
    row = _states(ctx)[("team-a", story)]
    assert (row.state, row.read_at, row.archived_at) == ("unread", None, None)


def test_without_team_every_known_team_moves(ctx: RecordingContext) -> None:
    story = make_story(ctx.session_factory, NOTES)
    assert (
        run_task("stories-update-status", {"storyId": str(story), "state": "read"}, ctx)["status"]
        == "no_teams"
    )
    for team in ("team-a", "team-b"):
        run_task("stories-update-status", {"storyId": str(story), "teamId": team, "state": "unread"}, ctx)
    result = run_task("stories-update-status", {"storyId": str(story), "state": "archived"}, ctx)
    assert result["teams"] == {"team-a": "updated", "team-b": "updated"}
    # a new team can go straight to archived
    run_task("stories-update-status", {"storyId": str(story), "teamId": "team-c", "state": "archived"}, ctx)
    assert {r.state for r in _states(ctx).values()} == {"archived"}


def test_sweep_archives_stale_stories(ctx: RecordingContext) -> None:
    now = dt.datetime.now(dt.UTC)
    old = make_story(ctx.session_factory, NOTES, published_at=now - dt.timedelta(days=30))
    new = make_story(ctx.session_factory, NOTES + "\nfresh", published_at=now - dt.timedelta(days=1))
    undated = make_story(ctx.session_factory, NOTES + "\nundated")
    with ctx.session_factory.begin() as session:  # no published_at: created_at counts
        session.execute(
            update(Story).where(Story.id == undated).values(created_at=now - dt.timedelta(days=40))
        )
    for story in (old, new, undated):
        for team in ("a", "b"):
            run_task("stories-update-status", {"storyId": str(story), "teamId": team, "state": "read"}, ctx)

    only_a = run_task("stories-update-status", {"sweep": True, "teamId": "a", "staleAfterDays": 14}, ctx)
    assert only_a["archived"] == 2
    everyone = run_task("stories-update-status", {"sweep": True}, ctx)  # default: ZEKE_STALE_AFTER_DAYS (14)
    assert everyone["archived"] == 2 and everyone["staleAfterDays"] == 14
    states = _states(ctx)
    assert {k for k, r in states.items() if r.state == "archived"} == {
        ("a", old), ("b", old), ("a", undated), ("b", undated)
    }  # fmt: skip
