"""The Celery app the benchmark workers run: broker from ``BENCH_BROKER_URL``, tasks report to Redis.

``BENCH_TRANSPORT_OPTIONS`` (JSON) and ``BENCH_RESULT_BACKEND`` configure the broker under test,
``BENCH_PREFETCH`` the worker's prefetch multiplier (default 4; larger for ceiling experiments);
every task writes to the Redis side channel ``BENCH_SIDE_URL`` so all brokers pay the same for it.
"""

from __future__ import annotations

import json
import os
import time

import redis
from celery import Celery

import transport  # noqa: F401  (registers pgboss://)

app = Celery("bench")
app.conf.update(
    broker_url=os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/13"),
    result_backend=os.environ.get("BENCH_RESULT_BACKEND") or None,
    broker_transport_options=json.loads(os.environ.get("BENCH_TRANSPORT_OPTIONS") or "{}"),
    result_backend_transport_options=json.loads(os.environ.get("BENCH_TRANSPORT_OPTIONS") or "{}"),
    task_serializer="json",
    accept_content=["json"],
    task_acks_late=True,
    task_ignore_result=not os.environ.get("BENCH_RESULT_BACKEND"),
    worker_prefetch_multiplier=int(os.environ.get("BENCH_PREFETCH", "4")),
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)

_side: redis.Redis | None = None


def side() -> redis.Redis:
    global _side
    if _side is None:
        _side = redis.Redis.from_url(os.environ.get("BENCH_SIDE_URL", "redis://127.0.0.1:6379/14"))
    return _side


@app.task(name="bench.noop")
def noop(run: str) -> None:
    """Counts itself; the first and the last run stamp the time."""
    now = time.time()
    pipe = side().pipeline(transaction=False)
    pipe.setnx(f"{run}:first", now)
    pipe.incr(f"{run}:count")
    count = pipe.execute()[1]
    total = int(side().get(f"{run}:total") or 0)
    if count >= total:
        side().set(f"{run}:last", time.time())


@app.task(name="bench.ping")
def ping(run: str, sent: float) -> None:
    """Records how long after its publish it started."""
    side().rpush(f"{run}:latency", time.time() - sent)
