"""The FastAPI application: ``uvicorn zeke.api.app:app`` or ``zeke api``.

:func:`create_api` takes what it needs as arguments so tests can serve another database or schema
(a ``manager`` given becomes :mod:`zeke.client`'s); the module-level ``app`` uses the process's
settings, the client's JobManager and the task modules of ``ZEKE_TASK_MODULES``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
from collections.abc import AsyncIterator
from typing import Any

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.utils import is_body_allowed_for_status_code
from starlette.exceptions import HTTPException

from transport.manager import JobManager
from zeke import client
from zeke.api import routes
from zeke.api.limits import BodyLimit
from zeke.api.sse import StateHub
from zeke.jobs import Jobs
from zeke.registry import TaskRegistry
from zeke.settings import Settings, get_settings

log = logging.getLogger("zeke.api")


class EchoSafeJSONResponse(JSONResponse):
    """JSON that always encodes. Error bodies echo what the client sent, and JSON lets a client send
    an unpaired surrogate ("\\ud800") that UTF-8 cannot carry: it goes back as that same escape
    instead of the response failing with a 500. Python's parser also takes NaN and Infinity, which
    JSON has no words for: an echoed one goes back as a string ("nan", "inf")."""

    def render(self, content: Any) -> bytes:
        try:
            text = _dumps(content)
        except ValueError:  # a non-finite float: rare, so only then the walk
            text = _dumps(_finite(content))
        return text.encode("utf-8", "backslashreplace")  # only ever inside a JSON string literal


def _dumps(content: Any) -> str:
    return json.dumps(content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":"))


def _finite(value: Any) -> Any:
    """``value`` with every NaN and ±Infinity as its string (error bodies: small, shallow)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


async def _http_error(request: Request, exc: HTTPException) -> Response:
    """FastAPI's own handler, rendered with :class:`EchoSafeJSONResponse`."""
    headers = getattr(exc, "headers", None)
    if not is_body_allowed_for_status_code(exc.status_code):
        return Response(status_code=exc.status_code, headers=headers)
    return EchoSafeJSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)


async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
    """FastAPI's own 422, rendered with :class:`EchoSafeJSONResponse`."""
    return EchoSafeJSONResponse({"detail": jsonable_encoder(exc.errors())}, status_code=422)


def create_api(
    settings: Settings | None = None,
    manager: JobManager | None = None,
    registry: TaskRegistry | None = None,
) -> FastAPI:
    settings = settings or get_settings()
    if manager is not None:
        client.set_manager(manager)  # the API serves the client's manager: make it this one
    manager = client.get_manager()
    # The process's LISTEN connection when the manager is the client's own (on the process's hub).
    hub = client.get_hub()
    if registry is None:
        from zeke import registry as registry_module

        registry = registry_module.load(settings.task_modules)

    states = StateHub(manager, hub.listener if hub is not None else None)

    @contextlib.asynccontextmanager
    async def lifespan(api: FastAPI) -> AsyncIterator[None]:
        if not settings.api_keys and not settings.anonymous_allowed:
            log.warning("ZEKE_API_KEYS is empty and anonymous access is off: every /api request gets 401")
        # Blocking handlers run in anyio's threadpool, 40 threads by default; the pool behind the
        # manager raises instead of waiting when it runs dry, so never run more at once than it holds.
        anyio.to_thread.current_default_thread_limiter().total_tokens = manager.db.max_connections
        await states.start()
        try:
            yield
        finally:
            await states.stop()

    docs = settings.docs_enabled  # public API docs only in development, unless ZEKE_API_DOCS says
    api = FastAPI(
        title="zeke",
        version="0.1.0",
        summary="Trigger and follow Zeke's jobs (Celery on pg-boss)",
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error, RequestValidationError: _validation_error},
        openapi_url="/openapi.json" if docs else None,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
    )
    # Outermost, so an oversized body is refused before routing, authentication or parsing.
    api.add_middleware(BodyLimit, max_body_bytes=settings.api_max_body_bytes)
    api.state.settings = settings
    api.state.jobs = Jobs(registry)
    api.state.hub = states
    api.include_router(routes.health)
    api.include_router(routes.api)
    from zeke import dashboard

    dashboard.install(api)
    return api


def __getattr__(name: str) -> FastAPI:
    # `uvicorn zeke.api.app:app` builds the default app on first access, not on import.
    if name == "app":
        globals()["app"] = built = create_api()
        return built
    raise AttributeError(name)
