"""transport.poller.Poller: what wakes a consumer (notices, the start_after timer, the safety poll)
and the worker's event loop it registers with, on a real database.

Each consumer's safety poll is set beyond the test unless the test is about it, so only what the
test names can bring a job.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import kombu
import pytest
from kombu.asynchronous import Hub

from tests.dbutil import pgboss_url
from transport.db import Database
from transport.manager import JobManager
from transport.poller import Poller

QUEUE = "polled"


def options(**extra: Any) -> dict[str, Any]:
    return {
        "schema": "p_" + uuid.uuid4().hex[:12],
        "polling_interval": 60,
        "supervise": False,
        "settle_on_ack": True,
        **extra,
    }


@pytest.fixture
def transport_options() -> dict[str, Any]:
    return options()


@pytest.fixture
def consumer(db_url: str, transport_options: dict[str, Any]) -> Iterator[tuple[kombu.Connection, list[Any]]]:
    """A connection consuming QUEUE, and what it got."""
    got: list[Any] = []
    queue = kombu.Queue(QUEUE, routing_key=QUEUE)
    with kombu.Connection(pgboss_url(db_url), transport_options=transport_options) as conn:
        with conn.Consumer(queue, callbacks=[lambda body, message: got.append(message)]):
            yield conn, got


def publish(db_url: str, transport_options: dict[str, Any], *, eta: dt.datetime | None = None) -> None:
    headers = {"eta": eta.isoformat()} if eta is not None else {}
    queue = kombu.Queue(QUEUE, routing_key=QUEUE)
    with kombu.Connection(pgboss_url(db_url), transport_options=transport_options) as conn:
        with conn.Producer() as producer:
            producer.publish({"n": 1}, routing_key=QUEUE, declare=[queue], headers=headers, retry=True)


def poller_of(conn: kombu.Connection) -> Poller:
    return conn.transport.poller


def test_a_blocking_drain_is_woken_by_the_insert_notice(
    db_url: str, transport_options: dict[str, Any], consumer: tuple[kombu.Connection, list[Any]]
) -> None:
    conn, got = consumer
    with pytest.raises(TimeoutError):
        conn.drain_events(timeout=0.3)  # listening, every queue looked at once: nothing
    assert not poller_of(conn).dirty
    publish(db_url, transport_options)  # its NOTIFY is what marks the queue dirty
    started = time.monotonic()
    conn.drain_events(timeout=10)
    assert [m.payload for m in got] == [{"n": 1}] and time.monotonic() - started < 5
    got[0].ack()


def test_a_later_job_comes_when_its_timer_fires(
    db_url: str, transport_options: dict[str, Any], consumer: tuple[kombu.Connection, list[Any]]
) -> None:
    conn, got = consumer
    with pytest.raises(TimeoutError):
        conn.drain_events(timeout=0.3)
    due = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    publish(db_url, transport_options, eta=due)  # announced as a timer notice, not as runnable
    with pytest.raises(TimeoutError):
        conn.drain_events(timeout=0.3)  # not due yet: the notice set a timer, nothing more
    assert poller_of(conn)._next_start is not None
    conn.drain_events(timeout=10)
    assert len(got) == 1 and dt.datetime.now(dt.UTC) >= due
    got[0].ack()


def test_marking_a_queue_nobody_here_consumes_is_ignored(
    consumer: tuple[kombu.Connection, list[Any]],
) -> None:
    conn, _ = consumer
    poller = poller_of(conn)
    poller.dirty.clear()
    poller.mark_dirty(["someone-elses", QUEUE])
    assert poller.dirty == {QUEUE}


def test_the_safety_poll_runs_at_nodes_interval_while_node_may_send_unannounced(
    db_url: str, database: Database, transport_options: dict[str, Any]
) -> None:
    """Turning ``notify`` on: Node processes see it only at their next queue-cache refresh, so
    meanwhile this consumer polls as often as a Node worker would."""
    JobManager(database, transport_options["schema"]).create_queue(QUEUE, notify=False)  # as Node does
    tuned = {**transport_options, "polling_interval": 30, "node_polling_interval": 2}
    queue = kombu.Queue(QUEUE, routing_key=QUEUE)
    with kombu.Connection(pgboss_url(db_url), transport_options=tuned) as first:
        with first.Consumer(queue, callbacks=[]):
            assert poller_of(first).safety_interval() == 2  # it turned notify on just now
    with kombu.Connection(pgboss_url(db_url), transport_options=tuned) as second:
        with second.Consumer(queue, callbacks=[]):
            assert poller_of(second).safety_interval() == 30  # notify was on already


def run_until(hub: Hub, done: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        hub.run_once()
    return done()


def loop_threads() -> set[str]:
    names = {"pgboss-fetch", "pgboss-settle", "pgboss-supervisor"}
    return {t.name for t in threading.enumerate() if t.name in names and t.is_alive()}


def test_on_an_event_loop_it_runs_the_worker_threads_and_stops_them_on_close(db_url: str) -> None:
    transport_options = options(supervise=True, supervise_interval=3600)
    before = loop_threads()
    assert not before, "another test left loop threads running"
    publish(db_url, transport_options)
    got: list[Any] = []
    conn = kombu.Connection(pgboss_url(db_url), transport_options=transport_options)
    hub = Hub()
    try:
        conn.transport.register_with_event_loop(conn.connection, hub)
        assert loop_threads() == {"pgboss-fetch", "pgboss-settle", "pgboss-supervisor"}
        consumer = conn.Consumer(
            kombu.Queue(QUEUE, routing_key=QUEUE), callbacks=[lambda body, message: got.append(message)]
        )
        consumer.consume()
        assert run_until(hub, lambda: len(got) == 1, 10)  # delivered from the loop's tick
        got[0].ack()  # settled by the settle thread
        assert run_until(hub, lambda: not conn.transport.settler.pending, 5)
    finally:
        conn.close()  # unregisters from the loop, stops the supervisor
        hub.close()
    deadline = time.monotonic() + 5
    while loop_threads() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not loop_threads()
    with kombu.Connection(pgboss_url(db_url), transport_options=transport_options) as check:
        job_id = got[0].delivery_tag.split("/")[0]
        assert check.default_channel.manager.get_job(job_id)["state"] == "completed"
