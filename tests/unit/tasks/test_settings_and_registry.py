"""tasks.settings and tasks.registry_data: defaults, the environment, refused values, payload
naming and every task's seed limit."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from tasks.registry_data import BY_ID, CONCURRENCY, SCHEDULES, TASKS
from tasks.settings import TaskSettings

SEED = {
    "ingest-pull": 1, "ingest-pull-youtube": 1, "ingest-oneoff": 2, "ingest-source": 5,
    "ingest-from-upload": 2, "fetch-content": 3, "analyze-story": 5, "generate-brief": 10,
    "extract-highlights": 1, "score-relevance": 20, "dedupe-insights": 1, "story-summarize": 4,
    "stories-update-status": 1,
}  # fmt: skip


def test_settings_defaults_and_env() -> None:
    default = TaskSettings.from_env({})
    assert default.openai_model == "gpt-4o-mini" and not default.openai_enabled
    assert default.allow_private_urls is False and default.youtube_feed_base.startswith(
        "https://www.youtube.com/"
    )
    env = {
        "OPENAI_API_KEY": "sk-x",
        "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
        "OPENAI_MODEL": "gpt-test",
        "ZEKE_ALLOW_PRIVATE_URLS": "true",
        "ZEKE_ALLOWED_NETWORKS": "10.0.0.0/8, fd00::/8",
        "ZEKE_FETCH_TIMEOUT": "2.5",
        "ZEKE_FETCH_MAX_BYTES": "1000",
        "YOUTUBE_FEED_BASE": "http://127.0.0.1:9/feeds/videos.xml",
        "ZEKE_RELEVANCE_KEYWORDS": "rust, wasm",
    }
    settings = TaskSettings.from_env(env)
    assert settings.openai_enabled and settings.openai_api_key.get_secret_value() == "sk-x"
    assert "sk-x" not in repr(settings)
    assert settings.allow_private_urls and settings.allowed_networks == ("10.0.0.0/8", "fd00::/8")
    assert settings.fetch_timeout == 2.5 and settings.fetch_max_bytes == 1000
    assert settings.relevance_keywords == ("rust", "wasm")


@pytest.mark.parametrize(
    "env",
    [
        {"ZEKE_ALLOW_PRIVATE_URLS": "maybe"},
        {"ZEKE_FETCH_TIMEOUT": "-1"},
        {"ZEKE_ALLOWED_NETWORKS": "10.0.0.0/33"},
    ],
)
def test_bad_settings_fail_naming_the_field(env: dict[str, str]) -> None:
    with pytest.raises((ValidationError, ValueError)):
        TaskSettings.from_env(env)


def test_registry_has_every_task_with_its_seed_limit() -> None:
    assert CONCURRENCY == SEED
    assert [spec.id for spec in TASKS] == list(BY_ID) and set(BY_ID) == set(SEED)
    assert SCHEDULES == {"ingest-pull": "*/5 * * * *", "ingest-pull-youtube": "0 */6 * * *"}
    for spec in TASKS:
        module = spec.load()
        assert module.TASK_ID == spec.id == module.PAYLOAD.task_id
        assert spec.module.startswith(f"tasks.{spec.category}.")
        assert issubclass(module.PAYLOAD, BaseModel) and callable(module.run)


def test_payloads_speak_camel_case_and_accept_snake_case() -> None:
    payload = BY_ID["fetch-content"].load().PAYLOAD
    a = payload.model_validate({"rawItemIds": ["6f1c1f5e-8d7a-4a53-9b51-0c5d9d4b0a11"]})
    b = payload.model_validate({"raw_item_ids": ["6f1c1f5e-8d7a-4a53-9b51-0c5d9d4b0a11"], "unknown": 1})
    assert a == b and a.dump() == {"rawItemIds": ["6f1c1f5e-8d7a-4a53-9b51-0c5d9d4b0a11"], "force": False}
    pull = BY_ID["ingest-pull"].load().PAYLOAD
    assert pull.model_validate({}).dump() == {"reason": "schedule", "force": False}
    with pytest.raises(ValidationError):
        payload.model_validate({"rawItemIds": []})
