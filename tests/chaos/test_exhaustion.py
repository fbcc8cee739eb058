"""Too few connections: four prefork workers (``-c 4``) share a role that may hold only
``ZEKE_EXHAUSTION_LIMIT`` (default 40) connections, so the server refuses some of theirs ("too many
connections for role", SQLSTATE 53300, as "too many clients already" is), and work 1000 jobs on a
queue with no retries. A refused connection must never fail a job: every job ends ``completed`` in
its first attempt. The role and its database are the test's own (dropped afterwards); the server's
configuration is not touched.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.acceptance.broker_workers import BrokerEnv
from tests.chaos.chaos import INCLUDE, jobs_of
from tests.dbutil import admin_execute, with_database
from transport.db import Database
from transport.manager import JobManager

JOBS = 1000
LIMIT = int(os.environ.get("ZEKE_EXHAUSTION_LIMIT", "40"))


@pytest.fixture
def limited(admin_url: str, tmp_path: Path) -> Iterator[tuple[BrokerEnv, str]]:
    """A role limited to LIMIT connections owning a database of its own: (env, the role's URL)."""
    role = f"zeke_exh_{uuid.uuid4().hex[:8]}"
    name = f"zeke_exh_{uuid.uuid4().hex[:8]}"
    admin_execute(admin_url, f'CREATE ROLE "{role}" LOGIN CONNECTION LIMIT {LIMIT}')
    admin_execute(admin_url, f'CREATE DATABASE "{name}" OWNER "{role}"')
    admin = with_database(admin_url, name)
    role_url = admin.replace("://postgres@", f"://{role}@", 1)
    assert role_url != admin, "the admin URL must name the postgres user"
    database = Database(admin, max_connections=4, application_name="zeke-tests")  # a superuser: no limit
    env = BrokerEnv(admin, database, "pgboss", tmp_path)
    try:
        owner = Database(role_url, max_connections=2)
        JobManager(owner, "pgboss").list_queues()  # installs pg-boss, owned by the role
        owner.close()
        yield env, role_url
    finally:
        for worker in env.workers:
            worker.stop(timeout=20)
        database.close()
        admin_execute(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin_execute(admin_url, f'DROP ROLE IF EXISTS "{role}"')


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_refused_connections_never_fail_a_job(limited: tuple[BrokerEnv, str]) -> None:
    env, role_url = limited
    queue = f"exhaust-{uuid.uuid4().hex[:6]}"
    manager = env.manager
    manager.create_queue(queue, retry_limit=0, heartbeat_seconds=30)
    extra = {
        "ZEKE_BROKER_TEST_URL": "pgboss://" + role_url.split("://", 1)[1],
        "ZEKE_BROKER_TEST_SCHEMA": "pgboss",
        # A pool child that cannot get a connection hands its job back after 20 s (not 300), so a
        # child that has one runs it: the run stays short.
        "ZEKE_BROKER_TEST_RESULT_RETRY": "20",
    }
    workers = [
        env.worker(f"exh{n}", [queue], concurrency=4, args=INCLUDE, extra_env=extra).start(wait=False)
        for n in range(4)
    ]
    for worker in workers:
        worker.wait_ready(timeout=120)
    started = time.monotonic()
    envelope = {"__celery": {"v": 1, "task": "chaos.nap", "args": [0.05]}}
    ids = manager.send_many(queue, [{"data": envelope} for _ in range(JOBS)])
    peak = 0

    def finished() -> bool:
        nonlocal peak
        with env.database.cursor() as cur:
            cur.execute("SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database()")
            peak = max(peak, cur.fetchone()["n"])
        jobs = jobs_of(env, ids)
        return all(jobs[i]["state"] in ("completed", "failed", "cancelled") for i in ids)

    deadline = time.monotonic() + 600
    while not finished() and time.monotonic() < deadline:
        time.sleep(1.0)
    elapsed = time.monotonic() - started
    jobs = jobs_of(env, ids)
    states = Counter(jobs[i]["state"] for i in ids)
    failed = [jobs[i] for i in ids if jobs[i]["state"] != "completed"]
    rerun = sum(jobs[i]["retry_count"] > 0 for i in ids)
    logs = "".join(w.log() for w in workers)
    refusals = len(re.findall(r"too many (?:connections for role|clients)", logs))
    print(
        f"\nexhaustion: {JOBS} jobs, role limit {LIMIT} connections, 4 workers -c 4: "
        f"states {dict(states)}, {rerun} with retry_count > 0, "
        f"{elapsed:.1f} s; peak sessions {peak}; log lines naming a refusal {refusals}; "
        f"outage warnings {logs.count('database unavailable')}; "
        f"handed back {logs.count('handed back to its queue')}; "
        f"consumer restarts {logs.count('Connection to broker lost')}; "
        f"'Frequent restarts' {logs.count('Frequent restarts')}"
    )
    if failed:
        print(workers[0].log()[-4000:])
    assert not failed, [(j["state"], j["output"]) for j in failed[:3]]
    assert all(w.process is not None and w.process.poll() is None for w in workers)
