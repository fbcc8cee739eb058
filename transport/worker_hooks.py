"""The Celery worker's side of the transport: Celery's signals fill :data:`transport.worker_state.WORKER`,
the plain object the transport reads, and fail the jobs Celery refuses.

* ``worker_init`` (the worker's main process, before its consumer connects): which tasks run now, the
  worker's shutdown check, whether its result backend records each job's end, task time limits.
  Celery sends no signal in the main process when a pool child accepts a task, so the running tasks
  are the worker's own list of accepted requests, read here and nowhere else.
* ``task_rejected``/``task_unknown``: Celery refused a delivered job; it fails at once, for good.

Nothing here runs without a Celery worker: plain Kombu keeps :class:`WorkerState`'s defaults.
Connected when ``transport`` is imported, which a worker does before ``worker_init`` (its app names
``pgboss://``), while the transport module itself loads only when its first connection is made.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Collection
from typing import Any

from transport import envelope
from transport.exceptions import MalformedJob
from transport.worker_state import WORKER

logger = logging.getLogger(__name__)


def _active_request_ids() -> Collection[str]:
    """Ids of the tasks this Celery worker process is running."""
    from celery.worker import state

    requests = tuple(state.active_requests)  # one C-level copy: the heartbeat thread asks too
    return frozenset(str(request.id) for request in requests)


def _backend_records_ends(app: Any) -> bool:
    from transport.backend import PgBossBackend

    try:
        return isinstance(app.backend, PgBossBackend)
    except Exception:  # an app whose backend cannot be built: nothing will settle for us
        logger.warning("could not tell the result backend; acks settle jobs", exc_info=True)
        return False


def _time_limits(app: Any, name: str | None) -> tuple[float | None, float | None]:
    """``(hard, soft)`` time limits of the app's task ``name`` (its own, else the app's
    ``task_time_limit``/``task_soft_time_limit``)."""
    if name is None:
        return None, None
    task = app.tasks.get(name)
    if task is None:
        return app.conf.task_time_limit, app.conf.task_soft_time_limit
    return task.time_limit, task.soft_time_limit


def on_worker_init(sender: Any = None, **_: Any) -> None:
    """What the worker (``sender``) tells its transports."""
    from celery.worker.state import maybe_shutdown

    app = sender.app
    WORKER.running_tasks = _active_request_ids
    WORKER.shutdown_check = maybe_shutdown
    WORKER.backend_records_ends = _backend_records_ends(app)
    WORKER.time_limits = functools.partial(_time_limits, app)


def on_celery_refusal(sender: Any = None, message: Any = None, exc: Any = None, **kwargs: Any) -> None:
    """Celery refused a delivered job (``task_rejected``: not a task message, or an invalid one;
    ``task_unknown``: no such task here) and rejected its message, which only lets go of it, so
    pg-boss would run it again after its heartbeat timeout and meet the same refusal: fail it now,
    for good, saying why."""
    from transport.channel import Channel  # loaded with the transport, not with this package

    channel = getattr(message, "channel", None)
    info = getattr(message, "delivery_info", None) or {}
    attempt, queue = info.get(envelope.ATTEMPT_HEADER), info.get("routing_key")
    if not isinstance(channel, Channel) or not isinstance(attempt, int) or not queue:
        return  # not a pg-boss job (a transient queue's message, another transport)
    if "name" in kwargs:
        reason = MalformedJob(f"no task named {kwargs['name']!r} is registered in this worker")
    elif exc is None:
        reason = MalformedJob("not a Celery task message (no task header); Celery cannot run it")
    else:
        reason = MalformedJob(f"Celery refused it ({type(exc).__name__}: {exc})")
    job_id = str(message.delivery_tag).partition("/")[0]
    try:
        channel.poison(queue, job_id, attempt, reason)
    except Exception as error:  # the job comes back after its heartbeat timeout and is refused again
        logger.warning("could not fail refused job %s: %r", job_id, error)


def connect() -> None:
    """Connect the hooks to Celery's signals (nothing without Celery)."""
    try:
        from celery import signals
    except ImportError:  # plain Kombu
        return
    signals.worker_init.connect(on_worker_init, weak=False, dispatch_uid="pgboss-worker-init")
    signals.task_rejected.connect(on_celery_refusal, weak=False, dispatch_uid="pgboss-refused")
    signals.task_unknown.connect(on_celery_refusal, weak=False, dispatch_uid="pgboss-unknown")


connect()
