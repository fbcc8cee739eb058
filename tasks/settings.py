"""Settings of the task suite, read from the environment once at the edge and passed down in ``ctx``.

Every option names its environment variable, unit and default. Invalid values fail when the object is
built, naming the field.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

#: Words that make a highlight interesting to Zeke's readers (developers building with AI).
DEFAULT_RELEVANCE_KEYWORDS: tuple[str, ...] = (
    "agent", "ai", "api", "benchmark", "breaking change", "claude", "cli", "compiler", "context window",
    "cost", "database", "deprecat", "embedding", "endpoint", "eval", "fine-tun", "gpt", "gpu", "inference",
    "latency", "llm", "model", "open source", "open-source", "postgres", "python", "rag", "release",
    "rust", "sdk", "security", "throughput", "token", "typescript", "vulnerab",
)  # fmt: skip

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class TaskSettings(BaseModel):
    """What the tasks need to know about the outside world."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: ``OPENAI_API_KEY``. Without it the AI tasks use the deterministic offline provider.
    openai_api_key: SecretStr | None = None
    #: ``OPENAI_BASE_URL``: an OpenAI-compatible endpoint; None means the client's default.
    openai_base_url: str | None = None
    #: ``OPENAI_MODEL``: chat model for analysis and briefs.
    openai_model: str = "gpt-4o-mini"
    #: ``OPENAI_TIMEOUT`` (seconds) for one OpenAI request; a timeout becomes ``RetryLater``.
    openai_timeout: float = Field(default=60.0, gt=0)

    #: ``ZEKE_ALLOW_PRIVATE_URLS``: let fetches reach loopback, private and link-local addresses.
    allow_private_urls: bool = False
    #: ``ZEKE_ALLOWED_NETWORKS`` (comma-separated CIDRs): non-public networks fetches may reach anyway.
    allowed_networks: tuple[str, ...] = ()
    #: ``ZEKE_FETCH_TIMEOUT`` (seconds): connect/read timeout, and the deadline for a whole download.
    fetch_timeout: float = Field(default=15.0, gt=0)
    #: ``ZEKE_FETCH_MAX_BYTES``: a response body larger than this (after decompression) is refused.
    fetch_max_bytes: int = Field(default=5 * 1024 * 1024, gt=0)
    #: ``ZEKE_FETCH_MAX_REDIRECTS``: redirects followed (each hop is checked again) before giving up.
    fetch_max_redirects: int = Field(default=5, ge=0)
    #: ``ZEKE_USER_AGENT``.
    user_agent: str = "zeke/0.1 (+https://github.com/zekehq/zeke)"
    #: ``ZEKE_FETCH_CHUNK``: raw items per fetch-content job.
    fetch_chunk_size: int = Field(default=20, ge=1, le=100)
    #: ``ZEKE_FETCH_MAX_ATTEMPTS``: transient fetch failures of one item are retried up to this many times.
    fetch_max_attempts: int = Field(default=3, ge=1)
    #: ``ZEKE_MIN_CONTENT_CHARS``: extracted text shorter than this counts as "no text".
    min_content_chars: int = Field(default=80, ge=1)
    #: ``ZEKE_MAX_FEED_ITEMS``: entries taken from one feed per run (newest first as the feed lists them).
    max_feed_items: int = Field(default=200, ge=1)

    #: ``YOUTUBE_FEED_BASE``: where channel feeds live; ``?channel_id=…`` is appended.
    youtube_feed_base: str = "https://www.youtube.com/feeds/videos.xml"
    #: ``ZEKE_RETRY_AFTER`` (seconds): back-off when a server gives no Retry-After.
    default_retry_after: float = Field(default=30.0, gt=0)
    #: ``ZEKE_STALE_AFTER_DAYS``: the status sweep archives stories older than this.
    stale_after_days: int = Field(default=14, ge=1)
    #: ``ZEKE_RELEVANCE_KEYWORDS`` (comma-separated): keywords score-relevance looks for.
    relevance_keywords: tuple[str, ...] = DEFAULT_RELEVANCE_KEYWORDS
    #: ``ZEKE_DEMO``: pull the demo's sample sources too (``zeke run`` in demo mode sets it for its
    #: children). Any other process leaves them alone, so a demo source left active never gets pulled.
    demo: bool = False

    @field_validator("allowed_networks")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for net in value:
            ipaddress.ip_network(net, strict=False)  # raises ValueError naming the bad value
        return value

    @property
    def openai_enabled(self) -> bool:
        return bool(self.openai_api_key and self.openai_api_key.get_secret_value())

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TaskSettings:
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for name, field in _ENV.items():
            raw = env.get(name)
            if raw is None or (raw.strip() == "" and field != "allow_private_urls"):
                continue
            values[field] = _convert(field, raw.strip())
        return cls(**values)


#: environment variable -> field
_ENV = {
    "OPENAI_API_KEY": "openai_api_key",
    "OPENAI_BASE_URL": "openai_base_url",
    "OPENAI_MODEL": "openai_model",
    "OPENAI_TIMEOUT": "openai_timeout",
    "ZEKE_ALLOW_PRIVATE_URLS": "allow_private_urls",
    "ZEKE_ALLOWED_NETWORKS": "allowed_networks",
    "ZEKE_FETCH_TIMEOUT": "fetch_timeout",
    "ZEKE_FETCH_MAX_BYTES": "fetch_max_bytes",
    "ZEKE_FETCH_MAX_REDIRECTS": "fetch_max_redirects",
    "ZEKE_USER_AGENT": "user_agent",
    "ZEKE_FETCH_CHUNK": "fetch_chunk_size",
    "ZEKE_FETCH_MAX_ATTEMPTS": "fetch_max_attempts",
    "ZEKE_MIN_CONTENT_CHARS": "min_content_chars",
    "ZEKE_MAX_FEED_ITEMS": "max_feed_items",
    "YOUTUBE_FEED_BASE": "youtube_feed_base",
    "ZEKE_RETRY_AFTER": "default_retry_after",
    "ZEKE_STALE_AFTER_DAYS": "stale_after_days",
    "ZEKE_RELEVANCE_KEYWORDS": "relevance_keywords",
    "ZEKE_DEMO": "demo",
}


def _convert(field: str, raw: str) -> object:
    if field in {"allow_private_urls", "demo"}:
        lowered = raw.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        name = next(env for env, f in _ENV.items() if f == field)
        raise ValueError(f"{name} must be true or false, not {raw!r}")
    if field in {"allowed_networks", "relevance_keywords"}:
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    return raw
