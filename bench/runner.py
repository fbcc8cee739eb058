"""One Celery setup under test: its scratch database, producer, worker processes and measurements."""

from __future__ import annotations

import compileall
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg2
import redis
from celery import Celery, group

import transport  # noqa: F401  (registers pgboss://)
from bench import procs
from bench.config import REDIS, ROOT, SIDE_DB, port_of, server_url, zeke_celeryconfig
from bench.targets import Target
from transport.db import dsn_from_url

__all__ = ["Bench", "Drain", "Scratch", "Session", "Target", "server_url"]

CELERY = str(Path(sys.executable).with_name("celery"))


class Scratch:
    """A PostgreSQL database for one setup, created empty and dropped afterwards."""

    def __init__(self, admin_url: str) -> None:
        self.admin_dsn = dsn_from_url(admin_url)
        self.name = "zeke_bench_" + uuid.uuid4().hex[:8]

    def _admin(self, sql: str) -> list[tuple[Any, ...]]:
        conn = psycopg2.connect(self.admin_dsn)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(sql, (self.name,))
                return cur.fetchall() if cur.description else []
        finally:
            conn.close()

    def commits(self) -> int:
        """Transactions committed in this database so far (as the statistics have them)."""
        return int(self._admin("SELECT xact_commit FROM pg_stat_database WHERE datname = %s")[0][0])

    def backends(self) -> set[int]:
        """The server processes serving this database now."""
        return {row[0] for row in self._admin("SELECT pid FROM pg_stat_activity WHERE datname = %s")}

    def __enter__(self) -> str:
        self._admin(f'CREATE DATABASE "{self.name}"')
        return self.name

    def __exit__(self, *exc: object) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


@dataclass
class Session:
    """One setup's part of a round: scratch database, producer, run id (also its queue's name)."""

    target: Target
    scratch: Scratch | None
    run: str
    env: dict[str, str]
    producer: Celery
    #: Tasks published so far (the drain's backlog).
    backlog: int = 0
    enqueue_seconds: float = 0.0
    enqueued: int = 0

    @property
    def queue(self) -> str:
        return self.run

    def delay(self, count: int) -> float:
        """``count`` × ``noop.delay(run)``; returns the seconds it took."""
        noop = self.producer.tasks["bench.noop"]
        started = time.perf_counter()
        for _ in range(count):
            noop.delay(self.run)
        self.backlog += count
        return time.perf_counter() - started

    def group(self, count: int) -> float:
        """One ``group()`` of ``count`` noop tasks, applied; returns the seconds ``apply_async`` took."""
        signatures = [self.producer.signature("bench.noop", args=(self.run,)) for _ in range(count)]
        started = time.perf_counter()
        group(signatures, app=self.producer).apply_async()
        self.backlog += count
        return time.perf_counter() - started


@dataclass
class Drain:
    rate: float
    seconds: float
    cpu: procs.CpuSplit


@dataclass
class Held:
    """What the worker holds, idle, after its drain."""

    rss_mib: float
    connections: int
    processes: int = field(default=0)


def compile_sources() -> None:
    """Write the checkout's bytecode, as installing a package does (pip compiles what it installs), so
    the workers read it instead of compiling every module at start even with PYTHONDONTWRITEBYTECODE
    set: compiling leaves the parser's peak allocations in each process's heap, counted in its RSS,
    which a Celery, Kombu or redis-py module, compiled when installed, never pays."""
    for package in ("transport", "bench", "zeke", "tasks"):
        if (ROOT / package).is_dir():
            compileall.compile_dir(ROOT / package, quiet=1)
    compileall.compile_file(ROOT / "celeryconfig.py", quiet=1)


