"""Alembic migrations of the app database (schema ``zeke``), run from code.

``upgrade(url)`` is what ``zeke init`` calls; it is safe to call concurrently and repeatedly (an
advisory lock serialises runners, and the version table lives in ``zeke.alembic_version``). A new
revision is a file next to ``versions/0001_initial.py`` (``alembic.command.revision(alembic_config(url),
message, autogenerate=True)`` drafts one from the models).
"""

from __future__ import annotations

import threading
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine

HERE = Path(__file__).resolve().parent
#: ``pg_advisory_xact_lock`` key held while migrating (any constant of our own).
LOCK_KEY = 0x7A656B65_0001  # "zeke" + 1
VERSION_TABLE = "alembic_version"
_lock = threading.Lock()


def sqlalchemy_url(url: str) -> str:
    """A SQLAlchemy URL (psycopg2 driver) for ``postgres://``, ``postgresql://`` or ``pgboss://``."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError("expected a URL such as postgresql://user@host/db")
    if scheme.split("+")[0] not in {"postgres", "postgresql", "pgboss"}:
        raise ValueError(f"not a PostgreSQL URL: {scheme}://…")
    return "postgresql+psycopg2://" + rest


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("version_locations", str(HERE / "versions"))
    cfg.attributes["url"] = sqlalchemy_url(url)
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the app database at ``url`` up to ``revision``."""
    # alembic's context/op are module-level proxies: one migration run per process at a time.
    with _lock:
        command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    with _lock:
        command.downgrade(alembic_config(url), revision)


def head() -> str:
    script = ScriptDirectory.from_config(alembic_config("postgresql://"))
    return str(script.get_current_head())


def current(url: str) -> str | None:
    """The revision the database is at, or None before the first upgrade."""
    from tasks.db.models import SCHEMA

    engine = create_engine(sqlalchemy_url(url), poolclass=_null_pool())
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"version_table_schema": SCHEMA})
            return ctx.get_current_revision()
    finally:
        engine.dispose()


def _null_pool() -> type:
    from sqlalchemy.pool import NullPool

    return NullPool
