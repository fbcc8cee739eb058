from __future__ import annotations

import traceback
import uuid

import pytest
from sqlalchemy import select

from tasks.db.models import StoryAnalysis
from tasks.lib.errors import PermanentError, ProviderResponseInvalid, RetryLater
from tests.tasks.conftest import make_story
from tests.tasks.helpers import FIXTURES, FakeOpenAI, RecordingContext, run_task

ARTICLE = (FIXTURES / "pages/notes.md").read_text()


def _analysis(ctx: RecordingContext, story_id: uuid.UUID) -> StoryAnalysis | None:
    with ctx.session_factory() as session:
        return session.scalars(select(StoryAnalysis).where(StoryAnalysis.story_id == story_id)).first()


def test_offline_analysis_is_extractive_and_deterministic(ctx: RecordingContext) -> None:
    story_id = make_story(ctx.session_factory, ARTICLE, title="tidewire 0.9 adds streaming")
    result = run_task("analyze-story", {"storyId": str(story_id)}, ctx)

    assert result["status"] == "analyzed" and result["provider"] == "offline"
    row = _analysis(ctx, story_id)
    assert row is not None and row.provider == "offline" and row.model == "extractive-v1"
    bullets = row.why_it_matters.splitlines()
    assert 1 <= len(bullets) <= 3 and all(b.startswith("• ") for b in bullets)
    flat = " ".join(ARTICLE.split())
    assert all(b[2:] in flat for b in bullets)  # every bullet is a sentence of the story
    assert 0 <= row.chili <= 5 and 0 < row.confidence <= 0.9
    assert row.citations and all(
        c["quote"] in flat and c["url"] == "https://news.test/story" for c in row.citations
    )
    assert [t.task_id for t in ctx.triggered] == ["generate-brief", "extract-highlights"]
    assert ctx.sent("generate-brief") == [{"storyId": str(story_id), "reason": "new_story"}]
    assert "score-relevance" not in [t.task_id for t in ctx.triggered]  # extract-highlights sends that

    # same text, same answer; an automatic re-run does not analyse again but re-sends the follow-ups
    other = make_story(ctx.session_factory, ARTICLE + " ", title="tidewire 0.9 adds streaming")
    assert other == story_id  # whitespace-only difference: same content hash, same story
    again = run_task("analyze-story", {"storyId": str(story_id)}, ctx)
    assert again["status"] == "already_analyzed" and len(ctx.sent("generate-brief")) == 2
    forced = run_task("analyze-story", {"storyId": str(story_id), "trigger": "manual"}, ctx)
    assert (forced["chili"], forced["confidence"]) == (result["chili"], result["confidence"])


def test_offline_chili_tracks_the_text(ctx: RecordingContext) -> None:
    calm = make_story(
        ctx.session_factory, "The team met on Tuesday to discuss the roadmap for next year. " * 3
    )
    hot = make_story(
        ctx.session_factory,
        "Critical security vulnerability CVE-2026-1234 disclosed; a patched release is out and the "
        "exploit is public. Upgrade now: the fix lands 40% faster builds too. " * 30,
        title="Security release fixes actively exploited vulnerability",
    )
    run_task("analyze-story", {"storyId": str(calm)}, ctx)
    run_task("analyze-story", {"storyId": str(hot)}, ctx)
    assert _analysis(ctx, hot).chili > _analysis(ctx, calm).chili


def test_openai_structured_output(openai_ctx: RecordingContext, fake_openai: FakeOpenAI) -> None:
    story_id = make_story(openai_ctx.session_factory, ARTICLE, title="tidewire 0.9")
    result = run_task("analyze-story", {"storyId": str(story_id)}, openai_ctx)

    assert result["provider"] == "openai" and result["model"] == "gpt-4o-mini"
    assert result["usage"] == {"prompt_tokens": 321, "completion_tokens": 54, "total_tokens": 375}
    row = _analysis(openai_ctx, story_id)
    assert row.provider == "openai" and row.chili == 4 and row.confidence == 0.82
    assert row.why_it_matters.startswith("• Build times drop")
    assert row.citations == [
        {"quote": "cold builds of its reference monorepo are 38% faster", "url": "https://news.test/story"}
    ]
    assert row.token_usage["analysis"]["total_tokens"] == 375

    request = fake_openai.requests[0]
    assert request["model"] == "gpt-4o-mini"
    assert request["response_format"]["type"] == "json_schema"
    schema = request["response_format"]["json_schema"]
    assert schema["name"] == "AnalysisOutput" and schema["strict"] is True
    assert set(schema["schema"]["required"]) == {"why_it_matters", "chili", "confidence", "citations"}
    assert "tidewire 0.9 adds streaming responses" in request["messages"][1]["content"]
    assert fake_openai.headers[0]["authorization"] == "Bearer sk-test-not-a-real-key"


def test_openai_answers_are_clamped(openai_ctx: RecordingContext, fake_openai: FakeOpenAI) -> None:
    fake_openai.replies["AnalysisOutput"] = {
        "why_it_matters": "• x",
        "chili": 11,
        "confidence": 7,
        "citations": [],
    }
    story_id = make_story(openai_ctx.session_factory, ARTICLE)
    run_task("analyze-story", {"storyId": str(story_id)}, openai_ctx)
    row = _analysis(openai_ctx, story_id)
    assert (row.chili, row.confidence) == (5, 1.0)


