"""psycopg2 connections for the pg-boss core: a fork-safe pool and transactions that can join a caller's.

Celery's prefork pool forks after the parent may have connected, and closing an inherited libpq
connection in a child sends Terminate on the parent's socket. So a pool remembers the pid that built
it, and a process that is not that pid silently drops the inherited pool instead of closing it.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import threading
from collections.abc import Iterator
from typing import Any

import psycopg2
import psycopg2.extensions
import psycopg2.extras
import psycopg2.pool

from transport.errors import DatabaseUnavailable, InvalidDatabaseURL, as_unavailable
from transport.redact import redact

Connection = psycopg2.extensions.connection

#: Idle connections a pool keeps open for reuse (more are opened when needed, closed when returned).
KEEP_IDLE = 2

#: Errors after which a connection is not worth keeping and the operation may be retried elsewhere.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (psycopg2.OperationalError, psycopg2.InterfaceError)


def is_stale(conn: Connection) -> bool:
    """Whether an idle connection is certainly unusable: closed, or the server has written to it.

    A server that terminates a session (a restart, ``pg_terminate_backend``, ``idle_session_timeout``)
    sends a FATAL error and closes the socket, but libpq only notices on the next statement, which
    then fails. An idle session is sent nothing unasked (no LISTEN on pooled connections), so a
    readable socket means it is gone; checking costs one ``poll()`` and no round trip.
    """
    if conn.closed:
        return True
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN)
    return bool(poller.poll(0))


def dsn_from_url(url: str) -> str:
    """Accept ``pgboss://``, ``postgres://`` and ``postgresql://`` URLs (and SQLAlchemy's ``+driver``)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url  # a libpq keyword/value DSN
    if scheme.split("+")[0] not in {"pgboss", "postgres", "postgresql"}:
        raise ValueError(f"not a PostgreSQL URL: {scheme}://…")
    return "postgresql://" + rest


#: Session settings of every connection, unless the URL's ``options`` sets them: pg-boss statements
#: are short OLTP statements, and JIT compiling one (its cost estimate crosses ``jit_above_cost`` once
#: a queue holds a backlog, as the fetch's per-row singleton check does) took 450 ms per fetch.
SESSION_SETTINGS: dict[str, str] = {"jit": "off"}

_SETTING = re.compile(r"-c\s*([\w.]+)=")


def with_session_settings(dsn: str, settings: dict[str, str]) -> str:
    """The DSN with ``-c name=value`` session settings added to its ``options`` (the caller's win).
    Options given in the DSN replace libpq's ``PGOPTIONS``, so those are carried over first."""
    params = psycopg2.extensions.parse_dsn(dsn)
    options = params.get("options", os.environ.get("PGOPTIONS", ""))
    present = set(_SETTING.findall(options))
    added = " ".join(f"-c {name}={value}" for name, value in settings.items() if name not in present)
    if added:
        params["options"] = f"{options} {added}".strip()
    return psycopg2.extensions.make_dsn(**params)


def raw_connection(conn: Any) -> Connection:
    """The psycopg2 connection behind a psycopg2 connection, SQLAlchemy Connection or Session."""
    if isinstance(conn, Connection):
        return conn
    if hasattr(conn, "connection") and hasattr(conn, "execute"):  # SQLAlchemy Connection or Session
        # Session.connection() gives the Session's Connection; Connection.connection its DBAPI wrapper.
        sa_conn = conn.connection() if callable(conn.connection) else conn.connection
        if hasattr(sa_conn, "execute") and hasattr(sa_conn, "connection"):
            sa_conn = sa_conn.connection
        dbapi = getattr(sa_conn, "dbapi_connection", None) or getattr(sa_conn, "driver_connection", None)
        if isinstance(dbapi, Connection):
            return dbapi
    raise TypeError(f"cannot run pg-boss statements on {type(conn).__name__}; pass a psycopg2 connection")


