"""PostgreSQL restarted mid-run (``pg_ctl restart -m fast``: every session is terminated): workers,
beat, the API (``python -m zeke.cli api``) and an ``AsyncResult.get()`` waiting in this process must
reconnect by themselves, and every job must still end ``completed``.

It runs while two workers work a backlog, a producer thread sends a job every 0.1 s through the
restart (sends refused while the server is down are counted, not retried by hand), beat sends one
every second, and a job taking 6 s is being waited for. It measures the recovery: restart command →
server accepting connections, → first job completed, → API healthy, → beat sending again.

The server it restarts is a throwaway one the module starts itself (PostgreSQL from the ``pgserver``
wheel, data in a temporary directory, stopped and removed afterwards), never the server the rest of
the suite, or anyone else, uses. It is a ``slow`` test: ``make chaos`` runs it.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.acceptance.broker_workers import ROOT, BrokerEnv, drop_env, make_env, wait_for
from tests.app.conftest import app_env
from tests.chaos.chaos import INCLUDE, app_module, create_queue, create_runs_table, tally, unique
from tests.cluster import ThrowawayCluster
from transport.db import Database

API_KEY = "chaos-" + os.urandom(6).hex()


pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def restart_env(cluster: ThrowawayCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerEnv]:
    """The acceptance broker environment on the throwaway server.

    ``broker_app`` and the chaos tasks are configured for one environment per import, so this module
    imports its own copies and puts the session's back afterwards (other modules keep theirs)."""
    saved_modules = {name: sys.modules.pop(name) for name in _APP_MODULES if name in sys.modules}
    saved_environ = {k: v for k, v in os.environ.items() if k.startswith("ZEKE_BROKER_TEST_")}
    database = Database(cluster.url, max_connections=8, application_name="zeke-tests")
    env = make_env(cluster.url, database, tmp_path_factory.mktemp("restart-workers"))
    create_runs_table(env)
    try:
        yield env
    finally:
        drop_env(env)
        database.close()
        for name in _APP_MODULES:
            sys.modules.pop(name, None)
        sys.modules.update(saved_modules)
        for name, module in saved_modules.items():  # `import a.b as m` reads the package attribute
            parent, _, child = name.rpartition(".")
            setattr(sys.modules[parent], child, module)
        for key in [k for k in os.environ if k.startswith("ZEKE_BROKER_TEST_")]:
            del os.environ[key]
        os.environ.update(saved_environ)


_APP_MODULES = ("tests.acceptance.broker_app", "tests.chaos.chaos_tasks")


