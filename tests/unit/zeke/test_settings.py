"""zeke.settings: the environment read once, and refused with the variable's name when it is wrong."""

from __future__ import annotations

import pytest

from zeke.settings import from_env

SSE = ("ZEKE_SSE_KEEPALIVE_SECONDS", "ZEKE_SSE_REREAD_SECONDS", "ZEKE_SSE_MAX_SECONDS")


@pytest.mark.parametrize("name", SSE)
@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "soon"])
def test_sse_intervals_must_be_positive(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    # A keep-alive of 0 made every stream spin writing comments (100 000 in 40 ms); a re-read of 0
    # made it read the job as fast as the database answered.
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=name):
        from_env()


def test_sse_intervals_and_port(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SSE:
        monkeypatch.setenv(name, " 2.5 ")
    monkeypatch.setenv("ZEKE_API_PORT", "8123")
    settings = from_env()
    assert settings.sse_keepalive_seconds == settings.sse_reread_seconds == settings.sse_max_seconds == 2.5
    assert settings.api_port == 8123
    for value in ("http", "-1", "70000"):
        monkeypatch.setenv("ZEKE_API_PORT", value)
        with pytest.raises(ValueError, match="ZEKE_API_PORT"):
            from_env()
