"""Processes of a mixed Node/Python fleet on one scratch database: real ``celery worker`` and
``celery beat`` processes of :mod:`tests.interop.fleet_app`, and Node pg-boss scripts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.extras
from celery import Celery
from celery.result import AsyncResult

from tests.acceptance import broker_workers
from transport.db import dsn_from_url

ROOT = Path(__file__).resolve().parents[2]
CELERY = str(Path(sys.executable).with_name("celery"))
APP = "tests.interop.fleet_app"


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    """The tests' own wait, with ``what`` first (every wait here says what it waits for)."""
    return broker_workers.wait_for(predicate, timeout, interval=interval, what=what)


class Proc:
    """One process in a session of its own (so it and its children stop together), logging to a file."""

    def __init__(self, argv: Sequence[str], log: Path, env: dict[str, str], cwd: Path = ROOT) -> None:
        self.log_path = log
        self._log = open(log, "w")  # noqa: SIM115  (closed in stop)
        self.process = subprocess.Popen(
            list(argv), cwd=cwd, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.process.poll() is None

    def wait_log(self, text: str, timeout: float = 60) -> None:
        def seen() -> bool:
            if not self.alive() and text not in self.log():
                raise AssertionError(f"{self.log_path.name} exited:\n{self.log()[-4000:]}")
            return text in self.log()

        wait_for(seen, timeout, f"{text!r} in {self.log_path.name}")

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM (Celery's warm shutdown), then SIGKILL the whole session."""
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(10)
        self._log.close()


class Fleet:
    """The scratch database ``url`` and the processes started on it."""

    def __init__(self, url: str, tmp: Path, node_dir: Path) -> None:
        self.url = url
        self.tmp = tmp
        self.node_dir = node_dir
        self.procs: list[Proc] = []
        self._celery: Celery | None = None

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(ZEKE_FLEET_URL=self.url, **extra)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        return env

    def worker(self, name: str, queues: Sequence[str], concurrency: int = 2, **extra: str) -> Proc:
        argv = [
            CELERY, "-A", APP, "worker", "-P", "prefork", "-c", str(concurrency),
            "-n", f"{name}@fleet", "-Q", ",".join(queues), "-l", "info",
        ]  # fmt: skip
        proc = Proc(argv, self.tmp / f"{name}.log", self.env(**extra))
        self.procs.append(proc)
        return proc

    def beat(self, name: str = "beat", **extra: str) -> Proc:
        argv = [CELERY, "-A", APP, "beat", "-l", "info", "-s", str(self.tmp / f"{name}-schedule")]
        proc = Proc(argv, self.tmp / f"{name}.log", self.env(**extra))
        self.procs.append(proc)
        return proc

    def node_script(self, name: str, script: str, *args: str) -> Proc:
        argv = ["node", str(self.node_dir / script), *args]
        proc = Proc(argv, self.tmp / f"{name}.log", self.env(), cwd=self.node_dir)
        self.procs.append(proc)
        return proc

    def celery(self) -> Celery:
        """A Celery client of this fleet's database (this process sends tasks by name with it)."""
        from tests.interop.fleet_app import QUEUE_OPTIONS, SCHEMA

        if self._celery is None:
            broker = "pgboss://" + self.url.split("://", 1)[1]
            self._celery = Celery("fleet_client", broker=broker, backend=broker, set_as_current=False)
            self._celery.conf.update(
                task_serializer="json",
                result_serializer="json",
                accept_content=["json"],
                broker_transport_options={"schema": SCHEMA, "queue_options": QUEUE_OPTIONS},
                result_backend_transport_options={"schema": SCHEMA},
            )
        return self._celery

    def send(self, queue: str, kwargs: dict[str, Any], **options: Any) -> AsyncResult:
        """``send_task`` to the task named like ``queue`` (the fleet's tasks are)."""
        return self.celery().send_task(queue, kwargs=kwargs, queue=queue, **options)

    def install(self) -> int:
        """pg-boss 12.38.1's schema, installed by Node itself (tests/node/boss.mjs start)."""
        argv = ["node", str(self.node_dir / "boss.mjs"), "12.38.1", dsn_from_url(self.url), "pgboss", "start"]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise AssertionError(f"node boss.mjs start failed:\n{done.stderr}")
        return int(json.loads(done.stdout)["schemaVersion"])

    def node(self, method: str, *args: Any, timeout: float = 60) -> Any:
        """One pg-boss 12.38.1 method called from Node (tests/node/verbs.mjs); its result."""
        argv = [
            "node", str(self.node_dir / "verbs.mjs"), "12.38", dsn_from_url(self.url), "pgboss", method,
            json.dumps(list(args)),
        ]  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise AssertionError(f"node {method} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
        return json.loads(done.stdout)["result"]

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        conn = psycopg2.connect(dsn_from_url(self.url))
        try:
            with conn, conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
                cur.execute(sql, params)
                return [dict(row) for row in cur.fetchall()]
        finally:
            conn.close()

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        self.procs.clear()
        if self._celery is not None:
            self._celery.close()


def overlaps(runs: Sequence[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Pairs of runs (``started``/``ended``) that were under way at the same time."""
    ordered = sorted(runs, key=lambda r: r["started"])
    found = []
    for i, run in enumerate(ordered):
        for later in ordered[i + 1 :]:
            if later["started"] >= run["ended"]:
                break
            found.append((run, later))
    return found
