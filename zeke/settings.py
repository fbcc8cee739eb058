"""zeke's runtime settings, read once from the environment.

Every process (worker, beat, API, CLI) reads the same variables, so a value set for ``zeke run`` reaches
all of its children. Nothing here connects anywhere: the database URL itself comes from
:func:`zeke.database.database_url`, which may start the embedded server.
"""

from __future__ import annotations

import ipaddress
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import TypeVar

#: ZEKE_API_MAX_BODY_BYTES's default: 16 MiB.
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024

#: Modules imported to fill the task registry when none are configured: the Zeke task suite.
DEFAULT_TASK_MODULES = ("tasks",)


def _split(value: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (value or "").split(",") if part.strip())


T = TypeVar("T", int, float)


def _number(name: str, default: T, parse: Callable[[str], T], valid: Callable[[T], bool], what: str) -> T:
    """``name`` from the environment, parsed and checked; unset or blank gives ``default``."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = parse(raw)
    except ValueError:
        value = None
    if value is None or not valid(value):
        raise ValueError(f"{name} must be {what}, not {raw!r}")
    return value


def _seconds(name: str, default: float) -> float:
    """A positive, finite number of seconds: 0 would make every SSE stream spin, NaN never wait."""
    return _number(name, default, float, lambda v: math.isfinite(v) and v > 0, "a number of seconds > 0")


def _port(name: str, default: int) -> int:
    # 0: any free port, as uvicorn takes it
    return _number(name, default, int, lambda v: 0 <= v <= 65535, "a TCP port (0-65535)")


def _flag(name: str) -> bool | None:
    """A yes/no variable; unset or blank gives None (the caller's default)."""
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return None
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name} must be 1 or 0 (true/false), not {raw!r}")


def is_loopback(host: str | None) -> bool:
    """Whether ``host`` only reaches this machine (127.0.0.0/8, ::1, "localhost")."""
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Settings:
    #: "development" or "production" (the default, as README promises). Anonymous API access is only
    #: ever considered in development.
    env: str = "production"
    #: Bearer tokens the HTTP API accepts (``ZEKE_API_KEYS``, comma-separated).
    api_keys: tuple[str, ...] = ()
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    #: The pg-boss schema every component works in.
    pgboss_schema: str = "pgboss"
    #: Modules whose import registers the schema tasks (``ZEKE_TASK_MODULES``, comma-separated).
    task_modules: tuple[str, ...] = field(default=DEFAULT_TASK_MODULES)
    #: SSE: comment line this often so proxies keep the stream open.
    sse_keepalive_seconds: float = 15.0
    #: SSE: re-read the job this often anyway; catches changes made outside the manager (Node pg-boss).
    sse_reread_seconds: float = 15.0
    #: SSE: a stream ends (event ``timeout``) after this long; the client reconnects if it still cares.
    sse_max_seconds: float = 300.0
    #: Request bodies larger than this are refused with 413 before they are parsed or authenticated
    #: (``ZEKE_API_MAX_BODY_BYTES``; the default leaves room for a 5 MiB upload in base64).
    api_max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    #: Serve /docs, /redoc and /openapi.json (``ZEKE_API_DOCS``: 1/0; unset: only in development).
    api_docs: bool | None = None

    @property
    def docs_enabled(self) -> bool:
        return self.development if self.api_docs is None else self.api_docs

    @property
    def development(self) -> bool:
        return self.env == "development"

    @property
    def anonymous_allowed(self) -> bool:
        """No keys configured, development, and the API bound to loopback: nobody else can reach it."""
        return not self.api_keys and self.development and is_loopback(self.api_host)


def from_env() -> Settings:
    return Settings(
        env=os.environ.get("ZEKE_ENV", "production").strip().lower() or "production",
        api_keys=_split(os.environ.get("ZEKE_API_KEYS")),
        api_host=os.environ.get("ZEKE_API_HOST", "127.0.0.1").strip() or "127.0.0.1",
        api_port=_port("ZEKE_API_PORT", 8000),
        pgboss_schema=os.environ.get("ZEKE_PGBOSS_SCHEMA", "pgboss").strip() or "pgboss",
        task_modules=_split(os.environ.get("ZEKE_TASK_MODULES")) or DEFAULT_TASK_MODULES,
        sse_keepalive_seconds=_seconds("ZEKE_SSE_KEEPALIVE_SECONDS", 15.0),
        sse_reread_seconds=_seconds("ZEKE_SSE_REREAD_SECONDS", 15.0),
        sse_max_seconds=_seconds("ZEKE_SSE_MAX_SECONDS", 300.0),
        api_max_body_bytes=_number(
            "ZEKE_API_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES, int, lambda v: v > 0, "a number of bytes > 0"
        ),
        api_docs=_flag("ZEKE_API_DOCS"),
    )


@cache
def get_settings() -> Settings:
    """The process's settings (cached; tests call ``get_settings.cache_clear()`` after changing env)."""
    return from_env()
