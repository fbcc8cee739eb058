"""The unit tier runs without PostgreSQL: a test here that connects to a database (psycopg2, SQLAlchemy
through it, the embedded pgserver) or asks for a database fixture fails, naming what it tried."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NoReturn

import psycopg2
import pytest

import zeke.embedded


class DatabaseInUnitTest(AssertionError):
    """A unit test reached for PostgreSQL; it belongs in tests/integration (or deeper) instead."""


def _refuse(what: str) -> Any:
    def refuse(*args: Any, **kwargs: Any) -> NoReturn:
        raise DatabaseInUnitTest(f"tests/unit has no database: {what} was called")

    return refuse


@pytest.fixture(autouse=True)
def _no_database(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # psycopg2.connect is what SQLAlchemy and transport.db call; _connect is what connect calls, so
    # code that imported connect by name is caught as well.
    monkeypatch.setattr(psycopg2, "connect", _refuse("psycopg2.connect"))
    monkeypatch.setattr(psycopg2, "_connect", _refuse("psycopg2._connect"))
    monkeypatch.setattr(zeke.embedded, "start", _refuse("zeke.embedded.start"))
    monkeypatch.delenv("DATABASE_PRIMARY_URL", raising=False)
    monkeypatch.delenv("ZEKE_TEST_DATABASE_URL", raising=False)
    yield


@pytest.fixture(scope="session")
def admin_url() -> NoReturn:
    pytest.fail("tests/unit has no database: move a test that needs admin_url/db_url to tests/integration")
