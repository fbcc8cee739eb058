"""Events from a Celery worker's own threads (the supervisor's warnings), sent the way the worker
sends its own: only when it was started with task events on (``-E``), under its hostname.

The worker is remembered at ``worker_init``, which fires after the app module (and so this package,
which registers ``pgboss://``) is imported and before the broker connection exists.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import signals

logger = logging.getLogger(__name__)

_worker: Any = None


def _remember_worker(sender: Any = None, **_: Any) -> None:
    global _worker
    _worker = sender


signals.worker_init.connect(_remember_worker, weak=False)


def send(event_type: str, **fields: Any) -> bool:
    """Send one event from this process's worker; False when there is none or it sends no task events."""
    worker = _worker
    if worker is None or not getattr(worker, "task_events", False):
        return False
    try:
        with worker.app.events.default_dispatcher(hostname=worker.hostname) as dispatcher:
            dispatcher.send(event_type, **fields)
        return True
    except Exception as exc:  # an event is a courtesy; the caller has logged what happened
        logger.warning("could not send a %s event: %r", event_type, exc)
        return False
