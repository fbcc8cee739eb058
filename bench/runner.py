"""One broker under test: its database, a worker process, and the three measurements."""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg2
import redis
from celery import Celery

import transport  # noqa: F401  (registers pgboss://)
from transport.db import dsn_from_url

ROOT = Path(__file__).resolve().parent.parent
CELERY = str(Path(sys.executable).with_name("celery"))


def server_url() -> str:
    """The PostgreSQL server the benchmarks make their scratch databases on."""
    return os.environ.get("DATABASE_PRIMARY_URL") or "postgresql://postgres@127.0.0.1:5432/postgres"


@dataclass
class Target:
    """A broker configuration: ``broker_url`` (``{db}`` is replaced by a scratch database)."""

    label: str
    broker_url: str
    options: dict[str, Any] = field(default_factory=dict)
    result_backend: str | None = None
    #: Caps for slow brokers (None: the run's defaults).
    max_jobs: int | None = None
    max_samples: int | None = None
    max_rounds: int | None = None
    note: str = ""


@dataclass
class Result:
    """One target's measurements, merged over rounds (rates: median of rounds; latency: all samples)."""

    target: Target
    jobs: int
    enqueue_rates: list[float] = field(default_factory=list)
    drain_rates: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)

    @property
    def rounds(self) -> int:
        return len(self.drain_rates)

    @property
    def samples(self) -> int:
        return len(self.latencies)

    @property
    def enqueue_rate(self) -> float:
        return statistics.median(self.enqueue_rates)

    @property
    def drain_rate(self) -> float:
        return statistics.median(self.drain_rates)

    @property
    def p50_ms(self) -> float:
        return statistics.median(self.latencies) * 1000

    @property
    def p99_ms(self) -> float:
        return _percentile(self.latencies, 0.99) * 1000

    def merge(self, other: Result) -> None:
        self.enqueue_rates += other.enqueue_rates
        self.drain_rates += other.drain_rates
        self.latencies += other.latencies


class Scratch:
    """A PostgreSQL database for one target, created empty and dropped afterwards."""

    def __init__(self, admin_url: str) -> None:
        self.admin_dsn = dsn_from_url(admin_url)
        self.name = "zeke_bench_" + uuid.uuid4().hex[:8]

    def _admin(self, sql: str) -> None:
        conn = psycopg2.connect(self.admin_dsn)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(sql)
        finally:
            conn.close()

    def __enter__(self) -> str:
        self._admin(f'CREATE DATABASE "{self.name}"')
        return self.name

    def __exit__(self, *exc: object) -> None:
        self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


@dataclass
class Session:
    """One target's part of a round: its scratch database, producer, run id and queue."""

    target: Target
    scratch: Scratch | None
    run: str
    jobs: int
    samples: int
    env: dict[str, str]
    producer: Celery
    warmup: int = 20
    enqueue_seconds: float = 0.0
    sent: int = 0

    @property
    def queue(self) -> str:
        return self.run


