"""transport.errors: a database that is away is DatabaseUnavailable at the Database boundary (and
still the psycopg2 class it stands for); a failing statement stays the driver's own error."""

from __future__ import annotations

import psycopg2
import psycopg2.errors
import pytest

from transport.db import Database
from transport.errors import DatabaseError, DatabaseUnavailable, InvalidDatabaseURL, is_unavailable
from transport.manager import JobManager

NOWHERE = "postgresql://zeke:S3cretPW@127.0.0.1:1/zeke"


def test_a_malformed_url_is_invalid_database_url_without_its_password() -> None:
    with pytest.raises(InvalidDatabaseURL) as caught:
        Database("postgresql://zeke:S3cretPW@[::1/zeke")
    assert isinstance(caught.value, psycopg2.ProgrammingError) and isinstance(caught.value, DatabaseError)
    assert str(caught.value).startswith("invalid dsn") and "S3cretPW" not in str(caught.value)


def test_an_unreachable_database_is_database_unavailable() -> None:
    db = Database(NOWHERE, max_connections=1)
    try:
        with pytest.raises(DatabaseUnavailable) as pooled:
            JobManager(db, "pgboss").now()
        with pytest.raises(DatabaseUnavailable) as direct:
            db.connect()
    finally:
        db.close()
    for caught in (pooled, direct):
        assert isinstance(caught.value, psycopg2.OperationalError)  # existing except sites still match
        assert type(caught.value.__cause__) is psycopg2.OperationalError
        assert "port 1" in str(caught.value)
    # The pool's slot was given back: a second try fails the same way, not with a checkout timeout.
    with pytest.raises(DatabaseUnavailable):
        with db.connection():
            pass


def test_a_connection_lost_in_the_block_is_database_unavailable(db_url: str) -> None:
    db = Database(db_url, max_connections=1)
    try:
        with pytest.raises(DatabaseUnavailable) as caught:
            with db.cursor() as cur:
                cur.execute("SELECT pg_terminate_backend(pg_backend_pid())")
        assert isinstance(caught.value.__cause__, psycopg2.OperationalError)
        with db.cursor() as cur:  # the lost connection was not handed out again
            cur.execute("SELECT 1 AS one")
            assert cur.fetchone()["one"] == 1
    finally:
        db.close()


def test_a_failing_statement_keeps_its_own_error(db_url: str) -> None:
    db = Database(db_url, max_connections=1)
    try:
        with pytest.raises(psycopg2.errors.QueryCanceled) as canceled:
            with db.cursor() as cur:
                cur.execute("SET LOCAL statement_timeout = 10")
                cur.execute("SELECT pg_sleep(5)")
        assert not isinstance(canceled.value, DatabaseUnavailable)
        with pytest.raises(psycopg2.errors.UndefinedTable):
            with db.cursor() as cur:
                cur.execute("SELECT * FROM no_such_table_here")
    finally:
        db.close()


def test_what_counts_as_unavailable() -> None:
    assert is_unavailable(psycopg2.OperationalError("server closed the connection unexpectedly"))
    assert is_unavailable(psycopg2.InterfaceError("connection already closed"))
    assert not is_unavailable(psycopg2.ProgrammingError("syntax error"))
    assert not is_unavailable(ValueError("not a driver error"))
