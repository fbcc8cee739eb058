"""The process's LISTEN connection: one per database (owned by its :class:`~transport.hub.Hub`), read
by one daemon thread that hands every notification to the subscribers of its channel.

The broker (pg-boss's insert channel and the broker channel), the result backend and the API's SSE
streams (the state channel) all subscribe here: ``subscribe(channels, on_notice, on_listen=...,
on_lost=...)``. Callbacks run on the listener thread and must not block: they queue what they got and
wake their own loop (a Kombu hub, an asyncio loop, a waiting thread).

The thread opens the connection when the first subscriber comes and closes it when the last one
leaves. When the connection is lost it tells every subscriber (``on_lost``), reconnects with backoff
(one log line per outage, :mod:`transport.outage`), LISTENs every channel again and calls
``on_listen``: what was notified in between is lost, so subscribers re-read then.

A subscriber may also ask the connection to hold an advisory lock shared while it has subscribers
(:meth:`Listener.hold`): the state channel's ``active`` notices are sent only while some session
holds ``JobManager.state_presence`` (transport/sql/job.sql, ``_claim_next``). Holds are taken with a
non-blocking try, again every :attr:`Listener.hold_retry` seconds while a claim holds the lock
alone (the notices of this connection are dispatched meanwhile), and again after a reconnect before
``on_listen`` is called, so what a subscriber re-reads then reflects every claim that did not tell it.

libpq may hold notifications it read while another command ran on the connection (a LISTEN), and
then the socket does not signal them again: they are dispatched before every wait. In a forked child
the parent's connection, thread and subscribers are forgotten (:meth:`Listener.after_fork`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import threading
from collections.abc import Callable, Iterable

import psycopg2
import psycopg2.extensions

from transport import pids, sql
from transport.db import CONNECTION_ERRORS, Connection, Database, forget_inherited
from transport.errors import DatabaseUnavailable, lost
from transport.outage import Backoff, Outage

logger = logging.getLogger(__name__)

NoticeCallback = Callable[[str, str], None]


class Subscription:
    """Channels one part of the process listens on, and what to call for their notifications."""

    def __init__(
        self,
        listener: Listener,
        channels: Iterable[str],
        on_notice: NoticeCallback,
        on_listen: Callable[[], None] | None,
        on_lost: Callable[[BaseException], None] | None,
    ) -> None:
        self.listener = listener
        self.channels = frozenset(channels)
        self.on_notice = on_notice
        self.on_listen = on_listen
        self.on_lost = on_lost
        self.closed = False

    @property
    def listening(self) -> bool:
        return self.listener.listens_to(self.channels)

    def wait(self, timeout: float) -> None:
        """Return once these channels are listened on; raise the connection error of an attempt that
        failed meanwhile (an OperationalError after ``timeout`` seconds)."""
        self.listener.wait_for(self, timeout)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.listener.unsubscribe(self)


class Listener:
    #: Seconds between reconnection attempts: doubling from ``first`` up to ``cap``, with jitter.
    backoff_first = 0.5
    backoff_cap = 10.0
    #: Seconds between tries of a hold whose lock a claim holds alone (it is released at its commit).
    hold_retry = 0.005

    def __init__(self, db: Database) -> None:
        self.db = db
        self._outage = Outage(logger, "LISTEN connection")
        self._reset()

    def _reset(self) -> None:
        self._lock = threading.Condition()
        self._subs: list[Subscription] = []
        self._conn: Connection | None = None
        #: Channels LISTENed on the current connection.
        self._listened: set[str] = set()
        #: Subscribers told (``on_listen``) that the current connection listens for them.
        self._announced: set[Subscription] = set()
        #: Advisory lock key -> holds asked for (hold/release); the keys the connection holds now.
        self._holds: dict[int, int] = {}
        self._held: set[int] = set()
        self._thread: threading.Thread | None = None
        self._pid = pids.current()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        #: Failed connection attempts so far, and the latest error.
        self._failures = 0
        self._error: BaseException | None = None
        self._backoff = Backoff(self.backoff_first, self.backoff_cap)

    def after_fork(self) -> None:
        """In a forked child: the connection, thread and subscribers are the parent's."""
        forget_inherited(self._conn)
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._reset()

    def _check_pid(self) -> None:
        if self._pid != pids.current():
            self.after_fork()

    # -- subscribers ------------------------------------------------------------------------------

    def subscribe(
        self,
        channels: Iterable[str],
        on_notice: NoticeCallback,
        *,
        on_listen: Callable[[], None] | None = None,
        on_lost: Callable[[BaseException], None] | None = None,
    ) -> Subscription:
        self._check_pid()
        sub = Subscription(self, channels, on_notice, on_listen, on_lost)
        with self._lock:
            self._subs.append(sub)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="pgboss-listen", daemon=True)
                self._thread.start()
        self._wake()
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        if self._pid != pids.current():
            return
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)
        self._wake()

    def hold(self, key: int) -> None:
        """Hold advisory lock ``key`` shared on the LISTEN connection until as many :meth:`release`
        calls; taken by the thread soon after (this does not wait), and only while someone subscribes."""
        self._check_pid()
        with self._lock:
            self._holds[key] = self._holds.get(key, 0) + 1
        self._wake()

    def release(self, key: int) -> None:
        if self._pid != pids.current():
            return
        with self._lock:
            count = self._holds.get(key, 0) - 1
            if count > 0:
                self._holds[key] = count
            else:
                self._holds.pop(key, None)
        self._wake()

    def holds(self, key: int) -> bool:
        """Whether the connection holds ``key`` now."""
        with self._lock:
            return self.connected and key in self._held

    @property
    def subscribers(self) -> int:
        with self._lock:
            return len(self._subs) if self._pid == pids.current() else 0

    @property
    def connected(self) -> bool:
        return self._conn is not None and self._pid == pids.current()

    def listens_to(self, channels: frozenset[str]) -> bool:
        return self.connected and channels <= self._listened

    def wait_for(self, sub: Subscription, timeout: float) -> None:
        with self._lock:
            failures = self._failures
            if not self._lock.wait_for(
                lambda: self.listens_to(sub.channels) or self._failures > failures, timeout
            ):
                raise DatabaseUnavailable(f"no LISTEN connection within {timeout:g} s")
            if not self.listens_to(sub.channels):
                assert self._error is not None
                raise self._error

    def close(self) -> None:
        """Drop every subscriber: the thread closes the connection and ends."""
        if self._pid != pids.current():
            return
        with self._lock:
            self._subs.clear()
        self._wake()

    # -- the thread -------------------------------------------------------------------------------

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_w, b"\0")

    def _drain_wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            while os.read(self._wake_r, 4096):
                pass

    def _pause(self, seconds: float) -> None:
        """Sleep between attempts; a subscriber coming or going ends it early."""
        select.select([self._wake_r], [], [], seconds)
        self._drain_wake()

    def _run(self) -> None:
        try:
            while self._step():
                pass
        except BaseException:
            logger.exception("LISTEN thread failed")
            with self._lock:
                self._thread = None
            self._disconnect()
            raise

    def _step(self) -> bool:
        """One round: connect or LISTEN what is new, dispatch, wait. False once nobody subscribes."""
        with self._lock:
            subs = list(self._subs)
        if not subs:
            self._disconnect()
            with self._lock:
                if not self._subs:
                    self._thread = None
                    return False
            return True
        wanted = set().union(*(s.channels for s in subs))
        try:
            if self._conn is None:
                self._connect(wanted)
            elif not wanted <= self._listened:
                self._listen(wanted - self._listened)
            pending = self._apply_holds()
        except CONNECTION_ERRORS as exc:
            self._lost(exc, subs)
            return True
        if not pending:  # a re-read in on_listen must come after the holds
            for sub in subs:
                if sub.on_listen is not None and sub not in self._announced:
                    self._announced.add(sub)
                    _call(sub.on_listen)
        try:
            self._dispatch(subs)
            conn = self._conn
            assert conn is not None
            timeout = self.hold_retry if pending else None
            readable, _, _ = select.select([conn, self._wake_r], [], [], timeout)
            if self._wake_r in readable:
                self._drain_wake()
            if conn in readable:
                conn.poll()  # raises once the server has gone away
            self._dispatch(subs)
        except CONNECTION_ERRORS as exc:
            self._lost(exc, subs)
        return True

    def _connect(self, channels: set[str]) -> None:
        conn = self.db.connect(autocommit=True)
        self._conn = conn
        self._announced = set()
        self._apply_holds()  # first: the session's last statement stays its LISTEN (pg_stat_activity)
        self._listen(channels)
        self._outage.succeeded()
        self._backoff.reset()

    def _listen(self, channels: set[str]) -> None:
        conn = self._conn
        assert conn is not None
        statement = sql.raw_queries()["listen"]
        with conn.cursor() as cur:
            for channel in sorted(channels):
                quoted = psycopg2.extensions.quote_ident(channel, conn)
                cur.execute(statement, {"channel": psycopg2.extensions.AsIs(quoted)})
        with self._lock:
            self._listened |= channels
            self._lock.notify_all()

    def _apply_holds(self) -> bool:
        """Take the holds asked for and drop the ones released; True while one could not be taken."""
        with self._lock:
            wanted = set(self._holds)
            take, drop = wanted - self._held, self._held - wanted
        if not take and not drop:
            return False
        conn = self._conn
        assert conn is not None
        queries = sql.raw_queries()
        taken: set[int] = set()
        with conn.cursor() as cur:
            for key in drop:
                cur.execute(queries["release_presence"], {"key": key})
            for key in take:
                cur.execute(queries["try_presence"], {"key": key})
                row = cur.fetchone()
                if row is not None and row[0]:
                    taken.add(key)
        with self._lock:
            self._held = (self._held - drop) | taken
            return bool(take - taken)

    def _dispatch(self, subs: list[Subscription]) -> None:
        conn = self._conn
        if conn is None or not conn.notifies:
            return
        notices = [(n.channel, n.payload) for n in conn.notifies]
        conn.notifies.clear()
        for channel, payload in notices:
            for sub in subs:
                if channel in sub.channels and not sub.closed:
                    _call(sub.on_notice, channel, payload)

    def _lost(self, exc: BaseException, subs: list[Subscription]) -> None:
        was_connected = self._conn is not None
        self._disconnect()
        self._outage.failed(exc)
        with self._lock:
            self._failures += 1
            self._error = lost(exc)
            self._lock.notify_all()
        if was_connected:
            for sub in subs:
                if sub.on_lost is not None:
                    _call(sub.on_lost, exc)
        self._pause(self._backoff.next())

    def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        with self._lock:
            self._listened = set()
            self._held = set()  # session locks end with the session
        if conn is not None and self._pid == pids.current():
            with contextlib.suppress(Exception):
                conn.close()


def _call(callback: Callable[..., None], *args: object) -> None:
    try:
        callback(*args)
    except Exception:  # one subscriber's bug must not end the others' notifications
        logger.exception("LISTEN subscriber callback failed")
