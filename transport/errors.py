"""Database failures as the transport's own exceptions, raised where the transport meets the driver
(:class:`transport.db.Database` for connections, :class:`transport.executor.Executor` for
statements), so code outside the driver layer never names psycopg2.

    DatabaseError
    ├── DatabaseUnavailable    the server or the connection is away: try again later
    ├── InvalidDatabaseURL     the URL cannot be parsed
    ├── PoolExhausted          no pooled connection came free in time
    └── StatementError         the database refused or abandoned one statement
        ├── StatementTimeout   cancelled: ``statement_timeout`` or a cancel request
        ├── ServerError        the server could not run it now (out of memory, disk, ...)
        ├── Conflict           a concurrent transaction won (deadlock, serialisation, lock not available)
        ├── ConstraintViolation
        │   ├── UniqueViolation
        │   └── CheckViolation
        ├── InvalidValue       a value the column or function cannot take (SQLSTATE class 22)
        ├── InvalidStatement   cannot run as written here (missing table, no privilege, read-only)
        ├── InternalStateError not in this state (an aborted transaction)
        └── NotSupported       the server does not support it

Each also subclasses the psycopg2 family it stands for (``OperationalError``, ``IntegrityError``,
``DataError``, ``ProgrammingError``, ``InternalError``, ``NotSupportedError``; not the driver's
per-SQLSTATE classes in ``psycopg2.errors``), so ``except psycopg2.OperationalError``
(kombu's ``connection_errors``, :data:`transport.db.CONNECTION_ERRORS`) still catches what it
caught before: a timed-out or conflicting statement is an OperationalError to the driver too, and
the retry paths that treat it like an outage keep doing so. The driver's exception is the
``__cause__``; its SQLSTATE, constraint and primary message are copied onto ours.
"""

from __future__ import annotations

import psycopg2
import psycopg2.pool


class DatabaseError(Exception):
    """The database could not be used."""


class DatabaseUnavailable(DatabaseError, psycopg2.OperationalError):
    """The database cannot be reached, or the connection was lost (a restart, a refused or dropped
    connection, too many clients): worth trying again later."""


class InvalidDatabaseURL(DatabaseError, psycopg2.ProgrammingError):
    """The database URL cannot be parsed (libpq's message, password redacted)."""


class PoolExhausted(DatabaseError, psycopg2.pool.PoolError):
    """Every connection of the process's pool stayed checked out for the whole checkout timeout."""


class StatementError(DatabaseError, psycopg2.DatabaseError):
    """A statement failed on a working connection (the connection itself is fine)."""

    #: The five-character SQLSTATE (None when the server sent none).
    sqlstate: str | None = None
    #: The constraint a violation names, if any.
    constraint: str | None = None
    #: The server's primary message, without context lines.
    message_primary: str | None = None


class StatementTimeout(StatementError, psycopg2.OperationalError):
    """The statement was cancelled: ``statement_timeout`` ran out, or someone cancelled it."""


class ServerError(StatementError, psycopg2.OperationalError):
    """The server could not run the statement now (resources, limits, its own state)."""


class Conflict(StatementError, psycopg2.OperationalError):
    """A concurrent transaction won (deadlock, serialisation failure, lock not available): the
    statement may succeed when run again."""


class ConstraintViolation(StatementError, psycopg2.IntegrityError):
    """A row broke a constraint of its table."""


class UniqueViolation(ConstraintViolation):
    """A row's key is taken."""


class CheckViolation(ConstraintViolation):
    """A row failed a CHECK constraint."""


class InvalidValue(StatementError, psycopg2.DataError):
    """A value the column or function cannot take (out of range, malformed JSON, NUL in text...)."""


class InvalidStatement(StatementError, psycopg2.ProgrammingError):
    """The statement cannot run as written here (a missing table or column, no privilege, a
    read-only transaction)."""


class InternalStateError(StatementError, psycopg2.InternalError):
    """The transaction or server is in a state the statement cannot run in (an aborted transaction)."""


