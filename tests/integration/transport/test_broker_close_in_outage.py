"""A transport closed while its database refuses connections (a restart, a failover) still closes:
its acks cannot be written, but its threads stop, its LISTEN socket closes and its jobs are let go
(pg-boss retries them once their heartbeat runs out) instead of being heartbeated on by a
transport nobody uses."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterator

import kombu
import psycopg2
import psycopg2.extensions
import pytest
from kombu.asynchronous import Hub

from tests.dbutil import pgboss_url
from transport.db import dsn_from_url

pytestmark = pytest.mark.own_database("outage")

QUEUE = "closing"


@contextlib.contextmanager
def refusing(db_url: str, application_name: str) -> Iterator[None]:
    """New connections to the database refused and ``application_name``'s sessions ended."""
    dsn = dsn_from_url(db_url)
    name = psycopg2.extensions.parse_dsn(dsn)["dbname"]
    admin = psycopg2.connect(dsn, dbname="postgres")
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
            try:
                cur.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                    (application_name,),
                )
                yield
            finally:
                cur.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
    finally:
        admin.close()


def transport_threads() -> set[str]:
    return {t.name for t in threading.enumerate() if t.name.startswith("pgboss-") and t.is_alive()}


def test_a_transport_closed_in_an_outage_stops_its_threads_and_lets_go(db_url: str) -> None:
    application_name = "zeke-outage-" + uuid.uuid4().hex[:8]
    options = {
        "schema": "o_" + uuid.uuid4().hex[:12],
        "polling_interval": 60,
        "supervise": False,
        "settle_on_ack": True,
        "application_name": application_name,
    }
    before = transport_threads()
    queue = kombu.Queue(QUEUE, routing_key=QUEUE)
    got: list[kombu.Message] = []
    conn = kombu.Connection(pgboss_url(db_url), transport_options=options)
    with conn.Producer() as producer:
        producer.publish({"n": 0}, routing_key=QUEUE, declare=[queue], retry=True)
    transport = conn.transport
    hub = Hub()
    transport.register_with_event_loop(conn.connection, hub)
    consumer = conn.Consumer(queue, callbacks=[lambda body, message: got.append(message)])
    consumer.consume()
    deadline = time.monotonic() + 10
    while not got and time.monotonic() < deadline:
        hub.run_once()
    assert len(got) == 1
    assert transport_threads() - before, "a consuming transport runs threads of its own"

    with refusing(db_url, application_name):
        got[0].ack()  # the settle thread cannot write it
        conn.close()
        assert not transport.poller.listening and transport._released
        deadline = time.monotonic() + 5
        while transport_threads() - before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not transport_threads() - before, "threads left running by a closed transport"
    hub.close()

    with psycopg2.connect(dsn_from_url(db_url)) as check, check.cursor() as cur:
        cur.execute(f'SELECT state FROM "{options["schema"]}".job WHERE name = %s', (QUEUE,))
        assert cur.fetchall() == [("active",)]  # its ack was lost: pg-boss retries it after its heartbeat
