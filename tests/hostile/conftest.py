"""Fixtures for hostile-input tests: the real ``pgboss`` schema (so ``pgboss.job`` is the table an
injection would aim at), a snapshot of every table's row count, and the HTTP API served by a real
uvicorn on 127.0.0.1 with schema tasks that take free-form JSON."""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from transport.db import Database
from transport.manager import JobManager

ROOT = Path(__file__).resolve().parents[2]
TASK_MODULE = "tests.hostile.hostile_tasks"
API_KEY = "hostile-" + uuid.uuid4().hex[:12]


@pytest.fixture
def pgboss(make_boss: Callable[..., JobManager]) -> JobManager:
    """A JobManager on schema ``pgboss`` of the session's database (dropped after the test)."""
    manager = make_boss("pgboss")
    manager.info  # noqa: B018  (installs the schema)
    return manager


def table_counts(db: Database, schema: str) -> dict[str, int]:
    """Rows of every table in ``schema`` and its zeke companion schema (partitions included)."""
    counts: dict[str, int] = {}
    with db.cursor() as cur:
        cur.execute(
            "SELECT schemaname, tablename FROM pg_tables WHERE schemaname IN (%s, %s) ORDER BY 1, 2",
            (schema, schema + "_zeke"),
        )
        tables = [(r["schemaname"], r["tablename"]) for r in cur.fetchall()]
        for schema_name, table in tables:
            cur.execute(f'SELECT count(*) AS n FROM "{schema_name}"."{table}"')
            counts[f"{schema_name}.{table}"] = cur.fetchone()["n"]
    return counts


def job_table_exists(db: Database, schema: str = "pgboss") -> bool:
    with db.cursor() as cur:
        cur.execute("SELECT to_regclass(%s) IS NOT NULL AS ok", (f'"{schema}".job',))
        return bool(cur.fetchone()["ok"])


@pytest.fixture
def counts(database: Database, pgboss: JobManager) -> Callable[[], dict[str, int]]:
    return lambda: table_counts(database, pgboss.schema)


class ApiServer:
    """zeke's FastAPI app under a real uvicorn in a thread, on a free loopback port."""

    def __init__(self, api: Any) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.api = api
        config = uvicorn.Config(api, log_level="warning", lifespan="on", timeout_graceful_shutdown=2)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> ApiServer:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not (self.server.started and self.api.state.hub.listening.is_set()):
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the API did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


@pytest.fixture
def api(pgboss: JobManager) -> Iterator[ApiServer]:
    """The API on schema ``pgboss``, Bearer ``API_KEY``, with the hostile-* tasks registered."""
    import tests.hostile.hostile_tasks  # noqa: F401  (registers the tasks)
    from zeke import client
    from zeke.api import create_api
    from zeke.registry import registry
    from zeke.settings import Settings

    settings = Settings(
        api_keys=(API_KEY,),
        pgboss_schema=pgboss.schema,
        task_modules=(TASK_MODULE,),
        sse_keepalive_seconds=0.5,
        sse_reread_seconds=0.5,
        sse_max_seconds=1.0,
        api_docs=True,  # schemathesis reads the spec
    )
    previous = client.set_manager(None)
    try:
        with ApiServer(create_api(settings, pgboss, registry)) as server:
            yield server
    finally:
        client.set_manager(previous)


@pytest.fixture
def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {API_KEY}"}


def cli_env(db_url: str, schema: str) -> dict[str, str]:
    """Environment for a ``zeke`` subprocess on this test's database and schema."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CELERY_", "ZEKE_"))}
    env.update(
        DATABASE_PRIMARY_URL=db_url,
        ZEKE_PGBOSS_SCHEMA=schema,
        ZEKE_TASK_MODULES=TASK_MODULE,
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
    )
    return env


ZEKE = [sys.executable, "-m", "zeke.cli"]
