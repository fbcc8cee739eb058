"""Autocommit checkouts for the transport's single-statement hot paths (and a transaction for a
batch that takes several).

Every pg-boss operation on the publish, fetch and settle paths is ONE statement (the CTEs do the
rest), so it needs no BEGIN/COMMIT round trips: on an autocommit connection the statement commits
as it ends, one round trip instead of three. The fetch/settle checkouts also run with
``synchronous_commit`` off (:data:`ASYNC_COMMIT`: a lost claim or completion only means the job runs
again). So do publishes, which then wait for the flush in a second, empty commit when they are
durable (:meth:`Sessions.durable`): the insert's NOTIFY goes out before the flush, not after it.

The connections are the process's pooled ones (:mod:`transport.hub`): a thread holds one only for
the statement, so a worker's threads (event loop, fetcher, settler, heartbeat) share a couple of
connections instead of holding one each.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from transport import sql
from transport.db import Connection, Database, SessionMode, run_session_statement

#: The consumer's fetch/settle mode: commits do not wait for the WAL flush.
ASYNC_COMMIT = SessionMode(
    "async-commit",
    enter=(sql.raw_queries()["session_async_commit"],),
    leave=(sql.raw_queries()["session_sync_commit"],),
)


#: See :meth:`Sessions.durable`.
FLUSH_COMMITS = sql.raw_queries()["flush_commits"]
DEFAULT_COMMIT = sql.raw_queries()["local_default_commit"]


class Sessions:
    def __init__(self, db: Database, mode: SessionMode | None = None, *, flush: bool = False) -> None:
        self.db = db
        self.mode = mode
        #: Whether :meth:`durable` waits (durable publishes on asynchronous-commit sessions).
        self.flushes = flush

    def durable(self, conn: Connection) -> None:
        """When these sessions flush: on an autocommit ``conn``, return once its commits so far are
        on disk; in a transaction, make its commit wait for the flush (call it before the commit).

        A durable publish commits asynchronously, then waits here: its NOTIFY goes out at the
        commit, so a worker starts claiming the job while the WAL is being flushed, not after. The
        publish still returns only once its job is durable; a worker may see the job a flush
        earlier (a crash in between loses the job and fails the publish)."""
        if self.flushes:
            run_session_statement(conn, FLUSH_COMMITS if conn.autocommit else DEFAULT_COMMIT)

    @contextlib.contextmanager
    def connection(self) -> Iterator[Connection]:
        """An autocommit connection of the pool for the ``with`` block (dropped after a connection
        error, replaced when the server has closed it)."""
        with self.db.connection(autocommit=True, mode=self.mode) as conn:
            yield conn

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A connection of the pool in one transaction for the ``with`` block, in this session's mode:
        the caller commits; whatever it left uncommitted is rolled back when the block ends."""
        with self.db.connection(autocommit=False, mode=self.mode) as conn:
            yield conn
