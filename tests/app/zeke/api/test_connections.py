"""The API's connection budget: a real ``zeke api`` process holds one LISTEN connection and a few
pooled ones, however many SSE streams are open (the streams share the process's LISTEN connection
through its hub). Counted from ``pg_stat_activity`` of a database of the test's own."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.dbutil import own_database
from tests.pgstat import OURS, most_sessions, sessions, wait_for
from transport.db import KEEP_IDLE, SURPLUS_SECONDS, Database
from transport.manager import JobManager

ROOT = Path(__file__).resolve().parents[4]
KEY = "budget-key"
STREAMS = 20
#: The LISTEN connection and the pool's idle connections (transport.db.KEEP_IDLE).
API_BUDGET = 1 + KEEP_IDLE


@pytest.fixture
def api(admin_url: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A ``zeke api`` process on a database of its own: (its URL, the database URL)."""
    with own_database(admin_url, "apibudget") as url:
        manager = JobManager(Database(url, max_connections=2, application_name=OURS), "pgboss")
        manager.create_queue("t-echo")  # installs the pg-boss schema too
        manager.db.close()
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CELERY_", "ZEKE_"))}
        env |= {
            "DATABASE_PRIMARY_URL": url,
            "ZEKE_PGBOSS_SCHEMA": "pgboss",
            "ZEKE_TASK_MODULES": "tests.app.sample_tasks",
            "ZEKE_API_KEYS": KEY,
            "ZEKE_SSE_MAX_SECONDS": "120",
            "PYTHONPATH": str(ROOT),
        }
        cmd = [sys.executable, "-m", "zeke.cli", "api", "--port", str(port), "--log-level", "warning"]
        with open(tmp_path / "api.log", "wb") as log:
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_for(lambda: _answers(base), 30, "the API answers")
            yield base, url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _answers(base: str) -> bool:
    try:
        return httpx.get(base + "/healthz", timeout=2).status_code < 500
    except httpx.HTTPError:
        return False


def test_sse_streams_share_one_listen_connection(api: tuple[str, str]) -> None:
    base, url = api
    headers = {"Authorization": f"Bearer {KEY}"}
    idle, listens = most_sessions(url, 1.0)
    assert idle <= API_BUDGET and listens == 1, sessions(url)

    jobs = []
    for i in range(STREAMS):
        reply = httpx.post(
            base + "/api/jobs", json={"taskId": "t-echo", "payload": {"message": str(i)}}, headers=headers
        )
        assert reply.status_code == 201, reply.text
        jobs.append(reply.json()["id"])
    opened = threading.Semaphore(0)
    stop = threading.Event()

    def follow(job_id: str) -> None:
        with httpx.stream("GET", f"{base}/api/jobs/stream/{job_id}", headers=headers, timeout=60) as reply:
            for line in reply.iter_lines():
                if line.startswith("event: status"):
                    opened.release()
                if stop.is_set():
                    return

    readers = [threading.Thread(target=follow, args=(job_id,), daemon=True) for job_id in jobs]
    for reader in readers:
        reader.start()
    try:
        for _ in jobs:
            assert opened.acquire(timeout=30), "every stream sent its first status"
        time.sleep(SURPLUS_SECONDS + 1.0)  # the first reads' burst of connections has closed
        streaming, listens = most_sessions(url, 2.0)
        assert streaming <= API_BUDGET, (streaming, sessions(url))
        assert listens == 1, sessions(url)
    finally:
        stop.set()
