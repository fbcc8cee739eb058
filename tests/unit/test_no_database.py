"""The unit tier's guard (tests/unit/conftest.py): any way to PostgreSQL fails the test that takes it."""

from __future__ import annotations

import os

import psycopg2
import pytest
import sqlalchemy

from tests.unit.conftest import DatabaseInUnitTest
from transport.db import Database
from zeke import embedded


def test_psycopg2_connect_is_refused() -> None:
    with pytest.raises(DatabaseInUnitTest, match="psycopg2.connect"):
        psycopg2.connect("postgresql://postgres@127.0.0.1:5432/postgres")


def test_sqlalchemy_engines_are_refused_on_first_use() -> None:
    engine = sqlalchemy.create_engine("postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
    with pytest.raises(DatabaseInUnitTest):
        engine.connect()


def test_the_transport_pool_is_refused() -> None:
    db = Database("postgresql://postgres@127.0.0.1:5432/postgres", max_connections=1)
    try:
        with pytest.raises(DatabaseInUnitTest), db.cursor():
            pass
    finally:
        db.close()


def test_the_embedded_server_is_not_started_and_no_url_is_set() -> None:
    with pytest.raises(DatabaseInUnitTest, match="embedded"):
        embedded.start()
    assert "DATABASE_PRIMARY_URL" not in os.environ
