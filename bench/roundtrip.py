"""``python -m bench.roundtrip``: ``delay().get()`` latency, pg-boss broker + backend against Redis + Redis.

Each target gets a fresh store (a scratch PostgreSQL database; a flushed Redis database), one real
``celery worker`` process (prefork, 2 children) running this module's app, and a client in this
process that sends one task at a time and waits for its result, so every sample is a full round
trip: publish → worker wake-up → run → store result → waiter wake-up → read result.

Options: ``--samples N`` (default 300), ``--warmup N`` (default 30), ``--only pgboss|redis``.
Environment: ``DATABASE_PRIMARY_URL`` (the server; a scratch database is made on it),
``BENCH_REDIS_URL`` (default ``redis://127.0.0.1:6379``; database 12 is flushed and used).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg2
from celery import Celery

import transport  # noqa: F401  (registers pgboss://)
from bench.report import record
from bench.runner import server_url
from transport.db import dsn_from_url

ROOT = Path(__file__).resolve().parent.parent
QUEUE = "roundtrip"

#: The worker side: broker and backend come from the environment the runner sets.
app = Celery("roundtrip")
app.conf.update(
    broker_url=os.environ.get("ROUNDTRIP_BROKER", "memory://"),
    result_backend=os.environ.get("ROUNDTRIP_BACKEND") or None,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    task_acks_late=True,
    worker_prefetch_multiplier=4,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)


@app.task(name="roundtrip.add")
def add(x: int, y: int) -> int:
    return x + y


@dataclass
class Latency:
    label: str
    samples: list[float]
    #: Resident memory of the worker (main process + pool children) after the run, in MiB.
    worker_rss_mib: float = 0.0

    def percentile(self, q: float) -> float:
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    @property
    def p50(self) -> float:
        return statistics.median(self.samples)

    @property
    def p99(self) -> float:
        return self.percentile(0.99)


def measure(label: str, broker: str, backend: str, samples: int, warmup: int, log: Path) -> Latency:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CELERY_")}
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env.update(ROUNDTRIP_BROKER=broker, ROUNDTRIP_BACKEND=backend, PYTHONPATH=path, PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "celery", "-A", "bench.roundtrip", "worker", "-P", "prefork", "-c", "2"]
    cmd += ["-Q", QUEUE, "-l", "warning", "--without-gossip", "--without-mingle", "--without-heartbeat"]
    client = Celery("roundtrip-client", set_as_current=False)
    client.conf.update(broker_url=broker, result_backend=backend, task_default_queue=QUEUE)
    with open(log, "wb") as out:
        worker = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        client.send_task("roundtrip.add", (0, 0)).get(timeout=120)  # the worker is up
        for i in range(warmup):
            client.send_task("roundtrip.add", (i, i)).get(timeout=30)
        timings: list[float] = []
        for i in range(samples):
            started = time.perf_counter()
            assert client.send_task("roundtrip.add", (i, 1)).get(timeout=30) == i + 1
            timings.append((time.perf_counter() - started) * 1000)
        return Latency(label, timings, worker_rss_mib=_tree_rss_mib(worker.pid))
    finally:
        worker.terminate()
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        if broker.startswith("pgboss://"):
            client.backend.close()  # before its database is dropped
        client.close()


def _tree_rss_mib(pid: int) -> float:
    """Resident memory of a process and its children, from /proc (Linux)."""
    total_kib = 0
    pids = [pid]
    for child in Path(f"/proc/{pid}/task").glob("*/children"):
        pids += [int(p) for p in child.read_text().split()]
    for each in pids:
        try:
            status = Path(f"/proc/{each}/status").read_text()
        except OSError:
            continue
        total_kib += next(
            (int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0
        )
    return total_kib / 1024


def _scratch_database(admin_url: str, name: str, *, drop: bool = False) -> None:
    conn = psycopg2.connect(dsn_from_url(admin_url))
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(
                f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)' if drop else f'CREATE DATABASE "{name}"'
            )
    finally:
        conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.roundtrip", description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--only", choices=("pgboss", "redis"))
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args(argv)

    pg = server_url()
    redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379").rstrip("/") + "/12"
    logs = Path(tempfile.mkdtemp(prefix="zeke-roundtrip-"))
    results: list[Latency] = []
    if args.only in (None, "redis"):
        import redis

        redis.Redis.from_url(redis_url).flushdb()
        results.append(
            measure("redis + redis", redis_url, redis_url, args.samples, args.warmup, logs / "redis.log")
        )
    if args.only in (None, "pgboss"):
        name = "zeke_roundtrip_" + uuid.uuid4().hex[:8]
        _scratch_database(pg, name)
        try:
            server = dsn_from_url(pg).rsplit("/", 1)[0].split("://", 1)[1]
            url = f"pgboss://{server}/{name}"
            results.append(
                measure("pgboss + pgboss", url, url, args.samples, args.warmup, logs / "pgboss.log")
            )
        finally:
            _scratch_database(pg, name, drop=True)

    rows = [
        "| broker + backend | p50 ms | p99 ms | mean ms | p50 vs Redis | worker RSS MiB (main + children) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    base = results[0].p50 if results and results[0].label.startswith("redis") else None
    for r in results:
        ratio = f"{r.p50 / base:.2f}×" if base else "–"
        rows.append(
            f"| {r.label} | {r.p50:.2f} | {r.p99:.2f} | {statistics.fmean(r.samples):.2f} | {ratio} "
            f"| {r.worker_rss_mib:.0f} |"
        )
    body = "\n".join(rows) + (
        f"\n\n`task.delay().get()` of a no-op task, {args.samples} sequential samples after {args.warmup} "
        "warm-up calls; worker `-P prefork -c 2`. Target: p50 ≤ 1.2× Redis."
    )
    print(body)
    if not args.no_write and len(results) == 2:
        record("Round trip and worker memory", pg, "python -m bench.roundtrip", [], body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
