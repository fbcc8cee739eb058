"""Tasks the chaos tests run, registered on the broker acceptance app (``tests/acceptance/broker_app.py``).

Workers load them with ``celery -A tests.acceptance.broker_app worker -I tests.chaos.chaos_tasks``; a
beat runs ``celery -A tests.chaos.chaos_tasks beat`` (the module re-exports ``app``). Every run
records ``(job id, attempt)`` in ``<schema>_effects.run``, counting repeats of one attempt in
``runs``, so a test can tell a re-run after a crash (another attempt) from a duplicate (the same
attempt twice, or any attempt after the one that completed the job).
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import psycopg2

from tests.acceptance.broker_app import SCHEMA, URL, app
from transport.backend import request_attempt
from transport.db import dsn_from_url

__all__ = ["app", "RUNS", "RUNS_DDL"]

RUNS = f'"{SCHEMA}_effects".run'
RUNS_DDL = (
    "CREATE TABLE IF NOT EXISTS {table} (job_id uuid NOT NULL, attempt int NOT NULL, "
    "runs int NOT NULL DEFAULT 1, pid int, first_at timestamptz NOT NULL DEFAULT clock_timestamp(), "
    "last_at timestamptz NOT NULL DEFAULT clock_timestamp(), PRIMARY KEY (job_id, attempt))"
)

#: The PostgreSQL-restart test's ``celery beat``: ``chaos.work`` every second, to ZEKE_CHAOS_BEAT_QUEUE.
if os.environ.get("ZEKE_CHAOS_BEAT_QUEUE"):
    app.conf.beat_schedule = {
        "chaos-tick": {
            "task": "chaos.work",
            "schedule": 1.0,
            "kwargs": {"n": -1, "sleep": 0.0},
            "options": {"queue": os.environ["ZEKE_CHAOS_BEAT_QUEUE"]},
        }
    }


def record_run(request: Any) -> int | None:
    """Count this run of (job id, attempt); returns the attempt."""
    attempt = request_attempt(request)
    conn = psycopg2.connect(dsn_from_url(URL), application_name="zeke-chaos-task")
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                f"INSERT INTO {RUNS} AS r (job_id, attempt, pid) VALUES (%s, %s, %s) "
                "ON CONFLICT (job_id, attempt) DO UPDATE SET runs = r.runs + 1, last_at = clock_timestamp()",
                (request.id, -1 if attempt is None else attempt, os.getpid()),
            )
    finally:
        conn.close()
    return attempt


@app.task(name="chaos.work", bind=True)
def work(self: Any, n: int, sleep: float) -> dict[str, Any]:
    """Half the sleep, the side effect, the other half: a kill may land before, or after it."""
    time.sleep(sleep / 2)
    attempt = record_run(self.request)
    time.sleep(sleep / 2)
    return {"n": n, "attempt": attempt}


@app.task(name="chaos.poison_child", bind=True)
def poison_child(self: Any) -> None:
    """Kills the pool child running it (the worker's main process survives)."""
    record_run(self.request)
    os.kill(os.getpid(), signal.SIGKILL)


@app.task(name="chaos.poison_worker", bind=True)
def poison_worker(self: Any) -> None:
    """Kills the whole worker: every process of its process group (the test starts each worker in
    a session of its own)."""
    if os.getpgrp() != os.getppid():  # never the test's own process group
        raise RuntimeError("poison_worker must run in a pool child of a worker leading its own group")
    record_run(self.request)
    os.killpg(os.getpgrp(), signal.SIGKILL)


@app.task(name="chaos.nap")
def nap(seconds: float) -> float:
    """Sleeps, and touches no database itself."""
    time.sleep(seconds)
    return seconds
