"""The FastAPI application: ``uvicorn zeke.api.app:app`` or ``zeke api``.

:func:`create_api` takes what it needs as arguments so tests can serve another database or schema
(a ``manager`` given becomes :mod:`zeke.client`'s); the module-level ``app`` uses the process's
settings, the client's JobManager and the task modules of ``ZEKE_TASK_MODULES``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

import anyio.to_thread
from fastapi import FastAPI

from transport.manager import JobManager
from zeke import client
from zeke.api import routes
from zeke.api.jobs import Jobs
from zeke.api.sse import StateHub
from zeke.registry import TaskRegistry
from zeke.settings import Settings, get_settings

log = logging.getLogger("zeke.api")


def create_api(
    settings: Settings | None = None,
    manager: JobManager | None = None,
    registry: TaskRegistry | None = None,
) -> FastAPI:
    settings = settings or get_settings()
    if manager is not None:
        client.set_manager(manager)  # the API serves the client's manager: make it this one
    manager = client.get_manager()
    if registry is None:
        from zeke import registry as registry_module

        registry = registry_module.load(settings.task_modules)

    hub = StateHub(manager)

    @contextlib.asynccontextmanager
    async def lifespan(api: FastAPI) -> AsyncIterator[None]:
        if not settings.api_keys and not settings.anonymous_allowed:
            log.warning("ZEKE_API_KEYS is empty and anonymous access is off: every /api request gets 401")
        # Blocking handlers run in anyio's threadpool, 40 threads by default; the pool behind the
        # manager raises instead of waiting when it runs dry, so never run more at once than it holds.
        anyio.to_thread.current_default_thread_limiter().total_tokens = manager.db.max_connections
        await hub.start()
        try:
            yield
        finally:
            await hub.stop()

    api = FastAPI(
        title="zeke",
        version="0.1.0",
        summary="Trigger and follow Zeke's jobs (Celery on pg-boss)",
        lifespan=lifespan,
    )
    api.state.settings = settings
    api.state.jobs = Jobs(registry)
    api.state.hub = hub
    api.include_router(routes.health)
    api.include_router(routes.api)
    return api


def __getattr__(name: str) -> FastAPI:
    # `uvicorn zeke.api.app:app` builds the default app on first access, not on import.
    if name == "app":
        globals()["app"] = built = create_api()
        return built
    raise AttributeError(name)
