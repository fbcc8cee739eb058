"""The Celery app of the benchmark workers: zeke's ``celeryconfig`` with the broker under test.

``BENCH_BROKER_URL``, ``BENCH_RESULT_BACKEND`` (empty: results off) and ``BENCH_TRANSPORT_OPTIONS``
(JSON) choose the setup; every other setting is zeke's own (``celeryconfig.py``: acks late,
prefetch 4, JSON), the same for every broker. Tasks report through the Redis side channel
``BENCH_SIDE_URL``, which costs every broker the same.
"""

from __future__ import annotations

import json
import os
import time

import redis
from celery import Celery

import transport  # noqa: F401  (registers pgboss://)
from bench.config import zeke_celeryconfig

app = Celery("bench")
app.config_from_object(zeke_celeryconfig())
app.conf.update(
    broker_url=os.environ.get("BENCH_BROKER_URL", "memory://"),
    result_backend=os.environ.get("BENCH_RESULT_BACKEND") or None,
    broker_transport_options=json.loads(os.environ.get("BENCH_TRANSPORT_OPTIONS") or "{}"),
    result_backend_transport_options=json.loads(os.environ.get("BENCH_TRANSPORT_OPTIONS") or "{}"),
    task_ignore_result=not os.environ.get("BENCH_RESULT_BACKEND"),
    worker_hijack_root_logger=False,
)
if os.environ.get("BENCH_PREFETCH"):
    app.conf.worker_prefetch_multiplier = int(os.environ["BENCH_PREFETCH"])

_side: redis.Redis | None = None
#: run -> tasks in its drain, once this process has passed the run's start gate.
_gates: dict[str, int] = {}


def side() -> redis.Redis:
    global _side
    if _side is None:
        _side = redis.Redis.from_url(os.environ.get("BENCH_SIDE_URL", "redis://127.0.0.1:6379/14"))
    return _side


def _gate(run: str) -> int:
    """A pool child's first task of a drain checks in and waits for the bench's go, so the drain is
    timed with every worker process up and holding work; returns the drain's task count (0: a run
    without a drain, which has no gate)."""
    total = _gates.get(run)
    if total is None:
        total = _gates[run] = int(side().get(f"{run}:total") or 0)
        if total:
            side().sadd(f"{run}:children", os.getpid())
            while not side().exists(f"{run}:go"):
                time.sleep(0.002)
    return total


@app.task(name="bench.noop")
def noop(run: str) -> None:
    """Counts itself; the last one stamps the time."""
    total = _gate(run)
    if side().incr(f"{run}:count") >= total:
        side().set(f"{run}:last", time.time())


@app.task(name="bench.ping")
def ping(run: str, sent: float) -> None:
    """Records how long after its publish it started."""
    side().rpush(f"{run}:latency", time.time() - sent)
