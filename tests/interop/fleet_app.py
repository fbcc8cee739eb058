"""The Celery app real ``celery worker``/``beat`` processes run beside Node pg-boss in the group and
mixed-fleet tests (``celery -A tests.interop.fleet_app worker``).

Broker and result backend are ``pgboss://`` on ``ZEKE_FLEET_URL`` (a scratch database), schema
``pgboss``. Every run of a task is one row of ``fleet_effects.run`` (queue, job id, group, attempt,
start and end on the database clock, worker pid), so tests can check what ran, how often, and
whether two runs overlapped.

Queues (Node sends to them too; a Node job's data are the task's keyword arguments):

* ``fleet-plain``: records and returns its data.
* ``fleet-single``: as ``fleet-plain``, for throttled and debounced singleton jobs.
* ``fleet-grouped``: holds its slot for ``hold`` seconds; ``group_concurrency`` 1 per job group.
* ``fleet-flaky``: fails its first ``fail`` attempts (pg-boss retries: retry_limit 3, 1 s apart).
* ``fleet-doomed``: always fails; retry_limit 1, then its job goes to the dead letter queue
  ``fleet-dead`` (which nothing consumes).
* ``fleet-cron``: what the cron schedule (``pgboss_schedules``, beat and Node) sends.
* ``fleet-node``: worked by Node (jobs Python sends); no task here.
"""

from __future__ import annotations

import os
import time
from typing import Any

import psycopg2
from celery import Celery

import transport  # noqa: F401  (registers pgboss://)
from transport.db import dsn_from_url

URL = os.environ.get("ZEKE_FLEET_URL", "postgresql://postgres@127.0.0.1:5432/zeke_fleet")
BROKER = "pgboss://" + URL.split("://", 1)[1]
SCHEMA = "pgboss"
EFFECTS = "fleet_effects.run"
#: The cron schedule beat installs (Node's supervisor runs the same schedule rows).
CRON = os.environ.get("ZEKE_FLEET_CRON", "* * * * *")

QUEUE_OPTIONS: dict[str, dict[str, Any]] = {
    "fleet-plain": {"retry_limit": 0},
    "fleet-single": {"retry_limit": 0},
    "fleet-grouped": {"retry_limit": 0},
    "fleet-flaky": {"retry_limit": 3, "retry_delay": 1, "retry_backoff": False},
    "fleet-dead": {"retry_limit": 0},
    "fleet-doomed": {"retry_limit": 1, "retry_delay": 1, "retry_backoff": False, "dead_letter": "fleet-dead"},
    "fleet-cron": {"retry_limit": 0},
    "fleet-node": {"retry_limit": 0},
}

app = Celery("fleet_app")
app.conf.update(
    broker_url=BROKER,
    result_backend=BROKER,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    task_acks_late=True,
    task_acks_on_failure=True,
    worker_prefetch_multiplier=2,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    broker_transport_options={
        "schema": SCHEMA,
        "polling_interval": 2.0,
        "supervise": os.environ.get("ZEKE_FLEET_SUPERVISE", "1") == "1",
        "supervise_interval": 5.0,
        "monitor_interval": 5.0,
        "queue_options": QUEUE_OPTIONS,
        # ZEKE_FLEET_GROUPS=0 runs the workers without it (to see the test fail).
        "group_concurrency": {"fleet-grouped": 1} if os.environ.get("ZEKE_FLEET_GROUPS", "1") == "1" else {},
    },
    result_backend_transport_options={"schema": SCHEMA},
    pgboss_schedules=[{"name": "fleet-cron", "cron": CRON, "data": {"from": "schedule"}}],
    pgboss_cron_monitor_interval=float(os.environ.get("ZEKE_FLEET_CRON_MONITOR", "5")),
    pgboss_cron_worker_interval=1.0,
    beat_scheduler="transport.beat:PgBossScheduler",
    beat_max_loop_interval=1.0,
)


def record(queue: str, job_id: str, group: str | None, attempt: int, started: float) -> None:
    """One row per run, its start and end on the database clock (``started``: seconds ago)."""
    conn = psycopg2.connect(dsn_from_url(URL))
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                f"INSERT INTO {EFFECTS} (queue, job_id, grp, attempt, started, ended, pid) "
                "VALUES (%s, %s, %s, %s, clock_timestamp() - make_interval(secs => %s), "
                "clock_timestamp(), %s)",
                (queue, job_id, group, attempt, time.monotonic() - started, os.getpid()),
            )
    finally:
        conn.close()


def _run(task: Any, queue: str, group: str | None = None, hold: float = 0.0) -> None:
    started = time.monotonic()
    if hold:
        time.sleep(hold)
    record(queue, str(task.request.id), group, int(task.request.retries or 0), started)


@app.task(name="fleet-plain", bind=True)
def plain(self: Any, **data: Any) -> dict[str, Any]:
    _run(self, "fleet-plain")
    return {"echo": data}


@app.task(name="fleet-single", bind=True)
def single(self: Any, **data: Any) -> dict[str, Any]:
    _run(self, "fleet-single")
    return {"echo": data}


@app.task(name="fleet-grouped", bind=True)
def grouped(self: Any, group: str, hold: float = 0.3, **data: Any) -> str:
    _run(self, "fleet-grouped", group, hold)
    return group


@app.task(name="fleet-flaky", bind=True)
def flaky(self: Any, fail: int = 1, **data: Any) -> int:
    _run(self, "fleet-flaky")
    if (self.request.retries or 0) < fail:
        raise RuntimeError(f"attempt {self.request.retries} fails on purpose")
    return int(self.request.retries or 0)


@app.task(name="fleet-doomed", bind=True)
def doomed(self: Any, **data: Any) -> None:
    _run(self, "fleet-doomed")
    raise RuntimeError("never succeeds")


@app.task(name="fleet-cron", bind=True)
def cron_job(self: Any, **data: Any) -> None:
    _run(self, "fleet-cron")


def create_effects(url: str) -> None:
    conn = psycopg2.connect(dsn_from_url(url))
    try:
        with conn, conn.cursor() as cur:
            cur.execute("CREATE SCHEMA IF NOT EXISTS fleet_effects")
            cur.execute(
                f"CREATE TABLE IF NOT EXISTS {EFFECTS} (queue text, job_id text, grp text, attempt int, "
                "started timestamptz, ended timestamptz, pid int)"
            )
    finally:
        conn.close()
