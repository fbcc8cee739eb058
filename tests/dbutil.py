"""Small helpers for test databases."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg2

from transport.db import dsn_from_url


def with_database(url: str, dbname: str) -> str:
    """The same server URL pointing at another database."""
    parts = urlsplit(dsn_from_url(url))
    return urlunsplit(parts._replace(path="/" + dbname))


@contextlib.contextmanager
def own_database(admin_url: str, prefix: str) -> Iterator[str]:
    """A database of the caller's own on the test server, dropped afterwards."""
    name = f"zeke_{prefix}_{uuid.uuid4().hex[:8]}"
    admin_execute(admin_url, f'CREATE DATABASE "{name}"')
    try:
        yield with_database(admin_url, name)
    finally:
        admin_execute(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


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
