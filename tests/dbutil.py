"""Small helpers for test databases."""

from __future__ import annotations

import contextlib
import os
import select
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg2
import psycopg2.extensions

from bench.config import database_url
from transport.db import dsn_from_url


def with_database(url: str, dbname: str) -> str:
    """The same server URL pointing at another database."""
    return database_url(dsn_from_url(url), dbname)


def unique_name(prefix: str) -> str:
    """A database name no other run on the server uses: ``<prefix>_<pid>_<random>`` (63 bytes at most).

    Runs sharing a server (two checkouts, CI beside a developer) each create and drop only their own
    databases, so none can drop another's in the middle of its tests."""
    suffix = f"_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    return prefix[: 63 - len(suffix)] + suffix


@contextlib.contextmanager
def created_database(admin_url: str, name: str) -> Iterator[str]:
    """CREATE DATABASE ``name`` (failing if it exists: it is not ours), yield its URL, drop it after
    (kept when ZEKE_KEEP_TEST_DB is set, for a look at a failed run)."""
    admin_execute(admin_url, f'CREATE DATABASE "{name}"')
    try:
        yield with_database(admin_url, name)
    finally:
        if not os.environ.get("ZEKE_KEEP_TEST_DB"):
            admin_execute(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def own_database(admin_url: str, prefix: str) -> Iterator[str]:
    """A database of the caller's own on the test server, dropped afterwards."""
    with created_database(admin_url, unique_name(f"zeke_{prefix}")) as url:
        yield url


def admin_execute(url: str, statement: str) -> None:
    """Run one statement on its own autocommit connection (CREATE/DROP DATABASE)."""
    conn = psycopg2.connect(dsn_from_url(url))
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
    finally:
        conn.close()


def pgboss_url(db_url: str) -> str:
    """The ``pgboss://`` broker URL of a test database."""
    return "pgboss://" + db_url.split("://", 1)[1]


def listen(boss: Any, channel: str) -> psycopg2.extensions.connection:
    """A connection of its own LISTENing on ``channel`` (a JobManager's database)."""
    conn = boss.db.connect(autocommit=True)
    with conn.cursor() as cur:
        cur.execute(f'LISTEN "{channel}"')
    return conn


def drain(conn: psycopg2.extensions.connection, wait: float = 0.3) -> list[str]:
    """Notifications received within ``wait`` seconds of the last one."""
    got: list[str] = []
    while select.select([conn], [], [], wait)[0]:
        conn.poll()
        while conn.notifies:
            got.append(conn.notifies.pop(0).payload)
    return got
