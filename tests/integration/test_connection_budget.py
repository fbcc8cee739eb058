"""The connection budget of a worker: an idle ``celery -A zeke worker -c N`` (pg-boss broker and result
backend) holds at most 3 + N connections to PostgreSQL, and one LISTEN connection.

The main process holds the LISTEN connection and at most two idle pooled ones (broker, result
backend, heartbeats and supervisor share one pool: :mod:`transport.hub`), and each pool child that
has run a task holds one. Counted from ``pg_stat_activity`` of a database of the test's own, so no
other process is counted.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import psycopg2.extensions
import pytest

from tests.dbutil import own_database
from transport.db import Database, dsn_from_url
from transport.manager import JobManager

ROOT = Path(__file__).resolve().parents[2]
#: This test's own connections, left out of the counts.
OURS = "zeke-budget-test"


def budget(concurrency: int) -> int:
    return 3 + concurrency


@pytest.fixture(scope="module")
def budget_url(admin_url: str) -> Iterator[str]:
    with own_database(admin_url, "budget") as url:
        yield url


def sessions(url: str) -> list[tuple[str, str]]:
    """(application_name, last query) of every session on the database but ours."""
    dsn = dsn_from_url(url)
    dbname = psycopg2.extensions.parse_dsn(dsn)["dbname"]
    conn = psycopg2.connect(dsn, dbname="postgres", application_name=OURS)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT application_name, query FROM pg_stat_activity "
                "WHERE datname = %s AND application_name <> %s AND backend_type = 'client backend'",
                (dbname, OURS),
            )
            return list(cur.fetchall())
    finally:
        conn.close()


def is_listen(query: str) -> bool:
    return any(line.strip().upper().startswith("LISTEN ") for line in query.splitlines())


def most_sessions(url: str, seconds: float) -> tuple[int, int]:
    """The most sessions (and LISTEN sessions) seen while sampling for ``seconds``."""
    most = listens = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        rows = sessions(url)
        most = max(most, len(rows))
        listens = max(listens, sum(1 for _, query in rows if is_listen(query)))
        time.sleep(0.1)
    return most, listens


def start_worker(url: str, concurrency: int, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CELERY_", "ZEKE_"))}
    env |= {
        "DATABASE_PRIMARY_URL": url,
        "ZEKE_PGBOSS_SCHEMA": "pgboss",
        "ZEKE_TASK_MODULES": "tests.app.sample_tasks",
        "PYTHONPATH": str(ROOT),
        "PYTHONUNBUFFERED": "1",
    }
    cmd = [sys.executable, "-m", "celery", "-A", "zeke", "worker", "-l", "info", "-P", "prefork"]
    cmd += ["-c", str(concurrency), "-n", f"budget{concurrency}@%h"]
    with open(log, "wb") as out:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def wait_for(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout}s")
        time.sleep(0.1)


@pytest.mark.parametrize("concurrency", [1, 2, 4])
def test_an_idle_worker_stays_within_its_budget(budget_url: str, tmp_path: Path, concurrency: int) -> None:
    log = tmp_path / "worker.log"
    worker = start_worker(budget_url, concurrency, log)
    manager = JobManager(Database(budget_url, max_connections=2, application_name=OURS), "pgboss")
    try:
        wait_for(lambda: " ready." in log.read_text(errors="replace"), 60, "worker ready")
        manager.create_queue("t-echo")  # the worker declared it already; this waits for that
        idle, listens = most_sessions(budget_url, 3.0)
        assert idle <= budget(concurrency), (idle, sessions(budget_url))
        assert listens == 1, sessions(budget_url)

        # Work for every pool child, results written by the pg-boss backend; then idle again.
        jobs = [manager.send("t-echo", {"message": "m", "count": 1}) for _ in range(4 * concurrency)]
        wait_for(
            lambda: all((manager.get_job(j) or {}).get("state") == "completed" for j in jobs),
            60,
            "every job completed",
        )
        manager.db.close()
        after, listens = most_sessions(budget_url, 3.0)
        assert after <= budget(concurrency), (after, sessions(budget_url))
        assert listens == 1, sessions(budget_url)
    finally:
        manager.db.close()
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
