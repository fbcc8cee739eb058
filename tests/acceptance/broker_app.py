"""The Celery app the broker acceptance tests run in real ``celery worker`` processes.

Broker and result backend are ``pgboss://`` on the test database (``ZEKE_BROKER_TEST_URL``), in the
pg-boss schema ``ZEKE_BROKER_TEST_SCHEMA``. Supervisor intervals are short so that a worker killed
with SIGKILL is noticed within seconds. Tasks record their side effects in the table
``<schema>_effects.effect`` (one row per run) so tests can count how often something ran.
"""

from __future__ import annotations

import os
import time
from typing import Any

import psycopg2
from celery import Celery

import transport  # noqa: F401  (registers pgboss://)
from transport.db import dsn_from_url

URL = os.environ.get("ZEKE_BROKER_TEST_URL", "pgboss://postgres@127.0.0.1:5432/zeke_test")
SCHEMA = os.environ.get("ZEKE_BROKER_TEST_SCHEMA", "pgboss")
#: "pgboss" (the result backend settles jobs), "ack" (no backend: settle_on_ack) or "auto" (no
#: backend, settle_on_ack left to the transport's default).
SETTLE = os.environ.get("ZEKE_BROKER_TEST_SETTLE", "pgboss")
EFFECTS = f'"{SCHEMA}_effects".effect'

app = Celery("broker_app")
app.conf.update(
    broker_url=URL,
    result_backend=URL if SETTLE == "pgboss" else None,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    task_acks_late=True,
    # With settle_on_ack a failure must reject (-> fail the job), not ack (-> complete it).
    task_acks_on_failure=SETTLE != "ack",
    worker_prefetch_multiplier=4,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    broker_transport_options={
        "schema": SCHEMA,
        "application_name": os.environ.get("ZEKE_BROKER_TEST_APPNAME", "zeke-broker"),
        **({} if SETTLE == "auto" else {"settle_on_ack": SETTLE == "ack"}),
        "polling_interval": 2.0,
        "supervise_interval": 1.0,
        "monitor_interval": 1.0,
        "heartbeat_seconds": 10,
        # Queues the workers create retry as pg-boss does (3 with backoff): these tests are about
        # pg-boss redelivering lost attempts, not Celery's "a raise fails once" (the default).
        "retry_policy": "pgboss",
        "queue_options": {
            # Fails twice more after the first attempt, 1 s apart with pg-boss's backoff.
            "fragile": {"retry_limit": 2, "retry_delay": 1, "retry_backoff": True},
            "ack-mode": {"retry_limit": 1, "retry_delay": 1, "retry_backoff": False},
        },
    },
    result_backend_transport_options={
        "schema": SCHEMA,
        "result_retry_seconds": float(os.environ.get("ZEKE_BROKER_TEST_RESULT_RETRY", "300")),
        # "0": pool children write their results themselves (the path chord parts, big results and
        # capped queues always take) instead of handing them to the main process.
        "result_relay": os.environ.get("ZEKE_BROKER_TEST_RESULT_RELAY", "1") == "1",
    },
    task_routes={
        "broker_app.boom": {"queue": "fragile"},
        "broker_app.routed_story": {"queue": "story-routed"},
    },
)


def record(key: str, value: Any = None) -> None:
    """One row per run: the side effect tests count."""
    conn = psycopg2.connect(dsn_from_url(URL))
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                f"INSERT INTO {EFFECTS} (key, value) VALUES (%s, %s)",
                (key, None if value is None else str(value)),
            )
    finally:
        conn.close()


@app.task(name="broker_app.add")
def add(x: int, y: int) -> int:
    return x + y


@app.task(name="broker_app.boom")
def boom(message: str) -> None:
    record("boom", message)
    raise ValueError(message)


@app.task(name="broker_app.flaky", bind=True, max_retries=5)
def flaky(self: Any, key: str, fail_times: int, countdown: float) -> int:
    """Task.retry(countdown=...) ``fail_times`` times (same task id, same job row), then succeeds."""
    record(key, self.request.retries)
    if self.request.retries < fail_times:
        raise self.retry(countdown=countdown)
    return self.request.retries


@app.task(name="broker_app.slow_record")
def slow_record(key: str, seconds: float) -> str:
    """Records only once it has slept: a run killed midway leaves no row."""
    time.sleep(seconds)
    record(key)
    return key


@app.task(name="broker_app.stamp")
def stamp(key: str) -> None:
    """Records when it ran (database clock), for ETA and ordering checks."""
    record(key)


@app.task(name="analyze-story")
def analyze_story(storyId: str) -> dict:  # noqa: N803  (the Node payload's own key)
    """Runs the jobs Node sends to the pg-boss queue named like it."""
    record("analyze-story", storyId)
    return {"analyzed": storyId}


@app.task(name="broker_app.routed_story")
def routed_story(story_id: str) -> str:
    """Runs the jobs Node sends to queue ``story-routed`` (found through task_routes)."""
    record("story-routed", story_id)
    return story_id
