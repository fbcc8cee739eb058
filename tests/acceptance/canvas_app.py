"""The Celery app the canvas acceptance tests run in real ``celery worker`` processes.

One module, two set-ups, chosen by ``ZEKE_CANVAS_MODE``: ``pgboss`` (broker and result backend
``pgboss://`` in the pg-boss schema ``ZEKE_CANVAS_SCHEMA``) or ``redis`` (Redis broker and result
backend, every key under ``ZEKE_CANVAS_PREFIX``). The same tasks
(``tests.acceptance.canvas_tasks``) and the same tests run on both, so what the tests expect is
what Celery does on Redis.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery

import transport  # noqa: F401  (registers pgboss://)


def make_app(mode: str, pg_url: str, schema: str, redis_url: str, prefix: str) -> Celery:
    # On pg-boss, groups, chord headers and chunks go out as one INSERT per queue, as in zeke's app.
    app = Celery("canvas_app", **({"amqp": "transport.batch_publish:AMQP"} if mode == "pgboss" else {}))
    common: dict[str, Any] = dict(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        worker_prefetch_multiplier=4,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        result_chord_join_timeout=10.0,
        imports=["tests.acceptance.canvas_tasks"],
    )
    if mode == "pgboss":
        url = "pgboss://" + pg_url.split("://", 1)[1]
        options = {
            "schema": schema,
            "polling_interval": 2.0,
            "supervise_interval": 1.0,
            # Failures are final, as on Redis: only Celery's own Task.retry() runs a task again.
            # ... except on "canvas-fragile", where pg-boss itself runs a failed job once more.
            "queue_options": {
                "celery": {"retry_limit": 0},
                "canvas-fragile": {"retry_limit": 1, "retry_delay": 0, "retry_backoff": False},
            },
        }
        app.conf.update(
            broker_url=url,
            result_backend=url,
            broker_transport_options=options,
            result_backend_transport_options={"schema": schema},
            **common,
        )
    elif mode == "redis":
        app.conf.update(
            broker_url=redis_url,
            result_backend=redis_url,
            broker_transport_options={"global_keyprefix": prefix},
            result_backend_transport_options={"global_keyprefix": prefix},
            **common,
        )
    else:
        raise ValueError(f"unknown canvas mode {mode!r}")
    return app


def _from_environ() -> Celery | None:
    mode = os.environ.get("ZEKE_CANVAS_MODE")
    if not mode:
        return None
    return make_app(
        mode,
        os.environ["ZEKE_CANVAS_PG_URL"],
        os.environ.get("ZEKE_CANVAS_SCHEMA", "pgboss"),
        os.environ.get("ZEKE_CANVAS_REDIS_URL", "redis://127.0.0.1:6379/0"),
        os.environ.get("ZEKE_CANVAS_PREFIX", ""),
    )


app = _from_environ()
