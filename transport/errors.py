"""Database failures as the transport's own exceptions, raised where the transport meets the driver
(:class:`transport.db.Database`), so code outside the transport never names psycopg2.

Each also subclasses the psycopg2 class it stands for: ``except psycopg2.OperationalError`` (kombu's
``connection_errors``, :data:`transport.db.CONNECTION_ERRORS`) still catches it. The driver's
exception is the ``__cause__``.
"""

from __future__ import annotations

import psycopg2


class DatabaseError(Exception):
    """The database could not be used."""


class DatabaseUnavailable(DatabaseError, psycopg2.OperationalError):
    """The database cannot be reached, or the connection was lost (a restart, a refused or dropped
    connection, too many clients): worth trying again later."""


class InvalidDatabaseURL(DatabaseError, psycopg2.ProgrammingError):
    """The database URL cannot be parsed (libpq's message, password redacted)."""


#: SQLSTATEs meaning the server is away or will not take the session, not that a statement failed:
#: admin/crash shutdown, cannot connect now, too many connections. Class 08 (connection exception)
#: is matched as a class.
_UNAVAILABLE_STATES = frozenset({"57P01", "57P02", "57P03", "53300"})


def is_unavailable(exc: BaseException) -> bool:
    """Whether a driver error means the database (or the connection to it) is away. libpq's own
    failures (refused, closed unexpectedly, timeouts) carry no SQLSTATE."""
    if isinstance(exc, psycopg2.InterfaceError):
        return True
    if not isinstance(exc, psycopg2.OperationalError):
        return False
    code = exc.pgcode
    return code is None or code.startswith("08") or code in _UNAVAILABLE_STATES


def as_unavailable(exc: BaseException) -> DatabaseUnavailable | None:
    """A driver error meaning the database is away as :class:`DatabaseUnavailable` (same message;
    raise it ``from exc``), or None: any other error, or one that is a DatabaseUnavailable already."""
    if isinstance(exc, DatabaseUnavailable) or not is_unavailable(exc):
        return None
    return DatabaseUnavailable(str(exc))
