"""Real ``celery worker`` processes on the ``pgboss://`` broker, for the broker acceptance tests.

:class:`BrokerEnv` is one pg-boss schema of the test database plus the environment the workers and
the test process share (``tests/acceptance/broker_app.py`` reads it at import). :class:`Worker` is
one ``celery -A tests.acceptance.broker_app worker -P prefork`` process in a session of its own, so
a test can SIGKILL the whole worker (main process and pool children) at once.
"""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from transport.db import Database
from transport.manager import JobManager

ROOT = Path(__file__).resolve().parents[2]
CELERY = str(Path(sys.executable).with_name("celery"))


def wait_for(
    predicate: Callable[[], Any], timeout: float, interval: float = 0.1, what: str = "condition"
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


@dataclass
class Worker:
    env: BrokerEnv
    name: str
    queues: Sequence[str]
    concurrency: int = 2
    args: Sequence[str] = ()
    #: Overrides the environment's settle mode ("pgboss": result backend; "ack": settle_on_ack).
    settle: str | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    #: The Celery app module the worker runs (``celery -A``).
    app: str = "tests.acceptance.broker_app"
    process: subprocess.Popen | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.env.tmp / f"{self.name}-{uuid.uuid4().hex[:6]}.log"

    @property
    def hostname(self) -> str:
        return f"{self.name}@zeke-test"

    def start(self, wait: bool = True) -> Worker:
        argv = [
            CELERY, "-A", self.app, "worker", "-P", "prefork",
            "-c", str(self.concurrency), "-n", self.hostname, "-Q", ",".join(self.queues), "-l", "info",
            *self.args,
        ]  # fmt: skip
        self._log = open(self.log_path, "w")  # noqa: SIM115  (closed in stop/kill)
        environ = self.env.environ()
        if self.settle:
            environ["ZEKE_BROKER_TEST_SETTLE"] = self.settle
        environ.update(self.extra_env)
        self.process = subprocess.Popen(
            argv, cwd=ROOT, env=environ, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        if wait:
            self.wait_ready()
        return self

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def wait_ready(self, timeout: float = 40) -> None:
        def ready() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"worker {self.name} exited:\n{self.log()}")
            return " ready." in self.log()

        wait_for(ready, timeout, what=f"worker {self.name} to be ready")

    def stop(self, timeout: float = 30) -> None:
        """Warm shutdown (SIGTERM), then SIGKILL whatever is left."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        self._reap()

    def kill(self) -> None:
        """SIGKILL the whole worker: main process and every pool child, at once."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(10)
        self._reap()

    def _reap(self) -> None:
        # Orphaned pool children of a killed main process stay in its process group.
        assert self.process is not None
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self._log.close()


@dataclass
class BrokerEnv:
    db_url: str
    database: Database
    schema: str
    tmp: Path
    settle: str = "pgboss"
    workers: list[Worker] = field(default_factory=list)

    @property
    def url(self) -> str:
        return "pgboss://" + self.db_url.split("://", 1)[1]

    @property
    def manager(self) -> JobManager:
        return JobManager(self.database, self.schema)

    def environ(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            ZEKE_BROKER_TEST_URL=self.url,
            ZEKE_BROKER_TEST_SCHEMA=self.schema,
            ZEKE_BROKER_TEST_SETTLE=self.settle,
            PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
        )
        return env

    def app_module(self) -> ModuleType:
        """``tests.acceptance.broker_app`` configured for this schema (imported once per session)."""
        os.environ.update({k: v for k, v in self.environ().items() if k.startswith("ZEKE_BROKER_TEST_")})
        # From sys.modules, not the package attribute (see tests/chaos/test_pg_restart.py's swap).
        module = importlib.import_module("tests.acceptance.broker_app")
        assert module.SCHEMA == self.schema, "broker_app was imported for another schema"
        return module

    def worker(self, name: str, queues: Sequence[str], **kwargs: Any) -> Worker:
        worker = Worker(self, name, queues, **kwargs)
        self.workers.append(worker)
        return worker

    def effects(self, key: str) -> list[dict[str, Any]]:
        with self.database.cursor() as cur:
            cur.execute(
                f'SELECT key, value, at FROM "{self.schema}_effects".effect WHERE key = %s ORDER BY at',
                (key,),
            )
            return list(cur.fetchall())

    def db_now(self) -> Any:
        with self.database.cursor() as cur:
            cur.execute("SELECT clock_timestamp() AS now")
            return cur.fetchone()["now"]

    def job(self, job_id: str) -> dict[str, Any]:
        job = self.manager.get_job(job_id)
        assert job is not None, f"no job {job_id}"
        return job

    def wait_state(self, job_id: str, *states: str, timeout: float = 20) -> dict[str, Any]:
        return wait_for(
            lambda: (job := self.manager.get_job(job_id)) and job["state"] in states and job,
            timeout,
            what=f"job {job_id} to reach {states}",
        )


def make_env(db_url: str, database: Database, tmp: Path, settle: str = "pgboss") -> BrokerEnv:
    schema = "bk_" + uuid.uuid4().hex[:10]
    with database.cursor() as cur:
        cur.execute(f'CREATE SCHEMA "{schema}_effects"')
        cur.execute(
            f'CREATE TABLE "{schema}_effects".effect '
            "(key text, value text, at timestamptz DEFAULT clock_timestamp())"
        )
    return BrokerEnv(db_url, database, schema, tmp, settle)


def drop_env(env: BrokerEnv) -> None:
    for worker in env.workers:
        worker.stop(timeout=15)
    with env.database.cursor() as cur:
        for suffix in ("", "_zeke", "_effects"):
            cur.execute(f'DROP SCHEMA IF EXISTS "{env.schema}{suffix}" CASCADE')


class Output:
    """A subprocess's merged stdout, read line by line on a thread, so a test waits for the line it
    expects (with a timeout) instead of sleeping for a guessed time."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def wait_for(self, predicate: Callable[[str], bool], timeout: float, what: str) -> str:
        wait_for(lambda: predicate(self.text), timeout, what=what)
        return self.text

    def stop(self, timeout: float = 30) -> str:
        """Terminate the process (kill it after ``timeout``) and return everything it wrote."""
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._reader.join(timeout=10)
        return self.text
