"""Alembic environment: the URL comes from ``config.attributes`` (see ``tasks.db.migrations``)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine, func, select
from sqlalchemy.pool import NullPool
from sqlalchemy.schema import CreateSchema

from tasks.db.migrations import LOCK_KEY, VERSION_TABLE
from tasks.db.models import SCHEMA, Base

config = context.config


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _migrate(connection)
        return
    engine = create_engine(config.attributes["url"], poolclass=NullPool)
    try:
        with engine.connect() as connection:
            _migrate(connection)
    finally:
        engine.dispose()


def _migrate(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        version_table=VERSION_TABLE,
        version_table_schema=SCHEMA,
        include_schemas=True,
        include_name=lambda name, type_, parent: type_ != "schema" or name == SCHEMA,
        compare_type=True,
    )
    with context.begin_transaction():
        # Serialise concurrent runners; the schema must exist before alembic creates its version table.
        connection.execute(select(func.pg_advisory_xact_lock(LOCK_KEY)))
        connection.execute(CreateSchema(SCHEMA, if_not_exists=True))
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) mode is not supported; run tasks.db.migrations.upgrade(url)")
run()
