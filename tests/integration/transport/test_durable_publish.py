"""A durable publish (one task or a group) returns only once its jobs' commit is on disk
(``durable_publish``, the default), although it commits asynchronously so that its NOTIFY goes out
before the flush
(:meth:`transport.sessions.Sessions.durable`); ``durable_publish=False`` returns without waiting.

Shown on a server of this module's own (:mod:`tests.cluster`), kept quiet so that its WAL positions
mean something: autovacuum off and the WAL writer's background flush slowed to ten seconds. A send's
commit is on disk when the send returns only if the server's flush position has passed the WAL
insert position read just before the send.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import psycopg2
import pytest
from celery import Celery, group, signature

from tests.cluster import ThrowawayCluster
from transport.db import Database, dsn_from_url
from transport.manager import JobManager

SENDS = 20


@pytest.fixture(scope="module")
def quiet_url(cluster: ThrowawayCluster) -> str:
    conn = psycopg2.connect(dsn_from_url(cluster.url))
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("ALTER SYSTEM SET wal_writer_delay = '10s'")
            cur.execute("ALTER SYSTEM SET autovacuum = off")
            cur.execute("SELECT pg_reload_conf()")
    finally:
        conn.close()
    return cluster.url


@pytest.fixture
def probe(quiet_url: str) -> Iterator[psycopg2.extensions.cursor]:
    conn = psycopg2.connect(dsn_from_url(quiet_url))
    conn.autocommit = True
    try:
        yield conn.cursor()
    finally:
        conn.close()


def _lsn(cur: psycopg2.extensions.cursor, function: str) -> int:
    cur.execute(f"SELECT {function}() - '0/0'::pg_lsn")
    return int(cur.fetchone()[0])


@pytest.mark.parametrize("durable", [True, False], ids=["durable", "durable_publish-off"])
def test_a_publish_returns_once_its_job_is_on_disk(
    quiet_url: str, probe: psycopg2.extensions.cursor, durable: bool
) -> None:
    queues = ["durable-" + uuid.uuid4().hex[:8] for _ in range(2)]
    with _app(quiet_url, queues, durable) as (app, manager):
        on_disk = []
        for i in range(SENDS):
            before = _lsn(probe, "pg_current_wal_insert_lsn")
            if i % 2:  # a group over both queues: one transaction
                group(signature("probe.noop", args=(i,), queue=q, app=app) for q in queues).apply_async()
            else:
                app.send_task("probe.noop", args=(i,), queue=queues[0])
            on_disk.append(_lsn(probe, "pg_current_wal_flush_lsn") > before)
        fetched = manager.fetch(queues, 100)
        assert len(fetched) == SENDS + SENDS // 2 + 2  # every send committed, either way
        if durable:
            assert all(on_disk)
        else:  # nothing else flushes on this quiet server: the sends' commits wait in the WAL buffers
            assert not any(on_disk)


@contextlib.contextmanager
def _app(url: str, queues: list[str], durable: bool) -> Iterator[tuple[Celery, JobManager]]:
    """An app sending groups as zeke's does (one INSERT per queue), the queues created and declared."""
    import transport  # noqa: F401  (the pgboss:// alias)

    database = Database(url, max_connections=2)
    manager = JobManager(database, "pgboss")
    app = Celery("durable-" + uuid.uuid4().hex[:6], set_as_current=False, amqp="transport.batch_publish:AMQP")
    app.conf.update(
        broker_url="pgboss://" + url.split("://", 1)[1],
        broker_transport_options={"durable_publish": durable},
        task_ignore_result=True,
    )
    try:
        for queue in queues:
            manager.create_queue(queue)
            app.send_task("probe.noop", queue=queue)  # declares it to Kombu: a durable commit
        yield app, manager
    finally:
        app.close()
        database.close()
