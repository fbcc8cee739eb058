"""Fixtures kombu's integration mixins expect: ``connection`` and ``invalid_connection``."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import kombu
import pytest

import transport  # noqa: F401  (registers pgboss://)
from tests.dbutil import pgboss_url
from transport.db import Database


@pytest.fixture
def pgboss_schema(database: Database) -> Iterator[str]:
    """A pg-boss schema of its own for one test (queue names repeat across kombu's tests)."""
    schema = "k_" + uuid.uuid4().hex[:12]
    yield schema
    with database.cursor() as cur:
        cur.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        cur.execute(f'DROP SCHEMA IF EXISTS "{schema}_zeke" CASCADE')


@pytest.fixture(params=["bookkeeping-ack", "settle-on-ack"])
def transport_options(request: pytest.FixtureRequest, pgboss_schema: str) -> dict:
    """Both ack modes: Celery's (the result backend settles) and plain Kombu's (the ack settles)."""
    return {"schema": pgboss_schema, "settle_on_ack": request.param == "settle-on-ack", "supervise": False}


@pytest.fixture
def connection(db_url: str, transport_options: dict) -> Iterator[kombu.Connection]:
    conn = kombu.Connection(pgboss_url(db_url), transport_options=transport_options)
    yield conn
    conn.close()


@pytest.fixture
def invalid_connection() -> kombu.Connection:
    return kombu.Connection(
        "pgboss://postgres@127.0.0.1:1/nowhere", transport_options={"connect_timeout": 1, "max_retries": 1}
    )