def test_rate_limit_surfaces_retry_after(openai_ctx: RecordingContext, fake_openai: FakeOpenAI) -> None:
    fake_openai.mode = "rate_limit"
    fake_openai.retry_after = "13"
    story_id = make_story(openai_ctx.session_factory, ARTICLE)
    with pytest.raises(RetryLater) as raised:
        run_task("analyze-story", {"storyId": str(story_id)}, openai_ctx)
    assert raised.value.seconds == 13 and "429" in str(raised.value)
    assert len(fake_openai.requests) == 1  # the client does not retry on its own; the queue does
    assert _analysis(openai_ctx, story_id) is None and openai_ctx.triggered == []


def test_timeout_and_server_errors_are_retryable(
    openai_ctx: RecordingContext, fake_openai: FakeOpenAI
) -> None:
    story_id = make_story(openai_ctx.session_factory, ARTICLE)
    fake_openai.mode = "slow"  # openai_timeout is 1 s in the test settings
    with pytest.raises(RetryLater) as timed_out:
        run_task("analyze-story", {"storyId": str(story_id)}, openai_ctx)
    assert timed_out.value.seconds == openai_ctx.settings.default_retry_after and "timed out" in str(
        timed_out.value
    )
    fake_openai.mode = "server_error"
    with pytest.raises(RetryLater):
        run_task("analyze-story", {"storyId": str(story_id)}, openai_ctx)


def test_garbage_json_is_a_clear_permanent_error(
    openai_ctx: RecordingContext, fake_openai: FakeOpenAI
) -> None:
    fake_openai.mode = "garbage"
    story_id = make_story(openai_ctx.session_factory, ARTICLE)
    with pytest.raises(ProviderResponseInvalid, match="not valid structured output") as raised:
        run_task("analyze-story", {"storyId": str(story_id)}, openai_ctx)
    assert isinstance(raised.value, PermanentError) and not isinstance(raised.value, RetryLater)
    assert _analysis(openai_ctx, story_id) is None and openai_ctx.triggered == []


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("html", "answered 200 with text/html; charset=utf-8, not a JSON chat completion"),
        ("not_a_completion", "not a chat completion: {'message': 'upstream model overloaded'}"),
    ],
)
def test_a_reply_that_is_not_a_completion_is_a_clear_permanent_error(
    openai_ctx: RecordingContext, fake_openai: FakeOpenAI, mode: str, message: str
) -> None:
    """A 200 whose body is no chat completion (a proxy's page, an error object) used to escape as a bare
    TypeError/AttributeError ("'NoneType' object is not iterable"), retried by the queue's policy."""
    fake_openai.mode = mode
    story_id = make_story(openai_ctx.session_factory, ARTICLE)
    for task_id in ("analyze-story", "generate-brief"):
        with pytest.raises(ProviderResponseInvalid) as raised:
            run_task(task_id, {"storyId": str(story_id)}, openai_ctx)
        assert message in str(raised.value)
    assert _analysis(openai_ctx, story_id) is None and openai_ctx.triggered == []


def test_nul_characters_from_the_model_are_dropped(
    openai_ctx: RecordingContext, fake_openai: FakeOpenAI
) -> None:
    """PostgreSQL text and jsonb hold no NUL: a model answer with one used to fail the job at the INSERT."""
    fake_openai.replies["AnalysisOutput"] = {
        "why_it_matters": "• Builds get \x00faster.",
        "chili": 3,
        "confidence": 0.7,
        "citations": [{"quote": "38%\x00 faster", "url": "https://news.test/\x00a"}],
    }
    fake_openai.replies["BriefOutput"] = {
        "one_liner": "One\x00 line.",
        "two_liner": "Two\x00 lines. Really.",
        "elevator": "First\x00 sentence. Second sentence. Third sentence.",
    }
    story_id = make_story(openai_ctx.session_factory, ARTICLE)
    run_task("analyze-story", {"storyId": str(story_id)}, openai_ctx)
    run_task("generate-brief", {"storyId": str(story_id)}, openai_ctx)
    row = _analysis(openai_ctx, story_id)
    assert row is not None and row.why_it_matters == "• Builds get faster."
    assert row.citations == [{"quote": "38% faster", "url": "https://news.test/a"}]
    assert (row.one_liner, row.two_liner) == ("One line.", "Two lines. Really.")
    assert row.elevator.startswith("First sentence.")


def test_rejected_request_is_permanent(openai_ctx: RecordingContext, fake_openai: FakeOpenAI) -> None:
    fake_openai.mode = "bad_request"
    story_id = make_story(openai_ctx.session_factory, ARTICLE)
    with pytest.raises(PermanentError, match="400"):
        run_task("analyze-story", {"storyId": str(story_id)}, openai_ctx)


@pytest.mark.parametrize("mode", ["echo_key", "echo_key_500", "echo_key_200"])
def test_an_api_key_echoed_by_the_server_stays_out_of_the_error(
    openai_ctx: RecordingContext, fake_openai: FakeOpenAI, mode: str
) -> None:
    fake_openai.mode = mode
    story_id = make_story(openai_ctx.session_factory, ARTICLE)
    with pytest.raises((PermanentError, RetryLater)) as caught:
        run_task("analyze-story", {"storyId": str(story_id)}, openai_ctx)
    # What a failed job's output keeps: the message and the whole traceback, causes included.
    stored = "".join(traceback.format_exception(caught.value))
    assert "sk-test-not-a-real-key" not in stored
    assert "Incorrect API key provided" in stored  # the server's reason is still there, redacted


def test_missing_story(ctx: RecordingContext) -> None:
    assert run_task("analyze-story", {"storyId": str(uuid.uuid4())}, ctx)["status"] == "missing"
    assert ctx.triggered == []
