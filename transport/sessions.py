"""Autocommit checkouts for the transport's single-statement hot paths (and a transaction for a
batch that takes several).

Every pg-boss operation on the publish, fetch and settle paths is ONE statement (the CTEs do the
rest), so it needs no BEGIN/COMMIT round trips: on an autocommit connection the statement commits
as it ends, one round trip instead of three. The fetch/settle checkouts also run with
``synchronous_commit`` off (:data:`ASYNC_COMMIT`: a lost claim or completion only means the job runs
again), while publishes keep durable commits.

The connections are the process's pooled ones (:mod:`transport.hub`): a thread holds one only for
the statement, so a worker's threads (event loop, fetcher, settler, heartbeat) share a couple of
connections instead of holding one each.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from transport import sql
from transport.db import Connection, Database, SessionMode

#: The consumer's fetch/settle mode: commits do not wait for the WAL flush.
ASYNC_COMMIT = SessionMode(
    "async-commit",
    enter=(sql.raw_queries()["session_async_commit"],),
    leave=(sql.raw_queries()["session_sync_commit"],),
)


class Sessions:
    def __init__(self, db: Database, mode: SessionMode | None = None) -> None:
        self.db = db
        self.mode = mode

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
