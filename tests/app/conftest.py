"""Fixtures for the app layer: a per-test pg-boss schema (in the session's database) wired into the
Celery app, a real uvicorn server in a thread, and real worker processes."""

from __future__ import annotations

import os
import socket
import subprocess
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
from zeke.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
TASK_MODULE = "tests.app.sample_tasks"
API_KEY = "test-key-" + uuid.uuid4().hex[:8]


@pytest.fixture
def schema(make_boss: Callable[..., JobManager]) -> str:
    return make_boss().schema


@pytest.fixture
def manager(database: Database, schema: str) -> JobManager:
    return JobManager(database, schema)


@pytest.fixture
def celery_app(db_url: str, schema: str, manager: JobManager) -> Iterator[Any]:
    """zeke's Celery app (with the sample tasks) sending into this test's database and schema."""
    import tests.app.sample_tasks  # noqa: F401
    from zeke.app import app
    from zeke.database import broker_url

    saved = (app.conf.broker_url, app.conf.result_backend, app.conf.broker_transport_options["schema"])
    app.conf.broker_url = app.conf.result_backend = broker_url(db_url)
    app.conf.broker_transport_options["schema"] = schema
    _forget_backend(app)  # one made earlier in this thread reads another test's database and schema
    manager.info  # noqa: B018  (installs the schema)
    try:
        yield app
    finally:
        app.conf.broker_url, app.conf.result_backend, app.conf.broker_transport_options["schema"] = saved
        # Connections to this test's schema must not outlive it; the next test builds new pools
        # (kombu keys its pools by connection, transport options included).
        if app._pool is not None:
            app._pool.force_close_all()
            app._pool = None
        app.amqp._producer_pool = None
        _forget_backend(app)


def _forget_backend(app: Any) -> None:
    """Drop the app's result backend of this thread (Celery keeps one per thread, made on first use
    from the configuration of that moment), so the next use builds one on the current settings."""
    backend = app._local.__dict__.pop("backend", None)
    if backend is not None and hasattr(backend, "close"):
        backend.close()


def app_env(db_url: str, schema: str, **extra: str) -> dict[str, str]:
    """Environment for zeke subprocesses (worker, API, CLI) on this test's database and schema."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CELERY_", "ZEKE_"))}
    env.update(
        DATABASE_PRIMARY_URL=db_url,
        ZEKE_PGBOSS_SCHEMA=schema,
        ZEKE_TASK_MODULES=TASK_MODULE,
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


@pytest.fixture
def env(db_url: str, schema: str) -> dict[str, str]:
    return app_env(db_url, schema)


class Worker:
    def __init__(self, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.proc, self.log = proc, log

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def start_worker(env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    """Start real `celery -A zeke worker` processes; stopped (TERM, then KILL) after the test."""
    started: list[Worker] = []

    def start(*args: str, concurrency: int = 2, name: str | None = None) -> Worker:
        name = name or f"w{len(started)}"
        log = tmp_path / f"{name}.log"
        flags = "-l info -P prefork --without-gossip --without-mingle --without-heartbeat".split()
        cmd = [sys.executable, "-m", "celery", "-A", "zeke", "worker", *flags]
        cmd += ["-c", str(concurrency), "-n", f"{name}@%h", *args]
        with open(log, "wb") as out:
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        worker = Worker(proc, log)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.proc.terminate()
    for worker in started:
        try:
            worker.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.proc.kill()
            worker.proc.wait()


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def wait_for_state(manager: JobManager, job_id: str, states: set[str], timeout: float = 20.0) -> dict:
    def check() -> dict | None:
        job = manager.get_job(job_id)
        return job if job is not None and job["state"] in states else None

    try:
        return wait_for(check, timeout)
    except AssertionError:
        raise AssertionError(f"job {job_id} never reached {states}: {manager.get_job(job_id)}") from None


class ApiServer:
    """A real uvicorn server in a thread, on a free loopback port."""

    def __init__(self, api: Any) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.api = api
        self.server = uvicorn.Server(uvicorn.Config(api, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> ApiServer:
        self.thread.start()
        wait_for(lambda: self.server.started, timeout=10)
        wait_for(lambda: self.api.state.hub.listening.is_set(), timeout=10)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


def settings_for(schema: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "api_keys": (API_KEY,),
        "pgboss_schema": schema,
        "task_modules": (TASK_MODULE,),
        "sse_keepalive_seconds": 15.0,
        "sse_reread_seconds": 15.0,
        "sse_max_seconds": 60.0,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def make_api(celery_app: Any, manager: JobManager, schema: str) -> Iterator[Callable[..., ApiServer]]:
    from zeke.api import create_api
    from zeke.registry import registry

    servers: list[ApiServer] = []

    def make(**overrides: Any) -> ApiServer:
        server = ApiServer(create_api(settings_for(schema, **overrides), manager, registry))
        servers.append(server.__enter__())
        return server

    yield make
    for server in servers:
        server.__exit__(None, None, None)
    from zeke import client

    client.set_manager(None)


@pytest.fixture
def api_server(make_api: Callable[..., ApiServer]) -> ApiServer:
    return make_api()


@pytest.fixture
def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {API_KEY}"}