class NotSupported(StatementError, psycopg2.NotSupportedError):
    """The server does not support what the statement asks."""


#: SQLSTATEs meaning the server is away or will not take the session, not that a statement failed:
#: admin/crash shutdown, cannot connect now, too many connections. Class 08 (connection exception)
#: is matched as a class.
_UNAVAILABLE_STATES = frozenset({"57P01", "57P02", "57P03", "53300"})

#: SQLSTATE -> the statement error it is; else by class (the first two characters), else by the
#: driver's exception family (:data:`_BY_FAMILY`).
_BY_STATE: dict[str, type[StatementError]] = {
    "57014": StatementTimeout,
    "40P01": Conflict,
    "40001": Conflict,
    "55P03": Conflict,
    "23505": UniqueViolation,
    "23514": CheckViolation,
}
_BY_CLASS: dict[str, type[StatementError]] = {"22": InvalidValue, "23": ConstraintViolation, "40": Conflict}

#: The driver's families for states not named above, so such an error keeps its family's except
#: sites (an OperationalError, e.g. out of memory or disk, is still retried like an outage).
_BY_FAMILY: tuple[tuple[type[BaseException], type[StatementError]], ...] = (
    (psycopg2.DataError, InvalidValue),
    (psycopg2.IntegrityError, ConstraintViolation),
    (psycopg2.OperationalError, ServerError),
    (psycopg2.ProgrammingError, InvalidStatement),
    (psycopg2.InternalError, InternalStateError),
    (psycopg2.NotSupportedError, NotSupported),
)


def is_unavailable(exc: BaseException) -> bool:
    """Whether a driver error means the database (or the connection to it) is away. libpq's own
    failures (refused, closed unexpectedly, timeouts) carry no SQLSTATE."""
    if isinstance(exc, DatabaseError):
        return isinstance(exc, DatabaseUnavailable)
    if isinstance(exc, psycopg2.InterfaceError):
        return True
    if not isinstance(exc, psycopg2.OperationalError):
        return False
    code = exc.pgcode
    return code is None or code.startswith("08") or code in _UNAVAILABLE_STATES


def as_unavailable(exc: BaseException) -> DatabaseUnavailable | None:
    """A driver error meaning the database is away as :class:`DatabaseUnavailable` (same message;
    raise it ``from exc``), or None: any other error, or one that is a DatabaseUnavailable already."""
    if isinstance(exc, DatabaseError) or not is_unavailable(exc):
        return None
    return DatabaseUnavailable(str(exc))


def lost(exc: BaseException) -> DatabaseUnavailable:
    """``exc``, which cost a connection, as :class:`DatabaseUnavailable` (its cause), to be kept and
    raised later."""
    if isinstance(exc, DatabaseUnavailable):
        return exc
    wrapped = DatabaseUnavailable(str(exc))
    wrapped.__cause__ = exc
    return wrapped


def wrap(exc: BaseException) -> BaseException:
    """The transport's exception for a driver error (raise it ``from exc``); ``exc`` itself when it
    is one of ours already or not a driver error."""
    if isinstance(exc, DatabaseError) or not isinstance(exc, psycopg2.Error):
        return exc
    if isinstance(exc, psycopg2.pool.PoolError):
        return PoolExhausted(str(exc))
    unavailable = as_unavailable(exc)
    if unavailable is not None:
        return unavailable
    code = exc.pgcode
    kind = _BY_STATE.get(code or "") or _BY_CLASS.get((code or "")[:2])
    if kind is None:
        kind = next((ours for family, ours in _BY_FAMILY if isinstance(exc, family)), StatementError)
    wrapped = kind(str(exc))
    wrapped.sqlstate = code
    diag = getattr(exc, "diag", None)
    if diag is not None:
        wrapped.constraint = diag.constraint_name
        wrapped.message_primary = diag.message_primary
    return wrapped
