"""transport.executor: named statements run through one place, and a driver error leaves it as the
transport's own exception (transport.errors), on the pool and on a caller's connection alike; the
kinds the retry paths treat as an outage still match ``CONNECTION_ERRORS``."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from urllib.parse import quote

import psycopg2
import psycopg2.errors
import psycopg2.pool
import pytest

from transport.db import CONNECTION_ERRORS, Database
from transport.errors import (
    Conflict,
    DatabaseUnavailable,
    InvalidValue,
    PoolExhausted,
    StatementError,
    StatementTimeout,
)
from transport.listener import Listener
from transport.manager import JobManager

NOWHERE = "postgresql://zeke@127.0.0.1:1/zeke"


def with_options(url: str, options: str) -> str:
    return url + ("&" if "?" in url else "?") + "options=" + quote(options)


@pytest.fixture
def queue_locked(boss: JobManager, database: Database) -> Iterator[None]:
    """The schema's queue table locked by another transaction for the test's duration."""
    boss.create_queue("q")
    locker = database.connect()
    try:
        with locker.cursor() as cur:
            cur.execute(f'LOCK TABLE "{boss.schema}".queue IN ACCESS EXCLUSIVE MODE')
        yield
    finally:
        locker.rollback()
        locker.close()


@pytest.mark.parametrize(
    ("setting", "kind", "sqlstate", "cause"),
    [
        ("statement_timeout", StatementTimeout, "57014", psycopg2.errors.QueryCanceled),
        ("lock_timeout", Conflict, "55P03", psycopg2.errors.LockNotAvailable),
    ],
)
def test_a_statement_cut_short_is_ours_and_still_retried_like_an_outage(
    boss: JobManager,
    db_url: str,
    queue_locked: None,
    setting: str,
    kind: type[StatementError],
    sqlstate: str,
    cause: type[BaseException],
) -> None:
    db = Database(with_options(db_url, f"-c {setting}=200"), max_connections=1)
    try:
        manager = JobManager(db, boss.schema)
        manager.now()  # the schema is read before the queue table is needed
        with pytest.raises(kind) as caught:
            manager.get_queue("q")
        assert caught.value.sqlstate == sqlstate
        assert type(caught.value.__cause__) is cause
        assert not isinstance(caught.value, DatabaseUnavailable)
        assert isinstance(caught.value, CONNECTION_ERRORS)  # the retry paths' except clauses still match
        assert manager.now() is not None  # the pool's connection was replaced or kept, not leaked
    finally:
        db.close()


def test_a_lost_caller_connection_is_database_unavailable(boss: JobManager, database: Database) -> None:
    boss.create_queue("q")
    conn = database.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_backend_pid()")
            (pid,) = cur.fetchone()
        conn.commit()
        with database.cursor() as cur:
            cur.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(DatabaseUnavailable) as caught:
            boss.get_job(str(uuid.uuid4()), conn=conn)
        assert isinstance(caught.value.__cause__, CONNECTION_ERRORS)
    finally:
        conn.close()


def test_a_database_that_is_away_is_database_unavailable() -> None:
    db = Database(NOWHERE, max_connections=1)
    try:
        with pytest.raises(DatabaseUnavailable):
            JobManager(db, "pgboss").sql.rows("database_now")
    finally:
        db.close()


def test_a_statement_in_an_aborted_transaction_is_a_statement_error(
    boss: JobManager, database: Database
) -> None:
    boss.create_queue("q")
    conn = database.connect()
    try:
        with conn.cursor() as cur, pytest.raises(psycopg2.errors.DivisionByZero):
            cur.execute("SELECT 1 / 0")
        with pytest.raises(StatementError) as caught:
            boss.get_job(str(uuid.uuid4()), conn=conn)
        assert caught.value.sqlstate == "25P02"
        assert not isinstance(caught.value, CONNECTION_ERRORS)  # not an outage: nobody retries it
    finally:
        conn.rollback()
        conn.close()


def test_a_value_the_database_refuses_is_invalid_value(boss: JobManager) -> None:
    boss.create_queue("q")
    with pytest.raises(InvalidValue) as caught:
        boss.list_jobs(limit=2**70)  # past bigint
    assert caught.value.sqlstate == "22003"
    assert isinstance(caught.value, psycopg2.DataError)


def test_an_exhausted_pool_is_pool_exhausted(boss: JobManager, db_url: str) -> None:
    boss.create_queue("q")
    db = Database(db_url, max_connections=1)
    db.checkout_timeout = 0.2
    try:
        manager = JobManager(db, boss.schema)
        manager.now()
        with db.connection():
            with pytest.raises(PoolExhausted) as caught:
                manager.get_queue("q")
        assert isinstance(caught.value, psycopg2.pool.PoolError)
        assert manager.get_queue("q") is not None
    finally:
        db.close()


def test_no_listen_connection_in_time_is_database_unavailable() -> None:
    db = Database(NOWHERE, max_connections=1)
    listener = Listener(db)
    try:
        sub = listener.subscribe(["zeke_test"], lambda channel, payload: None)
        with pytest.raises(DatabaseUnavailable):
            listener.wait_for(sub, 0.5)
    finally:
        listener.close()
        db.close()
