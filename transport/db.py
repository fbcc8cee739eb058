"""psycopg2 connections for the pg-boss core: a fork-safe pool and transactions that can join a caller's.

Celery's prefork pool forks after the parent may have connected, and closing (or merely finalising)
an inherited libpq connection in a child sends Terminate on the parent's socket. So a pool remembers
the pid that built it, and a process that is not that pid lets the inherited connections go without
touching their sessions (:func:`forget_inherited`) and opens its own.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import select
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg2
import psycopg2.extensions
import psycopg2.extras

from transport.errors import DatabaseUnavailable, InvalidDatabaseURL, PoolExhausted, as_unavailable
from transport.redact import redact

Connection = psycopg2.extensions.connection
_IDLE = psycopg2.extensions.TRANSACTION_STATUS_IDLE

#: Idle connections a pool keeps for reuse; beyond the first they close once unused for IDLE_SECONDS
#: (a quiet process shrinks to one pooled connection).
KEEP_IDLE = 2
IDLE_SECONDS = 30.0
#: More idle connections than KEEP_IDLE (left by a burst) close once unused for this long: a
#: connection still needed every few seconds is kept rather than closed and opened again.
SURPLUS_SECONDS = 5.0
#: Seconds a checkout that cannot open a connection waits for one of the process's own to come back.
RETURN_WAIT = 1.0

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


@dataclass(frozen=True)
class SessionMode:
    """Session state a caller wants on its pooled connection (``SET`` statements), and how it is
    undone for the next caller who wants another. A pooled connection remembers its mode, and a
    checkout prefers an idle connection already in the wanted mode, so the switch is rare."""

    name: str
    enter: tuple[str, ...]
    leave: tuple[str, ...]


#: Inherited connections a forked child must never finalise (that would send Terminate on the parent's
#: session): kept here, their sockets already replaced by /dev/null (see :func:`forget_inherited`).
_INHERITED: list[Connection] = []


def run_session_statement(conn: Connection, statement: str) -> None:
    """A session-control statement on ``conn`` outside a checkout's mode switch (a durable publish's
    wait for the WAL flush, :meth:`transport.sessions.Sessions.durable`); its text lives in sql/."""
    with conn.cursor() as cur:
        cur.execute(statement)


def forget_inherited(conn: Connection | None) -> None:
    """In a forked child: let go of a connection the parent owns without touching its session. The
    child's copy of the socket is replaced by /dev/null (the parent's socket stays the parent's, and
    whatever the object might still write goes nowhere) and the object is never finalised."""
    if conn is None:
        return
    with contextlib.suppress(Exception):
        if not conn.closed:
            devnull = os.open(os.devnull, os.O_RDWR)
            try:
                os.dup2(devnull, conn.fileno())
            finally:
                os.close(devnull)
    _INHERITED.append(conn)


def open_connection(dsn: str, application_name: str, *, autocommit: bool = False) -> Connection:
    conn = psycopg2.connect(
        dsn,
        application_name=application_name,
        keepalives=1,
        keepalives_idle=30,
        keepalives_interval=10,
        keepalives_count=3,
    )
    conn.autocommit = autocommit
    return conn


class Database:
    """A small thread-safe pool of psycopg2 connections to one database.

    Connections open lazily, at most ``max_connections`` at once (threads wait for a free one), and
    stay open once returned while they are needed: beyond ``keep_idle`` idle ones they close after
    SURPLUS_SECONDS unused, beyond the first after IDLE_SECONDS. A checkout may ask for autocommit
    (a single statement commits as it ends: one round trip) and for a :class:`SessionMode`.
    """

    #: Cursor class of :meth:`cursor` (a subclass may prepare hot statements, see transport.prepared).
    cursor_factory: type[psycopg2.extras.RealDictCursor] = psycopg2.extras.RealDictCursor
    #: Cursor class of :meth:`cursor` with ``tuples=True`` (rows as tuples: the fetch's hot path).
    tuple_cursor_factory: type[psycopg2.extensions.cursor] = psycopg2.extensions.cursor
    #: Session settings of this pool's connections (see :data:`SESSION_SETTINGS`).
    session_settings: dict[str, str] = SESSION_SETTINGS

    def __init__(
        self,
        url: str,
        *,
        max_connections: int = 8,
        application_name: str = "zeke",
        keep_idle: int = KEEP_IDLE,
    ) -> None:
        try:
            self.dsn = with_session_settings(dsn_from_url(url), self.session_settings)
        except psycopg2.Error as exc:  # libpq quotes the malformed part of a DSN, the password among it
            raise InvalidDatabaseURL(redact(str(exc), url)) from None
        self.max_connections = max_connections
        self.application_name = application_name
        self.keep_idle = min(keep_idle, max_connections)
        self._lock = threading.Lock()
        #: Notified whenever a connection is given back (a thread may be waiting for one).
        self._returned = threading.Condition(self._lock)
        self._healthy_returns = 0
        self._pid = os.getpid()
        #: Idle connections, most recently returned last, each with its session mode and when it
        #: was returned (monotonic).
        self._idle: list[tuple[Connection, SessionMode | None, float]] = []
        #: Connections checked out -> (their mode, the pool generation they belong to).
        self._out: dict[Connection, tuple[SessionMode | None, int]] = {}
        #: Bumped by :meth:`close`: connections out at that moment are closed when returned.
        self._generation = 0
        self._slots = threading.Semaphore(max_connections)
        #: The timer that closes connections left idle too long (while more than one is idle).
        self._reaper: threading.Timer | None = None
        self._reap_due = math.inf

    #: Seconds a thread waits for a pooled connection before giving up.
    checkout_timeout = 30.0

    def connect(self, *, autocommit: bool = False) -> Connection:
        """A new connection outside the pool (the LISTEN socket, tests);
        :class:`~transport.errors.DatabaseUnavailable` when it cannot be opened."""
        try:
            return open_connection(self.dsn, self.application_name, autocommit=autocommit)
        except CONNECTION_ERRORS as exc:
            raise DatabaseUnavailable(str(exc)) from exc

    def ensure_capacity(self, max_connections: int) -> None:
        """Let up to ``max_connections`` be open at once (a part sharing the pool wants more)."""
        with self._lock:
            for _ in range(max_connections - self.max_connections):
                self._slots.release()  # one more slot each
            self.max_connections = max(self.max_connections, max_connections)

    @property
    def open_count(self) -> int:
        """Connections of this process in the pool, idle or checked out."""
        with self._lock:
            return len(self._idle) + len(self._out) if self._pid == os.getpid() else 0

    def after_fork(self) -> None:
        """In a forked child: forget the parent's connections (never closing them) and start afresh.
        Called by the hub's fork handler; checkouts also notice a new pid by themselves."""
        for conn, _, _ in self._idle:
            forget_inherited(conn)
        for conn in self._out:
            forget_inherited(conn)
        self._idle, self._out = [], {}
        self._reaper, self._reap_due = None, math.inf  # the parent's timer thread is not in the child
        self._lock = threading.Lock()  # another thread of the parent may have held it at fork
        self._returned = threading.Condition(self._lock)
        self._slots = threading.Semaphore(self.max_connections)
        self._pid = os.getpid()

    def _take(self, mode: SessionMode | None) -> tuple[Connection | None, SessionMode | None, int]:
        """An idle connection (one in ``mode`` if any, the most recently used first), or None."""
        with self._lock:
            if self._pid != os.getpid():
                self.after_fork()
            generation = self._generation
            for i in range(len(self._idle) - 1, -1, -1):
                if self._idle[i][1] == mode:
                    conn, current, _ = self._idle.pop(i)
                    return conn, current, generation
            if self._idle:
                conn, current, _ = self._idle.pop()
                return conn, current, generation
            return None, None, generation

    def _checkout(self, mode: SessionMode | None, autocommit: bool) -> Connection:
        deadline = time.monotonic() + self.checkout_timeout
        while True:
            conn, current, generation = self._take(mode)
            if conn is None:
                try:
                    conn, current = self.connect(), None
                except CONNECTION_ERRORS:
                    # A server that refuses new connections (out of max_connections, or restarting)
                    # may still serve the ones this process holds: wait for one of them.
                    if not self._wait_for_return(deadline):
                        raise
                    continue
            elif is_stale(conn):  # the server closed it meanwhile (a restart): never handed out
                with contextlib.suppress(Exception):
                    conn.close()
                continue
            with self._lock:
                self._out[conn] = (current, generation)
            try:
                if current != mode:
                    conn.autocommit = True
                    with conn.cursor() as cur:
                        for statement in (current.leave if current else ()) + (mode.enter if mode else ()):
                            cur.execute(statement)
                    with self._lock:
                        self._out[conn] = (mode, generation)
                conn.autocommit = autocommit
            except BaseException:
                self._give_back(conn, broken=True)
                raise
            return conn

    def _wait_for_return(self, deadline: float) -> bool:
        """Wait (briefly) until another thread gives back a healthy connection; False when none is
        out, none came back in time, or the deadline passed (a server that is down fails fast)."""
        with self._lock:
            if not self._out:
                return False
            returns = self._healthy_returns
            timeout = min(deadline - time.monotonic(), RETURN_WAIT)
            return timeout > 0 and self._returned.wait_for(lambda: self._healthy_returns > returns, timeout)

    def _give_back(self, conn: Connection, *, broken: bool) -> None:
        now = time.monotonic()
        unused: list[Connection] = []
        with self._lock:
            if self._pid != os.getpid():
                return  # checked out before a fork in a thread the child does not have
            mode, generation = self._out.pop(conn, (None, -1))
            if not broken and generation == self._generation:
                self._idle.append((conn, mode, now))
                self._healthy_returns += 1
                self._returned.notify_all()
            else:
                unused.append(conn)
            unused += self._expired(now)
        for old in unused:
            if not old.closed:
                with contextlib.suppress(Exception):
                    old.close()

    def _expired(self, now: float) -> list[Connection]:
        """Take out the idle connections left unused too long (the lock is held), and keep the timer
        running while more than one stays idle."""
        expired: list[Connection] = []
        kept: list[tuple[Connection, SessionMode | None, float]] = []
        due = math.inf
        for rank, entry in enumerate(reversed(self._idle)):  # rank 0: the newest, always kept
            limit = IDLE_SECONDS if rank < self.keep_idle else SURPLUS_SECONDS
            if rank > 0 and now - entry[2] >= limit:
                expired.append(entry[0])
            else:
                kept.append(entry)
                if rank > 0:
                    due = min(due, entry[2] + limit)
        self._idle = kept[::-1]
        if due < self._reap_due:  # sooner than the timer already set (or none is)
            if self._reaper is not None:
                self._reaper.cancel()
            self._reaper = threading.Timer(max(due - now, 0.0) + 0.05, self._reap)
            self._reaper.daemon = True
            self._reaper.start()
            self._reap_due = due
        return expired

    def _reap(self) -> None:
        with self._lock:
            if self._pid != os.getpid():
                return
            self._reaper, self._reap_due = None, math.inf
            expired = self._expired(time.monotonic())
        for conn in expired:
            with contextlib.suppress(Exception):
                conn.close()

    @contextlib.contextmanager
    def connection(
        self, *, autocommit: bool = False, mode: SessionMode | None = None
    ) -> Iterator[Connection]:
        """A pooled connection for the ``with`` block; returned (or closed, after a connection error)
        when it ends. An open transaction left on it is rolled back. A database that cannot be reached
        or is lost meanwhile, here or in the caller's block, is
        :class:`~transport.errors.DatabaseUnavailable`; other driver errors (a statement's) pass as
        they are."""
        if self._pid != os.getpid():
            self.after_fork()  # without the lock: the parent may have held it at fork
        slots = self._slots
        if not slots.acquire(timeout=self.checkout_timeout):
            raise PoolExhausted(
                f"no free database connection after {self.checkout_timeout:.0f} s "
                f"(pool of {self.max_connections}); raise max_connections or find the leak"
            )
        try:
            conn = self._checkout(mode, autocommit)
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
            try:
                if conn.closed:
                    broken = True
                elif not broken and conn.get_transaction_status() != _IDLE:
                    conn.rollback()
            except CONNECTION_ERRORS:
                broken = True
            self._give_back(conn, broken=broken)
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
        """Close this process's idle connections; those checked out are closed when returned. The
        pool stays usable (connections reopen on next use); a forked child closes nothing."""
        with self._lock:
            if self._pid != os.getpid():
                return
            idle, self._idle = self._idle, []
            self._generation += 1
        for conn, _, _ in idle:
            with contextlib.suppress(Exception):
                conn.close()
