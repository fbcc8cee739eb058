"""Shared fixtures: a real PostgreSQL (DATABASE_PRIMARY_URL, else the embedded pgserver one)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import pytest

from tests.dbutil import admin_execute, with_database  # noqa: F401  (with_database re-exported)
from tests.node_fixtures import node_boss, node_dir, scratch_db  # noqa: F401  (shared fixtures)
from transport.db import Database
from transport.manager import JobManager
from zeke.database import database_url

#: One database per pytest session, so sessions sharing a server never drop each other's database.
TEST_DB = os.environ.get("ZEKE_TEST_DB") or f"zeke_test_{os.getpid()}"


@pytest.fixture(scope="session")
def admin_url() -> str:
    return database_url()


@pytest.fixture(scope="session")
def db_url(admin_url: str) -> Iterator[str]:
    """A fresh database for this test session, dropped at the end."""
    admin_execute(admin_url, f'DROP DATABASE IF EXISTS "{TEST_DB}" WITH (FORCE)')
    admin_execute(admin_url, f'CREATE DATABASE "{TEST_DB}"')
    url = with_database(admin_url, TEST_DB)
    os.environ["ZEKE_TEST_DATABASE_URL"] = url
    yield url
    if not os.environ.get("ZEKE_KEEP_TEST_DB"):
        admin_execute(admin_url, f'DROP DATABASE IF EXISTS "{TEST_DB}" WITH (FORCE)')


@pytest.fixture(scope="session")
def database(db_url: str) -> Iterator[Database]:
    db = Database(db_url, max_connections=16, application_name="zeke-tests")
    yield db
    db.close()


@pytest.fixture
def make_boss(database: Database) -> Iterator[Callable[..., JobManager]]:
    """Factory: a JobManager on a schema of its own (created on first use, dropped afterwards)."""
    made: list[str] = []

    def make(schema: str | None = None) -> JobManager:
        schema = schema or "t_" + uuid.uuid4().hex[:12]
        made.append(schema)
        return JobManager(database, schema)

    yield make
    with database.cursor() as cur:
        for schema in made:
            cur.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            cur.execute(f'DROP SCHEMA IF EXISTS "{schema}_zeke" CASCADE')


@pytest.fixture
def boss(make_boss: Callable[..., JobManager]) -> JobManager:
    return make_boss()
