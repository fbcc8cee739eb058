"""transport.errors.wrap: a driver error becomes the transport's own, keeping the driver family the
retry paths match on (the SQLSTATE mapping needs a server: tests/integration/transport/test_executor.py)."""

from __future__ import annotations

import psycopg2
import psycopg2.pool
import pytest

from transport.db import CONNECTION_ERRORS
from transport.errors import (
    ConstraintViolation,
    DatabaseError,
    DatabaseUnavailable,
    InternalStateError,
    InvalidStatement,
    InvalidValue,
    NotSupported,
    PoolExhausted,
    StatementError,
    lost,
    wrap,
)


@pytest.mark.parametrize(
    ("driver", "ours"),
    [
        (psycopg2.OperationalError("server closed the connection unexpectedly"), DatabaseUnavailable),
        (psycopg2.InterfaceError("connection already closed"), DatabaseUnavailable),
        (psycopg2.DataError("invalid input syntax"), InvalidValue),
        (psycopg2.IntegrityError("violates a constraint"), ConstraintViolation),
        (psycopg2.ProgrammingError("syntax error"), InvalidStatement),
        (psycopg2.InternalError("current transaction is aborted"), InternalStateError),
        (psycopg2.NotSupportedError("not supported"), NotSupported),
        (psycopg2.pool.PoolError("no free connection"), PoolExhausted),
    ],
)
def test_a_driver_error_becomes_ours_in_its_family(driver: Exception, ours: type[DatabaseError]) -> None:
    wrapped = wrap(driver)
    assert type(wrapped) is ours and str(wrapped) == str(driver)
    if isinstance(wrapped, StatementError):  # an ``except`` of the driver's family still catches it
        assert isinstance(wrapped, type(driver))
    assert isinstance(wrapped, CONNECTION_ERRORS) == isinstance(driver, CONNECTION_ERRORS)


def test_ours_and_foreign_errors_pass_as_they_are() -> None:
    mine = DatabaseUnavailable("away")
    other = ValueError("not the driver's")
    assert wrap(mine) is mine and wrap(other) is other


def test_a_lost_connection_is_kept_as_database_unavailable() -> None:
    driver = psycopg2.OperationalError("terminating connection")
    kept = lost(driver)
    assert isinstance(kept, DatabaseUnavailable) and kept.__cause__ is driver
    assert lost(kept) is kept