class Bench:
    def __init__(self, *, admin_url: str, side_url: str, jobs: int, samples: int, log_dir: Path) -> None:
        self.admin_url = admin_url
        self.side = redis.Redis.from_url(side_url)
        self.side_url = side_url
        self.jobs = jobs
        self.samples = samples
        self.log_dir = log_dir

    def round(self, targets: list[Target], chunk: int = 250) -> list[Result]:
        """Every target once. Producers take turns sending ``chunk`` tasks each, so the enqueue rates
        see the same background load; then each target's worker drains and answers pings."""
        sessions = [self._open(target) for target in targets]
        try:
            for session in sessions:  # declares the queue, opens connections
                for _ in range(session.warmup):
                    session.producer.send_task("bench.noop", args=(session.run,), queue=session.queue)
            while any(s.sent < s.jobs for s in sessions):
                for session in sessions:
                    count = min(chunk, session.jobs - session.sent)
                    if count <= 0:
                        continue
                    started = time.perf_counter()
                    for _ in range(count):
                        session.producer.send_task("bench.noop", args=(session.run,), queue=session.queue)
                    session.enqueue_seconds += time.perf_counter() - started
                    session.sent += count
            results = []
            for session in sessions:
                print(f"… {session.target.label}", file=sys.stderr, flush=True)
                results.append(self._consume(session))
            return results
        finally:
            for session in sessions:
                self._close(session)

    def _open(self, target: Target) -> Session:
        scratch = Scratch(self.admin_url) if "{db}" in target.broker_url else None
        db = scratch.__enter__() if scratch else ""
        broker_url = target.broker_url.replace("{db}", db)
        backend = target.result_backend.replace("{db}", db) if target.result_backend else None
        run = "bench-" + uuid.uuid4().hex[:8]
        env = {
            **os.environ,
            "BENCH_BROKER_URL": broker_url,
            "BENCH_RESULT_BACKEND": backend or "",
            "BENCH_TRANSPORT_OPTIONS": json.dumps(target.options),
            "BENCH_SIDE_URL": self.side_url,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        producer = Celery("bench-producer", broker=broker_url, backend=backend)
        producer.conf.update(
            broker_transport_options=target.options,
            result_backend_transport_options=target.options,
            task_serializer="json",
            task_ignore_result=backend is None,
        )
        return Session(
            target,
            scratch,
            run,
            min(self.jobs, target.max_jobs or self.jobs),
            min(self.samples, target.max_samples or self.samples),
            env,
            producer,
        )

    def _close(self, session: Session) -> None:
        session.producer.close()
        for key in self.side.scan_iter(f"{session.run}:*"):
            self.side.delete(key)
        if session.scratch:
            session.scratch.__exit__(None, None, None)

    def _consume(self, session: Session) -> Result:
        total = session.jobs + session.warmup
        self.side.set(f"{session.run}:total", total)
        phases = {"enqueue": session.enqueue_seconds}
        mark = time.perf_counter()
        worker = self._start_worker(session.env, session.queue, session.target.label)
        try:
            drain_rate = self._drain(session.run, total)
            phases["start+drain"] = time.perf_counter() - mark
            mark = time.perf_counter()
            latencies = self._latency(session.producer, session.run, session.queue, session.samples)
            phases["latency"] = time.perf_counter() - mark
        finally:
            mark = time.perf_counter()
            self._stop_worker(worker)
            phases["stop"] = time.perf_counter() - mark
        print("   ", ", ".join(f"{k} {v:.1f}s" for k, v in phases.items()), file=sys.stderr, flush=True)
        enqueue_rate = session.jobs / session.enqueue_seconds
        return Result(session.target, session.jobs, [enqueue_rate], [drain_rate], latencies)

    def _start_worker(self, env: dict[str, str], queue: str, label: str) -> subprocess.Popen:
        log = open(self.log_dir / f"{queue}.log", "w")  # noqa: SIM115  (owned by the process)
        argv = [
            CELERY, "-A", env.get("BENCH_APP", "bench.tasks"), "worker", "-P", "prefork", "-c", "2",
            "-Q", queue, "-l", "warning",
            "--without-mingle", "--without-gossip", "--without-heartbeat", "-n", f"bench-{queue}@%h",
        ]  # fmt: skip
        return subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def _stop_worker(self, worker: subprocess.Popen) -> None:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(10)

    def _drain(self, run: str, total: int, timeout: float = 240) -> float:
        deadline = time.monotonic() + timeout
        while not self.side.get(f"{run}:last"):
            if time.monotonic() > deadline:
                done = int(self.side.get(f"{run}:count") or 0)
                raise TimeoutError(f"drain did not finish: {done}/{total} tasks ran")
            time.sleep(0.05)
        first = float(self.side.get(f"{run}:first"))
        last = float(self.side.get(f"{run}:last"))
        return (total - 1) / (last - first)

    def _latency(self, producer: Celery, run: str, queue: str, samples: int) -> list[float]:
        key = f"{run}:latency"
        values: list[float] = []
        for i in range(samples + 10):  # the first ten warm the idle path up
            producer.send_task("bench.ping", args=(run, time.time()), queue=queue)
            popped = self.side.blpop([key], timeout=30)
            if popped is None:
                raise TimeoutError("a ping never ran")
            if i >= 10:
                values.append(float(popped[1]))
            time.sleep(0.01)  # let the worker settle back to idle
        return values


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]