class Database:
    """A small thread-safe pool of psycopg2 connections to one database."""

    #: Cursor class of :meth:`cursor` (a subclass may prepare hot statements, see transport.prepared).
    cursor_factory: type[psycopg2.extras.RealDictCursor] = psycopg2.extras.RealDictCursor
    #: Cursor class of :meth:`cursor` with ``tuples=True`` (rows as tuples: the fetch's hot path).
    tuple_cursor_factory: type[psycopg2.extensions.cursor] = psycopg2.extensions.cursor
    #: Session settings of this pool's connections (see :data:`SESSION_SETTINGS`).
    session_settings: dict[str, str] = SESSION_SETTINGS

    def __init__(self, url: str, *, max_connections: int = 8, application_name: str = "zeke") -> None:
        try:
            self.dsn = with_session_settings(dsn_from_url(url), self.session_settings)
        except psycopg2.Error as exc:  # libpq quotes the malformed part of a DSN, the password among it
            raise InvalidDatabaseURL(redact(str(exc), url)) from None
        self.max_connections = max_connections
        self.application_name = application_name
        self._lock = threading.Lock()
        self._pool: psycopg2.pool.ThreadedConnectionPool | None = None
        self._pid = os.getpid()
        # psycopg2's pool raises when exhausted; threads wait for a free connection instead.
        self._slots = threading.BoundedSemaphore(max_connections)

    #: Seconds a thread waits for a pooled connection before giving up.
    checkout_timeout = 30.0

    def connect(self, *, autocommit: bool = False) -> Connection:
        """A new connection outside the pool (LISTEN sockets, long-lived consumers);
        :class:`~transport.errors.DatabaseUnavailable` when it cannot be opened."""
        try:
            conn = psycopg2.connect(
                self.dsn,
                application_name=self.application_name,
                keepalives=1,
                keepalives_idle=30,
                keepalives_interval=10,
                keepalives_count=3,
            )
        except CONNECTION_ERRORS as exc:
            raise DatabaseUnavailable(str(exc)) from exc
        conn.autocommit = autocommit
        return conn

    def _get_pool(self) -> psycopg2.pool.ThreadedConnectionPool:
        with self._lock:
            if self._pid != os.getpid():
                # Inherited across fork: forget the parent's sockets without closing them.
                self._pool, self._pid = None, os.getpid()
                self._slots = threading.BoundedSemaphore(self.max_connections)
            if self._pool is None:
                self._pool = psycopg2.pool.ThreadedConnectionPool(
                    0,
                    self.max_connections,
                    self.dsn,
                    application_name=self.application_name,
                    keepalives=1,
                    keepalives_idle=30,
                    keepalives_interval=10,
                    keepalives_count=3,
                )
                # Open lazily (minconn 0 above) but keep a few idle ones: psycopg2 closes a returned
                # connection once minconn are pooled. Not all of them: servers have ~100 slots.
                self._pool.minconn = min(self.max_connections, KEEP_IDLE)
            return self._pool

    @contextlib.contextmanager
    def connection(self) -> Iterator[Connection]:
        """A pooled connection. A database that cannot be reached or is lost meanwhile, here or in
        the caller's block, is :class:`~transport.errors.DatabaseUnavailable`; other driver errors
        (a statement's) pass as they are."""
        pool = self._get_pool()
        slots = self._slots
        if not slots.acquire(timeout=self.checkout_timeout):
            raise psycopg2.pool.PoolError(
                f"no free database connection after {self.checkout_timeout:.0f} s "
                f"(pool of {self.max_connections}); raise max_connections or find the leak"
            )
        try:
            conn = pool.getconn()
            # Pooled connections the server has closed since (a restart) are replaced, not handed out.
            for _ in range(self.max_connections):
                if not is_stale(conn):
                    break
                pool.putconn(conn, close=True)
                conn = pool.getconn()
        except BaseException as exc:
            slots.release()
            if (wrapped := as_unavailable(exc)) is not None:
                raise wrapped from exc
            raise
        broken = False
        try:
            yield conn
        except CONNECTION_ERRORS as exc:
            broken = True
            if (wrapped := as_unavailable(exc)) is not None:
                raise wrapped from exc
            raise
        finally:
            if conn.closed:
                broken = True
            elif not broken and conn.get_transaction_status() != psycopg2.extensions.TRANSACTION_STATUS_IDLE:
                conn.rollback()
            if pool is self._pool:
                pool.putconn(conn, close=broken)
            slots.release()

    @contextlib.contextmanager
    def cursor(self, conn: Any = None, *, tuples: bool = False) -> Iterator[Any]:
        """A dict cursor (``tuples``: rows as tuples) in a transaction: the caller's (never committed
        here) or our own (committed)."""
        factory = self.tuple_cursor_factory if tuples else self.cursor_factory
        if conn is not None:
            with raw_connection(conn).cursor(cursor_factory=factory) as cur:
                yield cur
            return
        with self.connection() as own:
            try:
                with own.cursor(cursor_factory=factory) as cur:
                    yield cur
                own.commit()
            except BaseException:
                if not own.closed:
                    own.rollback()
                raise

    def close(self) -> None:
        with self._lock:
            if self._pool is not None and self._pid == os.getpid():
                self._pool.closeall()
            self._pool = None
