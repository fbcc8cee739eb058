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

import pytest

from tests.dbutil import own_database
from tests.pgstat import OURS, most_sessions, sessions, wait_for
from transport.db import SURPLUS_SECONDS, Database
from transport.hub import hub_for
from transport.manager import JobManager

ROOT = Path(__file__).resolve().parents[3]
#: Seconds after which a worker counts as idle: a burst's surplus connections have closed.
SETTLE = SURPLUS_SECONDS + 1.0


def budget(concurrency: int) -> int:
    return 3 + concurrency


@pytest.fixture(scope="module")
def budget_url(admin_url: str) -> Iterator[str]:
    with own_database(admin_url, "budget") as url:
        yield url


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


@pytest.mark.parametrize("concurrency", [1, 2, 4])
def test_an_idle_worker_stays_within_its_budget(budget_url: str, tmp_path: Path, concurrency: int) -> None:
    log = tmp_path / "worker.log"
    worker = start_worker(budget_url, concurrency, log)
    manager = JobManager(Database(budget_url, max_connections=2, application_name=OURS), "pgboss")
    try:
        wait_for(lambda: " ready." in log.read_text(errors="replace"), 60, "worker ready")
        manager.create_queue("t-echo")  # the worker declared it already; this waits for that
        time.sleep(SETTLE)  # idle: what start-up opened beyond the pool's keep has closed
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
        time.sleep(SETTLE)  # idle again
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


def test_a_forked_child_never_uses_its_parents_connections(budget_url: str) -> None:
    """A child forked while the parent holds pooled and LISTEN connections opens its own; the
    parent's sessions survive the child's use and exit (the prefork pool forks this way)."""
    hub = hub_for(budget_url, application_name=OURS + "-fork")
    heard: list[str] = []
    listening = hub.listener.subscribe(["zeke_fork_test"], lambda channel, payload: heard.append(payload))
    listening.wait(10)

    def backend_pid() -> int:
        with hub.db.cursor() as cur:
            cur.execute("SELECT pg_backend_pid() AS pid")
            return int(cur.fetchone()["pid"])

    parent_pid = backend_pid()
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the child: use the hub, report its session, leave without cleanup
        try:
            child_pid = backend_pid()
            theirs = hub.listener.subscribe(["zeke_fork_test"], lambda channel, payload: None)
            theirs.wait(10)
            os.write(write, f"{child_pid}\n".encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child_pid = int(pipe.read().strip() or 0)
    os.waitpid(child, 0)
    try:
        assert child_pid and child_pid != parent_pid
        assert backend_pid() == parent_pid  # the parent's pooled session is alive and still its own
        with hub.db.cursor() as cur:
            cur.execute("SELECT pg_notify('zeke_fork_test', 'after the fork')")
        wait_for(lambda: heard == ["after the fork"], 10, "the parent's LISTEN connection still hears")
        assert listening.listening
    finally:
        listening.close()
        hub.db.close()
