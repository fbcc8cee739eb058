from __future__ import annotations

import uuid

import pytest

from tasks.db.models import StoryAnalysis
from tasks.lib.errors import ProviderResponseInvalid, RetryLater
from tasks.lib.text import sentences
from tests.tasks.conftest import make_story
from tests.tasks.helpers import FIXTURES, FakeOpenAI, RecordingContext, run_task

TEXT = (FIXTURES / "pages/notes.md").read_text()
LONG = " ".join(
    f"Sentence number {i} explains a detail of the release with enough words to be a real sentence."
    for i in range(12)
)


def _row(ctx: RecordingContext, story_id: uuid.UUID) -> StoryAnalysis:
    with ctx.session_factory() as session:
        return session.get_one(StoryAnalysis, story_id)


def test_offline_brief_respects_the_limits(ctx: RecordingContext) -> None:
    story_id = make_story(ctx.session_factory, LONG + " " + TEXT, title="tidewire 0.9")
    result = run_task("generate-brief", {"storyId": str(story_id)}, ctx)
    assert result["status"] == "generated" and result["provider"] == "offline"
    row = _row(ctx, story_id)
    assert 0 < len(row.one_liner) <= 140 and 0 < len(row.two_liner) <= 280
    assert 3 <= len(sentences(row.elevator)) <= 4
    assert row.brief_provider == "offline" and row.brief_generated_at is not None
    flat = " ".join((LONG + " " + TEXT).split())
    assert all(s in flat for s in sentences(row.elevator))  # extractive: the story's own sentences


def test_existing_brief_is_kept_for_new_story_and_replaced_on_request(ctx: RecordingContext) -> None:
    story_id = make_story(ctx.session_factory, TEXT)
    run_task("generate-brief", {"storyId": str(story_id)}, ctx)
    assert run_task("generate-brief", {"storyId": str(story_id)}, ctx)["status"] == "exists"
    assert (
        run_task("generate-brief", {"storyId": str(story_id), "reason": "regenerate"}, ctx)["status"]
        == "generated"
    )


def test_openai_brief_after_analysis(openai_ctx: RecordingContext, fake_openai: FakeOpenAI) -> None:
    story_id = make_story(openai_ctx.session_factory, TEXT, title="Quillstack 3.0")
    run_task("analyze-story", {"storyId": str(story_id)}, openai_ctx)
    result = run_task("generate-brief", {"storyId": str(story_id)}, openai_ctx)
    assert result["provider"] == "openai"
    row = _row(openai_ctx, story_id)
    assert row.one_liner.startswith("Quillstack 3.0 makes") and len(sentences(row.elevator)) == 4
    assert row.provider == "openai" and row.brief_provider == "openai"
    assert set(row.token_usage) == {"analysis", "brief"}
    brief_request = fake_openai.requests[-1]
    assert brief_request["response_format"]["json_schema"]["name"] == "BriefOutput"
    assert "Why it matters" in brief_request["messages"][1]["content"]


def test_openai_brief_is_trimmed_and_topped_up(openai_ctx: RecordingContext, fake_openai: FakeOpenAI) -> None:
    fake_openai.replies["BriefOutput"] = {
        "one_liner": "word " * 60,
        "two_liner": "longer " * 80,
        "elevator": "Only one sentence here.",
    }
    story_id = make_story(openai_ctx.session_factory, LONG)
    run_task("generate-brief", {"storyId": str(story_id)}, openai_ctx)
    row = _row(openai_ctx, story_id)
    assert len(row.one_liner) <= 140 and row.one_liner.endswith("…") and len(row.two_liner) <= 280
    assert sentences(row.elevator)[0] == "Only one sentence here." and len(sentences(row.elevator)) == 3


def test_openai_brief_errors(openai_ctx: RecordingContext, fake_openai: FakeOpenAI) -> None:
    story_id = make_story(openai_ctx.session_factory, TEXT)
    fake_openai.mode = "rate_limit"
    with pytest.raises(RetryLater):
        run_task("generate-brief", {"storyId": str(story_id)}, openai_ctx)
    fake_openai.mode = "garbage"
    with pytest.raises(ProviderResponseInvalid):
        run_task("generate-brief", {"storyId": str(story_id)}, openai_ctx)


def test_missing_story(ctx: RecordingContext) -> None:
    assert run_task("generate-brief", {"storyId": str(uuid.uuid4())}, ctx)["status"] == "missing"
