"""Server-side prepared statements for the hot pg-boss statements.

Planning pg-boss's statements costs more than running them: the fetch CTE plans in about 1 ms and
runs in 0.5 ms, a one-job insert plans in 0.8 ms and runs in 0.4 ms. On the worker's event loop and
on the publish path that planning is most of a task's latency, so statements registered here are
``PREPARE``d once per server session and then ``EXECUTE``d.

Only registered statement texts are prepared; everything else runs as usual. psycopg2 has no
protocol-level prepare, so this is SQL-level ``PREPARE name AS ...`` with ``%(name)s`` parameters
turned into ``$n``; values are still adapted by psycopg2 into the ``EXECUTE``. A prepared
statement survives rollbacks, and each connection remembers what it prepared (a new connection,
e.g. after a server restart, prepares again). Not for PgBouncer in transaction mode, which the
transport's LISTEN socket rules out anyway.
"""

from __future__ import annotations

import hashlib
import re
import threading
import weakref
from collections.abc import Iterable, Mapping
from typing import Any

import psycopg2.extensions
import psycopg2.extras

from transport.db import SESSION_SETTINGS, Database

_PARAM = re.compile(r"%\((\w+)\)s")

#: statement text -> (statement name, text with $n placeholders, parameter names in $n order)
_registry: dict[str, tuple[str, str, tuple[str, ...]]] = {}
#: connection -> names prepared in its server session
_prepared: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def register(statements: Iterable[str]) -> None:
    """Prepare these statement texts (exactly as executed) from now on."""
    for sql in statements:
        if sql not in _registry:
            text, names = positional(sql)
            name = "zeke_" + hashlib.sha1(sql.encode()).hexdigest()[:20]
            with _lock:
                _registry[sql] = (name, text, names)


def positional(sql: str) -> tuple[str, tuple[str, ...]]:
    """``%(name)s`` parameters as ``$n`` (a name used twice keeps one number), and the names in order."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    return _PARAM.sub(number, sql).replace("%%", "%"), tuple(names)


class _Preparing:
    """Runs registered statements as prepared ones (mixed into a psycopg2 cursor class)."""

    connection: Any

    def execute(self, query: Any, vars: Any = None) -> Any:
        entry = _registry.get(query) if isinstance(query, str) and isinstance(vars, Mapping) else None
        if entry is None:
            return super().execute(query, vars)
        name, text, _ = entry
        with _lock:
            done = _prepared.setdefault(self.connection, set())
        if name not in done:
            super().execute(f"PREPARE {name} AS {text}")
            done.add(name)
        return super().execute(*execute_statement(query, vars))


class PreparingCursor(_Preparing, psycopg2.extras.RealDictCursor):
    """A dict cursor that runs registered statements as prepared ones."""


class PreparingTupleCursor(_Preparing, psycopg2.extensions.cursor):
    """The same with rows as tuples, for the hot path that reads many rows of one known shape (the
    fetch): filling a dict row costs a Python call per column, about 0.1 ms per fetch of one job."""


def execute_statement(sql: str, params: Mapping[str, Any]) -> tuple[str, list[Any]]:
    """The ``EXECUTE`` of a registered statement (prepared on the connection), and its arguments."""
    name, _, names = _registry[sql]
    if not names:
        return f"EXECUTE {name}", []
    placeholders = ", ".join(["%s"] * len(names))
    return f"EXECUTE {name} ({placeholders})", [_argument(params[n]) for n in names]


def _argument(value: Any) -> Any:
    """psycopg2 sends a list as ``ARRAY[...]``, typed ``text[]``, which an ``EXECUTE`` cannot coerce to
    the prepared ``uuid[]``; an array literal string stays untyped and coerces like any literal."""
    if isinstance(value, list | tuple) and all(
        v is None or (isinstance(v, str | int | float) and not isinstance(v, bool)) for v in value
    ):
        return "{" + ",".join("NULL" if v is None else _element(v) for v in value) + "}"
    return value


def _element(value: str | int | float) -> str:
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


class PreparedDatabase(Database):
    """A :class:`~transport.db.Database` whose cursors prepare registered statements, planned once:
    generic plans, since re-planning on every call is what preparing avoids (PostgreSQL's ``auto``
    mode kept re-planning the fetch, whose generic cost estimate is the higher one). A registered
    statement must have a generic plan that stays an index lookup however the table grows after it
    was planned (tests/integration/transport/test_prepared.py checks every one)."""

    cursor_factory = PreparingCursor
    tuple_cursor_factory = PreparingTupleCursor
    session_settings = {**SESSION_SETTINGS, "plan_cache_mode": "force_generic_plan"}
