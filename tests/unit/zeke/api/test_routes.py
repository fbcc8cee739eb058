"""zeke.api settings that need no server: anonymous access is opt-in, and the body size limit."""

from __future__ import annotations

import pytest


def test_anonymous_access_is_opt_in(monkeypatch: pytest.MonkeyPatch) -> None:
    """README: ZEKE_ENV defaults to production; anonymous loopback access needs ZEKE_ENV=development."""
    from zeke.settings import Settings, from_env

    for name in ("ZEKE_ENV", "ZEKE_API_KEYS", "ZEKE_API_HOST"):
        monkeypatch.delenv(name, raising=False)
    assert from_env().env == Settings().env == "production"
    assert not from_env().anonymous_allowed and not Settings().anonymous_allowed
    monkeypatch.setenv("ZEKE_ENV", "development")
    assert from_env().anonymous_allowed


def test_max_body_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from zeke.settings import DEFAULT_MAX_BODY_BYTES, from_env

    monkeypatch.delenv("ZEKE_API_MAX_BODY_BYTES", raising=False)
    assert from_env().api_max_body_bytes == DEFAULT_MAX_BODY_BYTES
    monkeypatch.setenv("ZEKE_API_MAX_BODY_BYTES", "2048")
    assert from_env().api_max_body_bytes == 2048
    monkeypatch.setenv("ZEKE_API_MAX_BODY_BYTES", "0")
    with pytest.raises(ValueError, match="ZEKE_API_MAX_BODY_BYTES"):
        from_env()
