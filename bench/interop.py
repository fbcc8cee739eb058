"""``python -m bench.interop [--samples N] [--only RELEASE ...] [--no-write]``: Node ⇄ Python latency.

For each Node pg-boss release of the interop matrix (12.38.1 on the schema zeke installs, 12.34.0
and 12.5.4 on the schemas they install), in a scratch database of its own, with one real
``celery worker`` (prefork, 1 child) and Node processes from ``tests/node/latency.mjs``:

* Node send → Python pickup: Node sends ``--samples`` jobs to a queue the worker consumes, one at a
  time (the next once the last completed, after a random pause of up to 2.5 s, so a pickup never
  waits behind another job nor keeps step with a poller); pickup is the job's
  ``started_on - created_on`` (both stamped by the database);
* Python send → Node pickup: ``send_task`` to a queue a Node worker serves with pg-boss's defaults
  (polling every 2 s, no LISTEN), and again with ``useListenNotify: true`` where the schema has
  ``notify``; one at a time in the same way; same measure;
* Node settle → ``AsyncResult.get()``: a Python client sends a task the Node worker completes and
  waits for its result; from the job's ``completed_on`` to ``get()`` returning (one host, one clock).

Environment: ``DATABASE_PRIMARY_URL`` (the server; scratch databases are made on it).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from celery import Celery

import transport  # noqa: F401  (registers pgboss://)
from bench.config import database_url
from bench.report import record
from bench.runner import Scratch, server_url
from transport.db import Database, dsn_from_url
from transport.manager import JobManager

ROOT = Path(__file__).resolve().parent.parent
NODE_SCRIPT = ROOT / "tests" / "node" / "latency.mjs"
#: Matrix release (tests/node alias) -> (npm version, the schema it runs on).
RELEASES = {"12.38": ("12.38.1", 46), "12.34": ("12.34.0", 42), "12.5": ("12.5.4", 26)}
SCHEMA = "pgboss"
TO_PYTHON, TO_NODE = "to-python", "to-node"
#: Most seconds between one sample's end and the next send: more than a 2-s poll, so sends do not
#: fall into step with a poller's phase.
GAP = 2.5

#: The worker side: broker and backend from the environment the bench sets.
app = Celery("interop")
app.conf.update(
    broker_url=os.environ.get("INTEROP_URL", "memory://"),
    result_backend=os.environ.get("INTEROP_URL") or None,
    broker_transport_options={"schema": SCHEMA},
    result_backend_transport_options={"schema": SCHEMA},
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    task_acks_late=True,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)


@app.task(name=TO_PYTHON)
def to_python(**data: object) -> dict:
    """Runs the jobs Node sends to queue ``to-python`` (the task named like the queue)."""
    return {"python": True}


@dataclass
class Row:
    release: str
    node_to_python: list[float] = field(default_factory=list)
    python_to_node: list[float] = field(default_factory=list)
    python_to_node_listen: list[float] = field(default_factory=list)
    settle_to_get: list[float] = field(default_factory=list)


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def cell(samples: list[float]) -> str:
    if not samples:
        return "–"
    return f"{statistics.median(samples):.0f} / {pct(samples, 0.99):.0f}"


def node(release: str, url: str, command: str, **options: object) -> list[str]:
    argv = ["node", str(NODE_SCRIPT), release, dsn_from_url(url), SCHEMA, command]
    for key, value in options.items():
        argv += [f"--{key}", str(value).lower() if isinstance(value, bool) else str(value)]
    return argv


def run_node(release: str, url: str, command: str, **options: object) -> dict:
    done = subprocess.run(node(release, url, command, **options), capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"node {command} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


@contextmanager
def process(argv: list[str], log: Path, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen]:
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=out)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_done(boss: JobManager, queue: str, ids: list[str], timeout: float = 300, poll: float = 0.2) -> list:
    deadline = time.monotonic() + timeout
    while True:
        jobs = [boss.get_job(i) for i in ids]
        if all(j and j["state"] == "completed" for j in jobs):
            return jobs
        if time.monotonic() > deadline:
            raise TimeoutError(f"{queue}: not every job completed")
        time.sleep(poll)


def pickups(jobs: list[dict]) -> list[float]:
    return [(j["started_on"] - j["created_on"]).total_seconds() * 1000 for j in jobs]


def measure(release: str, samples: int, logs: Path) -> Row:
    row = Row(release)
    with Scratch(server_url()) as db:
        url = database_url(server_url(), db)
        if RELEASES[release][1] != 46:
            run_node(release, url, "install")
        database = Database(url, application_name="bench-interop")
        boss = JobManager(database, SCHEMA)  # installs schema 46 where nothing is there
        assert boss.info.version == RELEASES[release][1]
        pgboss_url = "pgboss://" + url.split("://", 1)[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("CELERY_")}
        env.update(INTEROP_URL=pgboss_url, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        worker_argv = [sys.executable, "-m", "celery", "-A", "bench.interop", "worker", "-P", "prefork"]
        worker_argv += ["-c", "1", "-Q", TO_PYTHON, "-l", "warning", "--without-gossip", "--without-mingle"]
        client = Celery("interop-client", set_as_current=False)
        client.conf.update(
            broker_url=pgboss_url,
            result_backend=pgboss_url,
            broker_transport_options={"schema": SCHEMA},
            result_backend_transport_options={"schema": SCHEMA},
        )
        boss.create_queue(TO_PYTHON)  # as a Node service would have: notify off until the worker consumes
        try:
            with process(worker_argv, logs / f"worker-{release}.log", env):
                # Warm-up: the worker is up once it has run a job Node sent.
                warm = run_node(release, url, "send", queue=TO_PYTHON, count=1)["ids"]
                wait_done(boss, TO_PYTHON, warm, timeout=120)
                gap_ms = int(GAP * 1000)
                ids = run_node(release, url, "send", queue=TO_PYTHON, count=samples, gap=gap_ms)["ids"]
                row.node_to_python = pickups(wait_done(boss, TO_PYTHON, ids))

            boss.create_queue(TO_NODE)
            variants = [(False, row.python_to_node)]
            if boss.info.has("notify"):
                boss.enable_notify(TO_NODE)
                variants.append((True, row.python_to_node_listen))
            for listen, into in variants:
                serve = node(release, url, "serve", queue=TO_NODE, seconds=3600, listen=listen)
                with process(serve, logs / f"node-{release}-{listen}.log") as proc:
                    assert json.loads(proc.stdout.readline()) == {"ready": True}
                    sent = []
                    for _ in range(samples):
                        sent.append(client.send_task("node.job", queue=TO_NODE).id)
                        wait_done(boss, TO_NODE, sent[-1:], poll=0.01)
                        time.sleep(random.random() * GAP)
                    into += pickups(wait_done(boss, TO_NODE, sent))
                    if not listen:
                        for _ in range(samples):
                            result = client.send_task("node.job", queue=TO_NODE)
                            assert result.get(timeout=60) == {"node": True}
                            returned = time.time()
                            completed = boss.get_job(result.id)["completed_on"].timestamp()
                            row.settle_to_get.append((returned - completed) * 1000)
        finally:
            client.backend.close()
            client.close()
            database.close()
    return row


def body(rows: list[Row], samples: int) -> str:
    lines = [
        "p50 / p99 in ms; each cell is " + str(samples) + " samples.",
        "",
        "| Node release (schema) | Node send → Python pickup | Python send → Node pickup (Node's default "
        "polling) | Python send → Node pickup (Node `useListenNotify`) | Node settle → Python `get()` |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        version, schema = RELEASES[r.release]
        series = (r.node_to_python, r.python_to_node, r.python_to_node_listen, r.settle_to_get)
        cells = [cell(s) for s in series]
        lines.append(f"| {version} ({schema}) | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\n" + READING


#: What the columns show, printed under the table.
READING = """\
Node send → Python pickup is a NOTIFY where the schema has `notify` (the worker turned it on for the
queue, and each Node process here started afterwards); on schema 26, which has none, it is the
worker's safety poll, every 2 s there (Node's own default polling), so about 1 s on average, as a
Node worker's would be. Python send → Node pickup with pg-boss's defaults is Node's 2-s poll (Node
LISTENs only with `useListenNotify`); with it, the NOTIFY every Python send makes. Node settle →
`get()`: a Node worker's completion sends no NOTIFY, so the waiting client re-reads the awaited id
every 25–100 ms while no zeke worker has announced it running."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.interop", description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--only", nargs="*", choices=list(RELEASES), default=list(RELEASES))
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args(argv)
    logs = Path(os.environ.get("TMPDIR", "/tmp")) / f"zeke-bench-interop-{uuid.uuid4().hex[:6]}"
    logs.mkdir(parents=True)
    rows = [measure(release, args.samples, logs) for release in args.only]
    text = body(rows, args.samples)
    print(text)
    if not args.no_write:
        record("Node ⇄ Python latency", server_url(), "python -m bench.interop", argv, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
