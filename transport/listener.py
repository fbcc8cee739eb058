"""The LISTEN socket: one autocommit connection per consuming process that wakes the transport.

It listens on pg-boss's own insert channel (so jobs Node inserts wake Python workers) and on the
broker channel (broadcasts and ETA wake-ups). Its file descriptor goes on the worker's event loop;
blocking consumers ``select()`` on it.

libpq may already hold notifications read while another command ran on this connection (the LISTEN
itself), and then the socket is not readable any more: :meth:`Listener.pending` is checked before
every wait. Closing is pid-guarded so a forked child never sends Terminate on its parent's socket.
"""

from __future__ import annotations

import os
import select
from collections.abc import Sequence

import psycopg2.extensions

from transport.db import Database

#: (channel, payload)
Notice = tuple[str, str]


class Listener:
    def __init__(self, db: Database, channels: Sequence[str], listen_sql: str) -> None:
        self.db = db
        self.channels = tuple(channels)
        self.listen_sql = listen_sql
        self._conn: psycopg2.extensions.connection | None = None
        self._pid = 0

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.closed and self._pid == os.getpid()

    def connect(self) -> None:
        self.close()
        conn = self.db.connect(autocommit=True)
        try:
            with conn.cursor() as cur:
                for channel in self.channels:
                    quoted = psycopg2.extensions.quote_ident(channel, conn)
                    cur.execute(self.listen_sql, {"channel": psycopg2.extensions.AsIs(quoted)})
        except BaseException:
            conn.close()
            raise
        self._conn, self._pid = conn, os.getpid()

    def fileno(self) -> int:
        assert self._conn is not None
        return self._conn.fileno()

    def pending(self) -> bool:
        """Notifications libpq already buffered (the socket will not signal them again)."""
        return bool(self._conn is not None and self._conn.notifies)

    def poll(self) -> list[Notice]:
        """Read what the socket has and return every notification received so far.

        Raises psycopg2.OperationalError when the server went away.
        """
        conn = self._conn
        if conn is None:
            return []
        conn.poll()
        if not conn.notifies:
            return []
        notices = [(n.channel, n.payload) for n in conn.notifies]
        conn.notifies.clear()
        return notices

    def wait(self, timeout: float | None) -> bool:
        """Block until a notification may be there (or ``timeout`` seconds); True if readable."""
        if self.pending():
            return True
        readable, _, _ = select.select([self.fileno()], [], [], timeout)
        return bool(readable)

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and self._pid == os.getpid() and not conn.closed:
            conn.close()
