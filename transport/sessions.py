"""Dedicated autocommit connections for the transport's single-statement hot paths.

Every pg-boss operation on the publish, fetch and settle paths is ONE statement (the CTEs do the
rest), so it needs no BEGIN/COMMIT round trips: on an autocommit connection the statement commits
as it ends, one round trip instead of three. The fetch/settle session also turns
``synchronous_commit`` off for itself (a lost claim or completion only means the job runs again),
while publishes keep durable commits.

One connection per thread (producers may be threaded), created lazily, replaced after a
connection error or once the server has closed it, and never touched by a forked child (the child
opens its own).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator, Sequence

from transport.db import CONNECTION_ERRORS, Connection, Database, is_stale


class Sessions:
    def __init__(self, db: Database, setup: Callable[[], Sequence[str]] = tuple) -> None:
        self.db = db
        #: Statements run once on each new connection (session settings).
        self.setup = setup
        self._local = threading.local()
        self._all: list[tuple[int, Connection]] = []
        self._lock = threading.Lock()

    def _connection(self) -> Connection:
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            if not is_stale(conn):
                return conn
            conn.close()  # the server closed it meanwhile (a restart): a new one, not a failed statement
        conn = self.db.connect(autocommit=True)
        with conn.cursor() as cur:
            for statement in self.setup():
                cur.execute(statement)
        self._local.conn, self._local.pid = conn, os.getpid()
        with self._lock:
            self._all.append((os.getpid(), conn))
        return conn

    @contextlib.contextmanager
    def connection(self) -> Iterator[Connection]:
        """This thread's connection; dropped (and reopened next time) after a connection error."""
        conn = self._connection()
        try:
            yield conn
        except CONNECTION_ERRORS:
            self._local.conn = None
            if not conn.closed:
                conn.close()
            raise

    def close(self) -> None:
        with self._lock:
            owned, self._all = self._all, []
        for pid, conn in owned:
            if pid == os.getpid() and not conn.closed:
                conn.close()
        self._local = threading.local()
