"""The one place named statements run: by name, on the pool or in a caller's transaction, with the
driver's errors turned into :mod:`transport.errors` at this boundary.

:class:`~transport.manager.JobManager` owns one (``manager.sql``); the repositories
(:mod:`transport.repositories`) and the manager's own methods call it, so no other module holds a
cursor. Statements come from the manager's rendered ``sql/*.sql`` (read before a connection is taken:
reading the schema takes a pooled connection of its own).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar

import psycopg2

from transport.db import Database
from transport.errors import wrap
from transport.prepared import register

Params = Mapping[str, Any] | None
T = TypeVar("T")


@contextlib.contextmanager
def wrapped_errors() -> Iterator[None]:
    """Driver errors raised in the block as the transport's own (the driver's is the cause)."""
    try:
        yield
    except psycopg2.Error as exc:
        ours = wrap(exc)
        if ours is exc:
            raise
        raise ours from exc


class Transaction:
    """Named statements on one cursor: one transaction (the caller's, or one the executor commits)."""

    def __init__(self, cursor: Any, statements: Mapping[str, str]) -> None:
        self._cursor = cursor
        self._statements = statements

    def rows(self, name: str, params: Params = None) -> list[Any]:
        """Every row the statement returns (none for a statement without a result)."""
        self._cursor.execute(self._statements[name], params)
        return _rows(self._cursor)

    def one(self, name: str, params: Params = None) -> Any:
        """The statement's first row, or None."""
        self._cursor.execute(self._statements[name], params)
        return _one(self._cursor)

    def run(self, name: str, params: Params = None) -> int:
        """Run a statement for its effect; the rows it touched (or returned)."""
        self._cursor.execute(self._statements[name], params)
        return _count(self._cursor)


def _rows(cursor: Any) -> list[Any]:
    return list(cursor.fetchall()) if cursor.description else []


def _one(cursor: Any) -> Any:
    return cursor.fetchone() if cursor.description else None


def _count(cursor: Any) -> int:
    return int(cursor.rowcount)


class Executor:
    """Runs the statements of ``statements()`` (the rendered ``sql/*.sql`` of one schema) on ``db``."""

    def __init__(self, db: Database, statements: Callable[[], Mapping[str, str]]) -> None:
        self.db = db
        self._statements = statements

    def prepare(self, names: Iterable[str]) -> None:
        """Run these statements as prepared ones from now on (where the pool prepares: a
        :class:`~transport.prepared.PreparedDatabase`)."""
        statements = self._statements()
        register(statements[name] for name in names)

    @contextlib.contextmanager
    def transaction(
        self, conn: Any = None, *, tuples: bool = False, async_commit: bool = False
    ) -> Iterator[Transaction]:
        """Several statements in one transaction: ``conn``'s (never committed here) or a pooled one
        committed when the block ends. ``tuples``: rows as tuples; ``async_commit``: this
        transaction's commit does not wait for the WAL flush."""
        with wrapped_errors():
            statements = self._statements()  # first: reading the schema takes a connection itself
            with self.db.cursor(conn, tuples=tuples) as cur:
                transaction = Transaction(cur, statements)
                if async_commit:
                    transaction.run("local_async_commit")
                yield transaction

    @contextlib.contextmanager
    def connection(self) -> Iterator[Any]:
        """A pooled connection for a transaction its caller commits (or rolls back) itself, passed
        as ``conn=`` to the statements that make it up; driver errors wrapped."""
        with wrapped_errors(), self.db.connection() as conn:
            yield conn

    # One statement, the common case: the cursor is its only context manager and the error mapping
    # an except clause, a few microseconds less per statement than transaction()'s nested generators.

    def _statement(self, name: str, params: Params, conn: Any, tuples: bool, result: Callable[[Any], T]) -> T:
        try:
            sql = self._statements()[name]  # first: reading the schema takes a connection itself
            with self.db.cursor(conn, tuples=tuples) as cur:
                cur.execute(sql, params)
                return result(cur)
        except psycopg2.Error as exc:
            ours = wrap(exc)
            if ours is exc:
                raise
            raise ours from exc

    def rows(self, name: str, params: Params = None, *, conn: Any = None, tuples: bool = False) -> list[Any]:
        return self._statement(name, params, conn, tuples, _rows)

    def one(self, name: str, params: Params = None, *, conn: Any = None) -> Any:
        return self._statement(name, params, conn, False, _one)

    def run(self, name: str, params: Params = None, *, conn: Any = None) -> int:
        return self._statement(name, params, conn, False, _count)

    def locked(
        self, schema: str, key: str, name: str, params: Params = None, *, conn: Any = None
    ) -> list[Any]:
        """A statement inside pg-boss's transaction-level advisory lock ``key``, in one transaction."""
        with self.transaction(conn) as tx:
            tx.run("advisory_lock", {"schema": schema, "key": key})
            return tx.rows(name, params)
