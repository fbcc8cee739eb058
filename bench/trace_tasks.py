"""``bench.tasks`` with the pickup path timed: the worker app of ``python -m bench.trace``.

The worker's main process stamps when the LISTEN socket became readable, when the fetch started and
returned (``pgboss://`` only), and when Celery received the task; one ping runs at a time, so the
stamps before a ``task_received`` belong to that ping. They go to the Redis side channel as JSON.
"""

from __future__ import annotations

import json
import time
from typing import Any

from celery import signals

from bench.tasks import app, side  # noqa: F401  (the worker's app and tasks)
from transport.claims import Claims
from transport.poller import Poller

_stamps: dict[str, float] = {}


def _timed(name: str, method: Any) -> Any:
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        _stamps.setdefault(name + "0", time.time())
        try:
            return method(self, *args, **kwargs)
        finally:
            _stamps.setdefault(name + "1", time.time())

    return wrapper


Poller.on_readable = _timed("readable", Poller.on_readable)  # type: ignore[method-assign]
Claims.fetch = _timed("fetch", Claims.fetch)  # type: ignore[method-assign]


@signals.task_received.connect
def _received(request: Any = None, **_: Any) -> None:
    if request is None or request.name != "bench.ping":
        return
    run, sent = request.args
    stamps = {"sent": sent, **_stamps, "received": time.time()}
    _stamps.clear()
    side().rpush(f"{run}:trace", json.dumps(stamps))
