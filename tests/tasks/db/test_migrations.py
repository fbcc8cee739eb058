from __future__ import annotations

import threading
from collections.abc import Iterator

import psycopg2
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from tasks.db import current, head, upgrade
from tasks.db.migrations import LOCK_KEY, downgrade, sqlalchemy_url
from tasks.db.models import SCHEMA, Base
from tests.dbutil import created_database, unique_name
from transport.db import dsn_from_url


@pytest.fixture
def scratch_url(admin_url: str) -> Iterator[str]:
    with created_database(admin_url, unique_name("zeke_test_tasks_migrations")) as url:
        yield url


def test_migrations_match_the_models(app_db: object, db_url: str) -> None:
    engine = create_engine(sqlalchemy_url(db_url))
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn,
                opts={
                    "include_schemas": True,
                    "version_table_schema": SCHEMA,
                    "include_name": lambda name, type_, parent: type_ != "schema" or name == SCHEMA,
                    "compare_type": True,
                    "compare_server_default": True,
                },
            )
            assert compare_metadata(context, Base.metadata) == []
            tables = set(inspect(conn).get_table_names(schema=SCHEMA))
            assert tables == {t.name for t in Base.metadata.sorted_tables} | {"alembic_version"}
            assert "sources" not in inspect(conn).get_table_names(schema="public")
    finally:
        engine.dispose()


def test_upgrade_is_repeatable_reversible_and_concurrency_safe(scratch_url: str) -> None:
    assert current(scratch_url) is None
    errors: list[BaseException] = []

    def run() -> None:
        try:
            upgrade(scratch_url)
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion below
            errors.append(exc)

    # Another process (worker, API, `zeke init`) migrating holds the advisory lock: we wait for it.
    holder = psycopg2.connect(dsn_from_url(scratch_url))
    with holder.cursor() as cur:
        cur.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    threads[0].join(timeout=1.0)
    assert threads[0].is_alive() and current(scratch_url) is None  # blocked behind the holder
    with holder.cursor() as cur:
        cur.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
    holder.close()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == [] and current(scratch_url) == head() == "0001"
    upgrade(scratch_url)  # again: nothing to do
    downgrade(scratch_url, "base")
    assert current(scratch_url) is None
    engine = create_engine(sqlalchemy_url(scratch_url))
    try:
        with engine.connect() as conn:
            assert inspect(conn).get_table_names(schema=SCHEMA) == ["alembic_version"]
    finally:
        engine.dispose()
    upgrade(scratch_url)
    assert current(scratch_url) == "0001"
