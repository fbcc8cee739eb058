"""Who is connected to a test database, from ``pg_stat_activity`` (the connection budget tests)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import psycopg2
import psycopg2.extensions

from transport.db import dsn_from_url

#: The ``application_name`` of the counting test's own connections, left out of the counts.
OURS = "zeke-budget-test"


def sessions(url: str) -> list[tuple[str, str]]:
    """(application_name, last query) of every client session on the database but ours."""
    dsn = dsn_from_url(url)
    dbname = psycopg2.extensions.parse_dsn(dsn)["dbname"]
    conn = psycopg2.connect(dsn, dbname="postgres", application_name=OURS)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT application_name, query FROM pg_stat_activity "
                "WHERE datname = %s AND application_name <> %s AND backend_type = 'client backend'",
                (dbname, OURS),
            )
            return list(cur.fetchall())
    finally:
        conn.close()


def is_listen(query: str) -> bool:
    """Whether a session's last statement was a LISTEN (the statement may follow a comment)."""
    return any(line.strip().upper().startswith("LISTEN ") for line in query.splitlines())


def most_sessions(url: str, seconds: float) -> tuple[int, int]:
    """The most sessions, and the most LISTEN sessions, seen while sampling for ``seconds``."""
    most = listens = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        rows = sessions(url)
        most = max(most, len(rows))
        listens = max(listens, sum(1 for _, query in rows if is_listen(query)))
        time.sleep(0.1)
    return most, listens


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout}s")
        time.sleep(0.1)
