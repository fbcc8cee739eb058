"""The claims' ``active`` notices go out only while a LISTEN session holds the state presence (an
advisory lock, shared): result waiters hold it while they wait, an SSE hub while it listens. Every
other transition is announced as before."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest
from celery import Celery

from tests.dbutil import drain, listen
from transport.backend import PgBossBackend
from transport.listener import Listener
from transport.manager import JobManager
from transport.names import state_presence_key

pytestmark = pytest.mark.own_database("presence")

QUEUE = "presence-q"


def until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


@pytest.fixture
def queued(boss: JobManager) -> JobManager:
    boss.create_queue(QUEUE, retry_limit=1, retry_delay=0, retry_backoff=False)
    return boss


def test_the_presence_key_is_the_managers_and_per_schema(boss: JobManager) -> None:
    assert boss.state_presence == state_presence_key(boss.schema)
    assert state_presence_key("a") != state_presence_key("b")


def test_a_claim_announces_the_job_running_only_while_a_session_holds_the_presence(
    queued: JobManager,
) -> None:
    boss = queued
    conn = listen(boss, boss.state_channel)
    try:
        first = boss.send(QUEUE, {})
        [job] = boss.fetch([QUEUE])
        boss.complete(QUEUE, [(first, "ok", job.retry_count)])
        assert drain(conn) == [f"{first} completed"]  # nobody wanted 'active'
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock_shared(%s)", (boss.state_presence,))
        second = boss.send(QUEUE, {})
        [job] = boss.fetch([QUEUE])
        boss.complete(QUEUE, [(second, "ok", job.retry_count)])
        assert drain(conn) == [f"{second} active", f"{second} completed"]
    finally:
        conn.close()


def test_a_claim_that_finds_the_lock_taken_by_another_claim_announces(queued: JobManager) -> None:
    """Two claims at once: the second cannot tell whether a listener holds the lock, so it tells."""
    boss = queued
    conn = listen(boss, boss.state_channel)
    other = boss.db.connect()
    try:
        with other.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (boss.state_presence,))
        job_id = boss.send(QUEUE, {})
        boss.fetch([QUEUE])
        assert drain(conn) == [f"{job_id} active"]
    finally:
        other.rollback()
        other.close()
        conn.close()


def test_the_listener_takes_a_hold_once_a_claim_holding_the_lock_alone_commits(
    boss: JobManager,
) -> None:
    key = boss.state_presence
    claim = boss.db.connect()  # a claim between its lock and its commit
    with claim.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (key,))
    listener = Listener(boss.db)
    listened = threading.Event()
    try:
        listener.hold(key)
        sub = listener.subscribe([boss.state_channel], lambda c, p: None, on_listen=listened.set)
        assert until(lambda: listener.listens_to(sub.channels))
        time.sleep(0.1)
        # on_listen's re-read must see every claim that did not announce: not before the hold
        assert not listener.holds(key) and not listened.is_set()
        claim.commit()
        assert until(lambda: listener.holds(key))
        assert listened.wait(5)
        listener.release(key)
        assert until(lambda: not listener.holds(key))
        # released in the database too: a claim may take it alone again
        with claim.cursor() as cur:
            cur.execute("SELECT pg_try_advisory_xact_lock(%s)", (key,))
            assert cur.fetchone()[0] is True
        claim.rollback()
    finally:
        claim.close()
        listener.close()


@pytest.fixture
def app(db_url: str, queued: JobManager) -> Iterator[Celery]:
    app = Celery("test-presence", set_as_current=False)
    app.conf.update(
        broker_url="memory://",
        result_backend="transport.backend:PgBossBackend://" + db_url.split("://", 1)[1],
        result_backend_transport_options={"schema": queued.schema},
        task_track_started=True,
    )
    yield app
    app.backend.close()


def test_a_waiter_holds_the_presence_while_it_waits_and_hears_its_job_running(
    app: Celery, queued: JobManager
) -> None:
    boss = queued
    backend = app.backend
    assert isinstance(backend, PgBossBackend)
    listener = backend.hub.listener
    consumer = backend.result_consumer
    job_id = boss.send(QUEUE, {})
    announced: list[bool] = []

    def worker() -> None:
        assert until(lambda: listener.holds(boss.state_presence))
        [job] = boss.fetch([QUEUE])
        until(lambda: (pace := consumer._paces.get(job_id)) is not None and pace.announced, 2.0)
        announced.append(consumer._paces[job_id].announced)
        boss.complete(QUEUE, [(job.id, "done", job.retry_count)])

    thread = threading.Thread(target=worker)
    thread.start()
    try:
        assert app.AsyncResult(job_id).get(timeout=10, interval=0.5) == "done"
    finally:
        thread.join()
    assert announced == [True]
    # Nothing waited on any more: the claims stop announcing.
    assert until(lambda: not listener.holds(boss.state_presence))