class Process:
    """A child process with its output in a file, in a session of its own."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.log_path = log
        self._log = open(log, "w")  # noqa: SIM115  (closed in stop)
        self.proc = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self._log.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def healthy(url: str) -> bool:
    try:
        response = httpx.get(url + "/healthz", timeout=2)
    except httpx.HTTPError:
        return False
    return response.status_code == 200 and response.json().get("database") == "ok"


def test_everything_reconnects_after_a_postgresql_restart(
    restart_env: BrokerEnv, cluster: ThrowawayCluster, tmp_path: Path
) -> None:
    env = restart_env
    chaos = app_module(env)
    queue = create_queue(env, unique("restart"), retry_limit=10, retry_delay=1, retry_backoff=False)
    beat_queue = create_queue(env, unique("restart-beat"), retry_limit=10, retry_delay=1)
    workers = [
        env.worker(f"restart{n}", [queue, beat_queue], args=INCLUDE).start(wait=False) for n in range(2)
    ]
    beat_env = {**env.environ(), "ZEKE_CHAOS_BEAT_QUEUE": beat_queue}
    beat_argv = [str(Path(sys.executable).with_name("celery")), "-A", "tests.chaos.chaos_tasks", "beat"]
    beat_argv += ["-S", "pgboss", "-l", "info", "-s", str(tmp_path / "beat-schedule")]
    beat = Process(beat_argv, beat_env, tmp_path / "beat.log")
    api_port = free_port()
    api_url = f"http://127.0.0.1:{api_port}"
    api_env = app_env(cluster.url, env.schema, ZEKE_API_KEYS=API_KEY)
    api = Process(
        [sys.executable, "-m", "zeke.cli", "api", "--port", str(api_port)], api_env, tmp_path / "api.log"
    )
    sent: list[str] = []
    refused: list[str] = []
    stop_sending = threading.Event()
    waited: dict[str, Any] = {}
    try:
        for worker in workers:
            worker.wait_ready()
        wait_for(lambda: healthy(api_url), 60, what="the API")
        wait_for(lambda: "beat: Starting" in beat.log(), 60, what="beat")
        wait_for(lambda: _first_created(env, beat_queue, 0), 30, what="beat to send")
        backlog = [chaos.work.apply_async((n, 0.2), queue=queue).id for n in range(100)]
        long_job = chaos.work.apply_async((-2, 6.0), queue=queue)

        def produce() -> None:
            n = 1000
            while not stop_sending.wait(0.1):
                n += 1
                try:
                    sent.append(chaos.work.apply_async((n, 0.05), queue=queue).id)
                except Exception as exc:  # the server is down: the caller sees it
                    refused.append(f"{type(exc).__name__}: {exc}")

        def wait_long() -> None:
            try:
                waited["value"] = long_job.get(timeout=120)
            except BaseException as exc:
                waited["error"] = "".join(traceback.format_exception(exc))
                print(f"\nAsyncResult.get() raised:\n{waited['error']}")
            waited["at"] = time.time()

        producer = threading.Thread(target=produce, daemon=True)
        producer.start()
        getter = threading.Thread(target=wait_long, daemon=True)
        getter.start()
        wait_for(lambda: env.job(long_job.id)["state"] == "active", 20, what="the long job to start")
        time.sleep(1)

        restart_at = time.time()
        cluster.restart()
        wait_for(cluster.ready, 120, what="PostgreSQL to accept connections")
        up_at = time.time()
        api_at = wait_for(lambda: healthy(api_url) and time.time(), 120, 0.1, what="the API to be healthy")
        first_done = wait_for(lambda: _first_completed(env, queue, up_at), 120, 0.2, what="a job to complete")
        beat_again = wait_for(lambda: _first_created(env, beat_queue, up_at), 60, 0.2, what="beat to send")
        time.sleep(5)
        stop_sending.set()
        producer.join(10)
        ids = [*backlog, long_job.id, *sent]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and tally(env, ids).lost:
            time.sleep(1)
        result = tally(env, ids)
        getter.join(60)
        print(
            f"\npg restart: {result.line()} refused sends={len(refused)} "
            f"restart→ready {up_at - restart_at:.1f}s, →first job completed {first_done - restart_at:.1f}s, "
            f"→API healthy {api_at - restart_at:.1f}s, →beat sent {beat_again - restart_at:.1f}s, "
            f"→AsyncResult.get() returned {waited.get('at', float('nan')) - restart_at:.1f}s "
            f"({waited.get('value', waited.get('error'))!r})"
        )
        assert not result.lost and not result.stuck, (result.line(), result.states)
        assert not result.duplicates, result.line()
        assert waited.get("value", {}).get("n") == -2, waited
    finally:
        stop_sending.set()
        beat.stop()
        api.stop()
        for worker in workers:
            worker.stop()


def _ts(value: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(value, dt.UTC)


def _first_completed(env: BrokerEnv, queue: str, after: float) -> float | None:
    with env.database.cursor() as cur:
        cur.execute(
            f'SELECT EXTRACT(EPOCH FROM min(completed_on))::float8 AS t FROM "{env.schema}".job '
            "WHERE name = %s AND state = 'completed' AND completed_on > %s",
            (queue, _ts(after)),
        )
        return cur.fetchone()["t"]


def _first_created(env: BrokerEnv, queue: str, after: float) -> float | None:
    with env.database.cursor() as cur:
        cur.execute(
            f'SELECT EXTRACT(EPOCH FROM min(created_on))::float8 AS t FROM "{env.schema}".job '
            "WHERE name = %s AND created_on > %s",
            (queue, _ts(after)),
        )
        return cur.fetchone()["t"]
