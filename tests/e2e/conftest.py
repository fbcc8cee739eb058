"""End-to-end fixtures: a fresh database per test module (pg-boss schema ``pgboss`` and the app schema
``zeke``, as in production), the sample server, real worker processes and the fake OpenAI server."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.dbutil import created_database, unique_name
from tests.tasks.helpers import FakeOpenAI

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def fresh_url(admin_url: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A database of this module's own, dropped afterwards."""
    with created_database(
        admin_url, unique_name(f"zeke_e2e_{request.module.__name__.rsplit('.', 1)[-1]}")
    ) as url:
        yield url


def zeke_env(url: str, **extra: str) -> dict[str, str]:
    """The environment of a zeke process on ``url``: default settings, no OpenAI key."""
    prefixes = ("CELERY_", "ZEKE_", "OPENAI_", "YOUTUBE_", "JOBS_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    env.update(DATABASE_PRIMARY_URL=url, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


class Worker:
    def __init__(self, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.proc, self.log = proc, log

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    """Start `celery -A zeke worker` (prefork, -c 2) with ``env``; stopped after the test."""
    started: list[Worker] = []

    def start(env: dict[str, str], *args: str, name: str | None = None) -> Worker:
        name = name or f"w{len(started)}"
        log = tmp_path / f"{name}.log"
        flags = "-l info -P prefork -c 2 --without-gossip --without-mingle --without-heartbeat".split()
        cmd = [sys.executable, "-m", "celery", "-A", "zeke", "worker", *flags, "-n", f"{name}@%h", *args]
        with open(log, "wb") as out:
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        worker = Worker(proc, log)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI()
    yield server
    server.close()
