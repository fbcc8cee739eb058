"""Shared fixtures: a real PostgreSQL (DATABASE_PRIMARY_URL, else the embedded pgserver one)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg2
import pytest

from transport.db import Database, dsn_from_url
from transport.manager import JobManager
from zeke.database import database_url

TEST_DB = os.environ.get("ZEKE_TEST_DB", "zeke_test")  # several sessions may share one server


def with_database(url: str, dbname: str) -> str:
    parts = urlsplit(dsn_from_url(url))
    return urlunsplit(parts._replace(path="/" + dbname))


@pytest.fixture(scope="session")
def admin_url() -> str:
    return database_url()


@pytest.fixture(scope="session")
def db_url(admin_url: str) -> str:
    """A fresh database for this test session."""
    conn = psycopg2.connect(dsn_from_url(admin_url))
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{TEST_DB}" WITH (FORCE)')
        cur.execute(f'CREATE DATABASE "{TEST_DB}"')
    conn.close()
    url = with_database(admin_url, TEST_DB)
    os.environ["ZEKE_TEST_DATABASE_URL"] = url
    return url


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


@pytest.fixture
def boss(make_boss: Callable[..., JobManager]) -> JobManager:
    return make_boss()