class Bench:
    def __init__(self, *, admin_url: str, side_url: str, log_dir: Path, **_: Any) -> None:
        compile_sources()
        self.admin_url = admin_url
        self.side = redis.Redis.from_url(side_url)
        self.side_url = side_url
        self.log_dir = log_dir

    # -- a setup's session ----------------------------------------------------------------------

    def open(self, target: Target) -> Session:
        scratch = Scratch(self.admin_url) if "{db}" in target.broker_url else None
        db = scratch.__enter__() if scratch else ""
        broker_url = target.broker_url.replace("{db}", db)
        backend = target.result_backend.replace("{db}", db) if target.result_backend else None
        run = "bench-" + uuid.uuid4().hex[:8]
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("CELERY_")},
            "BENCH_BROKER_URL": broker_url,
            "BENCH_RESULT_BACKEND": backend or "",
            "BENCH_TRANSPORT_OPTIONS": json.dumps(target.options),
            "BENCH_SIDE_URL": self.side_url,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        # zeke's app sends groups as one INSERT per queue (transport.batch_publish); so do pgboss rows.
        batching = {"amqp": "transport.batch_publish:AMQP"} if broker_url.startswith("pgboss") else {}
        producer = Celery(f"bench-producer-{run}", set_as_current=False, **batching)
        producer.config_from_object(zeke_celeryconfig())
        producer.conf.update(
            broker_url=broker_url,
            result_backend=backend,
            broker_transport_options=target.options,
            result_backend_transport_options=target.options,
            task_ignore_result=backend is None,
            task_default_queue=run,
        )
        for name in ("bench.noop", "bench.ping"):  # stand-ins: the producer only sends them
            producer.task(name=name, shared=False)(_nothing)
        return Session(target, scratch, run, env, producer)

    def close(self, session: Session) -> None:
        if session.target.result_backend and session.target.result_backend.startswith("pgboss"):
            session.producer.backend.close()  # before its database is dropped
        session.producer.close()
        for key in self.side.scan_iter(f"{session.run}:*"):
            self.side.delete(key)
        if session.target.result_backend and session.target.result_backend.startswith("redis"):
            redis.Redis.from_url(session.target.result_backend).flushdb()  # the bench's own database
        if session.scratch:
            session.scratch.__exit__(None, None, None)

    # -- workers --------------------------------------------------------------------------------

    def start_worker(self, session: Session, name: str = "w") -> subprocess.Popen:
        return self._start_worker(session.env, session.queue, name)

    def _start_worker(self, env: dict[str, str], queue: str, name: str) -> subprocess.Popen:
        name = re.sub(r"\W+", "_", name)
        log = open(self.log_dir / f"{queue}-{name}.log", "w")  # noqa: SIM115  (owned by the process)
        argv = [
            CELERY, "-A", env.get("BENCH_APP", "bench.tasks"), "worker", "-P", "prefork", "-c", "2",
            "-Q", queue, "-l", "warning", "--without-mingle", "--without-gossip", "--without-heartbeat",
            "-n", f"{queue}-{name}@%h",
        ]  # fmt: skip
        return subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def stop_workers(self, workers: list[subprocess.Popen]) -> None:
        for worker in workers:  # cold shutdown: nothing they hold matters any more
            worker.send_signal(signal.SIGQUIT)
        for worker in workers:
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait(10)

    def _stop_worker(self, worker: subprocess.Popen) -> None:
        self.stop_workers([worker])

    # -- measurements ---------------------------------------------------------------------------

    def arm(self, session: Session) -> None:
        """Before the workers start: the drain's size, which also closes its start gate."""
        self.side.set(f"{session.run}:total", session.backlog)

    def drain(self, session: Session, workers: list[subprocess.Popen], timeout: float = 300) -> Drain:
        """Waits until each pool child holds a task at the gate, opens it, and times the backlog."""
        run, children = session.run, 2 * len(workers)
        deadline = time.monotonic() + timeout
        while self.side.scard(f"{run}:children") < children:
            _check(workers, deadline, f"{session.target.label}: {children} pool children never all started")
            time.sleep(0.02)
        before, mark = procs.cpu_sample(), time.perf_counter()
        go = time.time()
        self.side.set(f"{run}:go", go)
        while not self.side.exists(f"{run}:last"):
            done = self.side.get(f"{run}:count")
            _check(workers, deadline, f"{session.target.label}: drain stalled at {done}")
            time.sleep(0.005)
        after, seconds = procs.cpu_sample(), time.perf_counter() - mark
        elapsed = float(self.side.get(f"{run}:last")) - go
        pids = {pid for w in workers for pid in procs.tree(w.pid)}
        ours = session.scratch.backends() if session.scratch else set()
        split = procs.CpuSplit.between(before, after, seconds, pids, ours)
        return Drain(session.backlog / elapsed, elapsed, split)

    def held(self, workers: list[subprocess.Popen]) -> Held:
        pids = [pid for w in workers for pid in procs.tree(w.pid)]
        return Held(procs.rss_mib(pids), connections(pids), len(pids))

    def pickup(self, session: Session, samples: int, warmup: int = 5) -> list[float]:
        """Publish → task start, one ping at a time against the idle worker, in seconds."""
        key, ping = f"{session.run}:latency", session.producer.tasks["bench.ping"]
        values: list[float] = []
        for i in range(samples + warmup):  # the first few warm the idle path up
            ping.delay(session.run, time.time())
            popped = self.side.blpop([key], timeout=30)
            if popped is None:
                raise TimeoutError(f"{session.target.label}: a ping never ran")
            if i >= warmup:
                values.append(float(popped[1]))
            time.sleep(0.01)  # let the worker settle back to idle
        return values

    # The names python -m bench.trace uses.
    _open, _close = open, close


def connections(pids: list[int]) -> int:
    """Connections these processes hold to PostgreSQL and to Redis, the side channel not counted."""
    peers = procs.tcp_peers(pids)
    pg_port, redis_port = port_of(server_url(), 5432), port_of(REDIS, 6379)
    count = sum(1 for _, remote in peers if remote == pg_port)
    count += procs.unix_connections(pids, f".s.PGSQL.{pg_port}")  # a server on a socket directory
    ours = {local for local, remote in peers if remote == redis_port}
    if ours:
        for client in redis.Redis.from_url(REDIS).client_list():
            if int(client["addr"].rsplit(":", 1)[1]) in ours and int(client["db"]) != SIDE_DB:
                count += 1
    return count


def _check(workers: list[subprocess.Popen], deadline: float, message: str) -> None:
    if time.monotonic() > deadline or any(w.poll() is not None for w in workers):
        raise TimeoutError(message + " (worker logs: " + ", ".join(str(w.args[-1]) for w in workers) + ")")


def _nothing(*_: Any) -> None:
    """The producer's stand-in for a task the workers run."""
