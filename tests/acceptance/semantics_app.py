"""A plain Celery app, as an existing Celery codebase has it, pointed at ``pgboss://``.

The Celery-semantics acceptance tests (tests/acceptance/transport/test_celery_options.py) run it in real
``celery worker`` processes and send to it from the test process. Broker and result backend are the
test database (``ZEKE_SEMANTICS_URL``) in the pg-boss schema ``ZEKE_SEMANTICS_SCHEMA``;
``ZEKE_SEMANTICS_POLICY`` sets the transport's ``retry_policy`` when given (else its default).
Every run records a row in ``<schema>_effects.effect`` (key, value, the attempt's retries) so tests
count runs and see what Celery's request said.
"""

from __future__ import annotations

import os
import time
from typing import Any

import psycopg2
from celery import Celery
from celery.exceptions import Reject

import transport  # noqa: F401  (registers pgboss://)
from transport.db import dsn_from_url

URL = os.environ.get("ZEKE_SEMANTICS_URL", "pgboss://postgres@127.0.0.1:5432/zeke_test")
SCHEMA = os.environ.get("ZEKE_SEMANTICS_SCHEMA", "pgboss")
POLICY = os.environ.get("ZEKE_SEMANTICS_POLICY")
EFFECTS = f'"{SCHEMA}_effects".effect'

app = Celery("semantics_app")
app.conf.update(
    broker_url=URL,
    result_backend=URL,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    broker_transport_options={
        "schema": SCHEMA,
        "polling_interval": 1.0,
        "supervise_interval": 1.0,
        "monitor_interval": 1.0,
        "heartbeat_seconds": 10,
        **({"retry_policy": POLICY} if POLICY else {}),
    },
    result_backend_transport_options={"schema": SCHEMA},
)


def record(key: str, value: Any = None, retries: Any = None) -> None:
    conn = psycopg2.connect(dsn_from_url(URL))
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                f"INSERT INTO {EFFECTS} (key, value, retries) VALUES (%s, %s, %s)",
                (key, None if value is None else str(value), retries),
            )
    finally:
        conn.close()


def runs(key: str) -> int:
    conn = psycopg2.connect(dsn_from_url(URL))
    try:
        with conn, conn.cursor() as cur:
            cur.execute(f"SELECT count(*) FROM {EFFECTS} WHERE key = %s", (key,))
            return int(cur.fetchone()[0])
    finally:
        conn.close()


@app.task(name="sem.boom", bind=True)
def boom(self: Any, key: str) -> None:
    """Sets no retry option: follows its queue (one the transport creates: the retry_policy's)."""
    record(key, "boom", self.request.retries)
    raise ValueError(key)


@app.task(name="sem.auto", bind=True, autoretry_for=(KeyError,), max_retries=2, default_retry_delay=0)
def auto(self: Any, key: str) -> None:
    record(key, "auto", self.request.retries)
    raise KeyError(key)


@app.task(name="sem.retry_twice", bind=True)
def retry_twice(self: Any, key: str) -> None:
    """``self.retry(max_retries=2)`` on every run: three runs, then the exception."""
    record(key, "retry", self.request.retries)
    raise self.retry(exc=ValueError(key), countdown=0, max_retries=2)


@app.task(name="sem.retry_then_ok", bind=True, max_retries=3)
def retry_then_ok(self: Any, key: str, countdown: float) -> int:
    record(key, "run", self.request.retries)
    if self.request.retries == 0:
        raise self.retry(exc=ValueError(f"why {key}"), countdown=countdown)
    return self.request.retries


@app.task(name="sem.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="sem.nul", bind=True)
def nul(self: Any, key: str) -> str:
    record(key, "nul", self.request.retries)
    return "a\x00b"


@app.task(name="sem.reject", bind=True)
def reject(self: Any, key: str, requeue: bool) -> int:
    """Rejects its first run (requeued or not); a requeued job then succeeds."""
    record(key, "reject", self.request.retries)
    if runs(key) == 1:
        raise Reject(f"rejected {key}", requeue=requeue)
    return self.request.retries


@app.task(name="sem.sleep", bind=True)
def sleep(self: Any, key: str, seconds: float) -> str:
    """Records the start and the end of each run: overlapping runs show."""
    record(key, "start", self.request.retries)
    time.sleep(seconds)
    record(key, "end", self.request.retries)
    return key


@app.task(name="sem.tracked_sleep", track_started=True)
def tracked_sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@app.task(name="sem.ignored", ignore_result=True)
def ignored(value: Any) -> Any:
    return value


@app.task(name="sem.eta", bind=True)
def eta(self: Any) -> str | None:
    value = self.request.eta
    return value.isoformat() if hasattr(value, "isoformat") else value


@app.task(name="sem.options", pgboss={"singleton_key": "from-the-task", "retry_limit": 7})
def options_task(value: Any = None) -> Any:
    return value


@app.task(name="sem.exclusive", bind=True)
def exclusive(self: Any, key: str, seconds: float) -> str:
    """Holds an advisory lock named after ``key`` while it runs: an attempt that finds it taken
    records "overlap" (another attempt of the same job still runs)."""
    conn = psycopg2.connect(dsn_from_url(URL))
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (key,))
            record(key, "start" if cur.fetchone()[0] else "overlap", self.request.retries)
        time.sleep(seconds)
        record(key, "end", self.request.retries)
        return key
    finally:
        conn.close()
