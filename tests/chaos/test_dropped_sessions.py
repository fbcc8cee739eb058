"""Sessions the server ends under an idle process (a restart, ``pg_terminate_backend``, an
``idle_session_timeout``) cost nothing: the next use opens a new connection instead of failing once.

Before pooled and per-thread connections were checked on checkout, a worker's pool child wrote its
task's result on the dead session, the write failed, Celery recorded the task as failed, and
pg-boss ran it again (or failed it for good with no retries left); the API answered 503 to the first
requests after a restart, one per pooled connection.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg2
import psycopg2.extensions

from tests.acceptance.broker_workers import BrokerEnv, wait_for
from tests.app.conftest import app_env
from tests.chaos.chaos import (
    INCLUDE,
    create_queue,
    runs_of,
    tally,
    unique,
)
from tests.chaos.test_pg_restart import API_KEY, Process, free_port, healthy
from transport.backend import REREAD_INTERVAL
from transport.db import dsn_from_url

#: These tests end the pool child's sessions while it writes a result: the child must write its
#: own (no result relay), as it does for chord parts, big results and capped queues.
CHILD_WRITES = {"ZEKE_BROKER_TEST_RESULT_RELAY": "0"}


def terminate(env: BrokerEnv, *application_names: str) -> int:
    with env.database.cursor() as cur:
        cur.execute(
            "SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = ANY(%s)",
            (list(application_names),),
        )
        return cur.fetchone()["n"]


def test_result_write_after_the_session_was_ended_completes_the_same_attempt(
    broker_env: BrokerEnv,
    chaos,
) -> None:
    env = broker_env
    queue = create_queue(env, unique("dropped"), retry_limit=3, retry_delay=1)
    worker = env.worker("dropped", [queue], concurrency=1, args=INCLUDE, extra_env=CHILD_WRITES).start()
    first = chaos.work.apply_async((1, 0.1), queue=queue)
    env.wait_state(first.id, "completed")  # the pool child now has its result session
    second = chaos.work.apply_async((2, 3.0), queue=queue)
    env.wait_state(second.id, "active")
    time.sleep(0.5)
    assert terminate(env, "zeke-broker-child") >= 1  # the pool child's sessions: its result writes
    job = env.wait_state(second.id, "completed", "retry", "failed", timeout=30)
    assert (job["state"], job["retry_count"], job["output"]) == ("completed", 0, {"n": 2, "attempt": 0})
    assert runs_of(env, [second.id])[second.id] == {0: 1}
    assert "OperationalError" not in worker.log()
    worker.stop()


def test_api_is_healthy_at_the_first_request_after_its_sessions_were_ended(
    broker_env: BrokerEnv,
    db_url: str,
    tmp_path: Path,
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    api = Process(
        [sys.executable, "-m", "zeke.cli", "api", "--port", str(port)],
        app_env(db_url, broker_env.schema, ZEKE_API_KEYS=API_KEY),
        tmp_path / "api.log",
    )
    try:
        wait_for(lambda: healthy(url), 60, what="the API")
        auth = {"Authorization": f"Bearer {API_KEY}"}
        # Several threads at once, so the pool holds more than one connection.
        for _ in range(3):
            assert httpx.get(f"{url}/api/tasks", headers=auth, timeout=10).status_code == 200
        assert terminate(broker_env, "zeke", "zeke-client") >= 1
        time.sleep(0.2)
        answers = [httpx.get(f"{url}/healthz", timeout=10) for _ in range(4)]
        assert [a.status_code for a in answers] == [200] * 4, [a.text for a in answers]
        assert httpx.get(f"{url}/api/tasks", headers=auth, timeout=10).status_code == 200
        # The SSE hub's LISTEN connection was ended too: it comes back by itself.
        wait_for(lambda: httpx.get(f"{url}/healthz", timeout=10).json()["listening"], 15, what="LISTEN")
    finally:
        api.stop()


@contextlib.contextmanager
def refused_connections(env: BrokerEnv) -> Iterator[psycopg2.extensions.cursor]:
    """New connections to the test database refused (``ALLOW_CONNECTIONS false``), as while a server
    restarts; sessions already open live on. Yields a cursor on one kept open."""
    name = psycopg2.extensions.parse_dsn(dsn_from_url(env.db_url))["dbname"]
    conn = psycopg2.connect(dsn_from_url(env.db_url), dbname="postgres", application_name="zeke-chaos-admin")
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
            try:
                yield cur
            finally:
                cur.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
    finally:
        conn.close()


def test_waiting_get_outlives_a_database_outage(broker_env: BrokerEnv, chaos) -> None:
    env = broker_env
    queue = create_queue(env, unique("outage"), retry_limit=3, retry_delay=1)
    worker = env.worker("outage", [queue], concurrency=1, args=INCLUDE).start()
    assert chaos.work.apply_async((1, 0.1), queue=queue).get(timeout=30)["n"] == 1
    backend = chaos.app.backend
    result = chaos.work.apply_async((2, 4.0), queue=queue)
    waited: dict[str, Any] = {}

    def wait() -> None:
        try:
            waited["value"] = result.get(timeout=60)
        except BaseException as exc:
            waited["error"] = exc

    getter = threading.Thread(target=wait, daemon=True)
    getter.start()
    env.wait_state(result.id, "active")
    sessions = [c.info.backend_pid for c, _, _ in backend.database._idle if not c.closed]  # noqa: SLF001
    assert sessions, "the waiter re-reads through the process's pool"
    with refused_connections(env) as cur:
        # The waiter's re-read session dies and cannot come back for a while; its LISTEN lives on.
        cur.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", (sessions,))
        time.sleep(0.2)
        time.sleep(2.5 * REREAD_INTERVAL)
        assert "error" not in waited, waited
    getter.join(60)
    # (The task itself may have failed an attempt: its side effect needs a new connection.)
    assert waited.get("value", {}).get("n") == 2, waited
    worker.stop()


def _end_sessions(env: BrokerEnv, cur: psycopg2.extensions.cursor, application_name: str) -> None:
    cur.execute(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE datname = %s AND application_name = %s",
        (psycopg2.extensions.parse_dsn(dsn_from_url(env.db_url))["dbname"], application_name),
    )


def test_success_during_an_outage_is_recorded_once_the_database_is_back(
    broker_env: BrokerEnv,
    chaos,
) -> None:
    """The task succeeds while its result cannot be written (its session ended, new connections
    refused for 4 s): the pool child keeps trying, with backoff, and writes it once the database is
    back. Completed in the same attempt even with no retries at all; ``get()`` returns the value.
    It used to be recorded as a failed attempt: with retry_limit 0, ``failed`` with an
    OperationalError for work that was done."""
    env = broker_env
    queue = create_queue(env, unique("outage-success"), retry_limit=0)
    worker = env.worker(
        "outage-success", [queue], concurrency=1, args=INCLUDE, extra_env=CHILD_WRITES
    ).start()
    assert chaos.nap.apply_async((0.1,), queue=queue).get(timeout=30) == 0.1
    result = chaos.nap.apply_async((1.0,), queue=queue)
    env.wait_state(result.id, "active")
    with refused_connections(env) as cur:
        _end_sessions(env, cur, "zeke-broker-child")  # the pool child's sessions: its result writes
        wait_for(lambda: "result backend: database unavailable" in worker.log(), 20, what="the failed write")
        time.sleep(4.0)
    assert result.get(timeout=30) == 1.0
    job = env.job(result.id)
    assert (job["state"], job["retry_count"], job["output"]) == ("completed", 0, {"value": 1.0})
    log = worker.log()
    # One line when the outage began and one when it ended, not one per attempt.
    assert log.count("result backend: database unavailable") == 1, log[-3000:]
    assert log.count("result backend: database available again") == 1, log[-3000:]
    assert "OperationalError" not in log.replace("database unavailable (OperationalError", "")
    worker.stop()


def test_success_that_cannot_be_written_in_time_is_handed_back_not_failed(
    broker_env: BrokerEnv,
    chaos,
) -> None:
    """The same, with ``result_retry_seconds`` of 1 s and the database refusing new connections for
    longer: the task's end is never recorded as a failure. The pool child gives up; the main process
    hands the job back through the transport's own open connections (no attempt used), and it runs
    again and completes. Before, the job stayed ``active`` until its expiry (an hour), and later it
    was left to its heartbeat timeout, which used an attempt."""
    env = broker_env
    queue = create_queue(env, unique("unrecorded"), retry_limit=0)
    worker = env.worker(
        "unrecorded",
        [queue],
        concurrency=1,
        args=INCLUDE,
        extra_env={"ZEKE_BROKER_TEST_RESULT_RETRY": "1", **CHILD_WRITES},
    ).start()
    assert chaos.nap.apply_async((0.1,), queue=queue).get(timeout=30) == 0.1
    result = chaos.nap.apply_async((2.0,), queue=queue)
    env.wait_state(result.id, "active")
    with refused_connections(env) as cur:
        _end_sessions(env, cur, "zeke-broker-child")
        wait_for(lambda: "handed back to its queue" in worker.log(), 20, what="the job to be handed back")
    assert result.get(timeout=30) == 2.0
    job = env.job(result.id)
    assert (job["state"], job["retry_count"], job["output"]) == ("completed", 0, {"value": 2.0})
    worker.stop()


def test_lost_broker_connection_does_not_hand_back_running_jobs(
    broker_env: BrokerEnv,
    chaos,
) -> None:
    """The worker's broker sessions are ended while two tasks run and four wait in its prefetch:
    Celery restores the unacked messages. The waiting jobs go back to the queue; the running ones
    used to go back too, and ran a second time, in the same attempt, beside the first run."""
    env = broker_env
    queue = create_queue(env, unique("handback"), retry_limit=3, retry_delay=1)
    name = unique("zeke-broker-handback")
    worker = env.worker(
        "handback", [queue], concurrency=2, args=INCLUDE, extra_env={"ZEKE_BROKER_TEST_APPNAME": name}
    ).start()
    ids = [chaos.work.apply_async((n, 4.0), queue=queue).id for n in range(6)]
    wait_for(lambda: sum(env.job(i)["state"] == "active" for i in ids) >= 2, 20, what="jobs to run")
    time.sleep(2.5)  # the running two have recorded their run
    assert terminate(env, name) >= 1
    for job_id in ids:
        env.wait_state(job_id, "completed", timeout=60)
    result = tally(env, ids)
    assert not result.duplicates and not result.reruns, (result.line(), runs_of(env, ids))
    assert "Connection to broker lost" in worker.log()
    worker.stop()


def test_consumer_reconnects_back_off_and_log_once_per_outage(
    broker_env: BrokerEnv,
    chaos,
) -> None:
    """The worker's broker sessions are ended and new connections refused for 6 s: Celery restarts
    its consumer once, and the new connection waits (backoff with jitter) until the database
    answers, with one warning when the outage begins and one line when it is over. (Celery used to
    restart the consumer several times a second, each time logging the lost connection, until
    "Frequent restarts detected".)"""
    env = broker_env
    queue = create_queue(env, unique("reconnect"), retry_limit=0)
    name = unique("zeke-broker-reconnect")
    worker = env.worker(
        "reconnect", [queue], concurrency=1, args=INCLUDE, extra_env={"ZEKE_BROKER_TEST_APPNAME": name}
    ).start()
    assert chaos.nap.apply_async((0.1,), queue=queue).get(timeout=30) == 0.1
    with refused_connections(env) as cur:
        _end_sessions(env, cur, name)
        wait_for(lambda: "pg-boss consumer: database unavailable" in worker.log(), 20, what="the outage")
        time.sleep(6.0)
    assert chaos.nap.apply_async((0.2,), queue=queue).get(timeout=60) == 0.2
    wait_for(lambda: "pg-boss consumer: database available again" in worker.log(), 30, what="the recovery")
    log = worker.log()
    assert log.count("Connection to broker lost") == 1, log[-4000:]
    assert log.count("pg-boss consumer: database unavailable") == 1, log[-4000:]
    assert "Frequent restarts" not in log
    worker.stop()
