"""``python -m bench.scaleout [--processes N ...] [--no-write]``: drain against worker processes.

zeke's setup (pgboss broker + pgboss result backend) drains one backlog with 1, 2, 4 and 8
``celery worker -P prefork -c 2`` processes (the process counts taking turns over the rounds). The
drain is timed from the moment every pool child of every worker holds a task to the last task's
end. Meanwhile ``/proc`` gives the CPU each party used (the workers, PostgreSQL, Redis as the side
channel, the rest of the host) in vCPUs, and ``pg_stat_database`` the commits per task. The
section "Scale-out: drain against worker processes" of ``BENCHMARKS.md``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.config import REDIS, SIDE_DB, quick, server_url, sizes
from bench.procs import PARTIES
from bench.report import load, publish
from bench.runner import Bench, Drain, Session
from bench.targets import ZEKE, targets

TITLE = "Scale-out: drain against worker processes"


@dataclass
class Point:
    processes: int
    drains: list[Drain] = field(default_factory=list)
    connections: list[int] = field(default_factory=list)
    commits_per_task: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return statistics.median(d.rate for d in self.drains)

    def vcpus(self, party: str) -> float:
        return statistics.median(d.cpu.vcpus[party] for d in self.drains)

    @property
    def host(self) -> float:
        return statistics.median(d.cpu.host_vcpus for d in self.drains)

    @property
    def commits(self) -> float:
        return statistics.median(self.commits_per_task)


def measure(bench: Bench, point: Point, jobs: int) -> None:
    target = next(t for t in targets(bench.admin_url) if t.key == ZEKE)
    session = bench.open(target)
    assert session.scratch is not None
    workers: list[subprocess.Popen] = []
    try:
        _publish(session, jobs)
        commits = session.scratch.commits()
        bench.arm(session)
        workers = [bench.start_worker(session, f"w{i}") for i in range(point.processes)]
        point.drains.append(bench.drain(session, workers))
        point.connections.append(bench.held(workers).connections)
        bench.stop_workers(workers)
        time.sleep(0.5)  # a backend reports its last statistics as it exits
        point.commits_per_task.append((session.scratch.commits() - commits) / jobs)
    finally:
        bench.stop_workers(workers)
        bench.close(session)


def _publish(session: Session, jobs: int) -> None:
    """The backlog, as one ``group()`` sent by a child process: its database sessions end with it, so
    the statistics hold all of its commits before the drain's are counted."""
    child = multiprocessing.get_context("fork").Process(target=_send_group, args=(session, jobs))
    child.start()
    child.join(600)
    if child.exitcode != 0:
        raise RuntimeError(f"publishing the backlog failed (exit {child.exitcode})")
    session.backlog += jobs
    time.sleep(0.3)


def _send_group(session: Session, jobs: int) -> None:
    session.group(jobs)
    os._exit(0)  # the sessions end with the process, nothing flushed twice


def render(points: list[Point], jobs: int, rounds: int) -> str:
    cpus = os.cpu_count() or 1
    header = "| worker processes (`-c 2`) | drain tasks/s | × 1 process | " + " | ".join(
        f"{p} vCPUs" for p in PARTIES
    )
    header += " | host vCPUs busy | commits per task | connections |"
    lines = [header, "|---:|---:|---:|" + "---:|" * len(PARTIES) + "---:|---:|---:|"]
    first = points[0].rate
    for p in points:
        commits = f"{p.commits:.2f}"
        cells = [str(p.processes), f"{p.rate:,.0f}", f"{p.rate / first:.2f}×"]
        cells += [f"{p.vcpus(party):.2f}" for party in PARTIES]
        cells += [f"{p.host:.2f} of {cpus}", commits, str(max(p.connections))]
        lines.append("| " + " | ".join(cells) + " |")
    best = max(points, key=lambda p: p.rate)
    return (
        "\n".join(lines)
        + f"\n\nzeke's setup (pgboss broker + pgboss result backend), a backlog of {jobs:,} no-op tasks sent "
        f"as one `group()`, median of {rounds} round(s). vCPUs: CPU seconds per second of drain, from "
        "`/proc`: the workers (main processes and pool children), PostgreSQL's backends serving the bench's "
        "database, the rest of PostgreSQL (WAL writer, checkpointer, other databases' backends), Redis "
        '(the side channel each task reports to), and "other": the rest of the host, other work '
        "sharing it. Commits per task: "
        "`pg_stat_database.xact_commit` of the scratch database from the workers' start to their exit, "
        "over the backlog. Connections: what "
        "all the workers hold, idle after the drain.\n\n" + flattening(points, best, cpus)
    )


def flattening(points: list[Point], best: Point, cpus: int) -> str:
    """Where the curve stops rising, and what the host's CPUs were doing there."""
    steps = [
        f"{a.processes} → {b.processes} processes: {b.rate / a.rate - 1:+.0%}"
        for a, b in zip(points, points[1:], strict=False)
    ]
    return (
        f"Steps: {'; '.join(steps)}. The fastest point is {best.processes} process(es) at "
        f"{best.rate:,.0f} tasks/s, with {best.host:.2f} of the host's {cpus} vCPUs busy: workers "
        f"{best.vcpus('workers'):.2f}, PostgreSQL for the bench's database "
        f"{best.vcpus('postgres (bench db)'):.2f} and for the rest of the server "
        f"{best.vcpus('postgres (rest)'):.2f}, Redis {best.vcpus('redis'):.2f}, "
        f"other work {best.vcpus('other'):.2f}."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scaleout", description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, nargs="*", help="worker process counts (default 1 2 4 8)")
    parser.add_argument("--jobs", type=int, help="backlog per drain")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    parser.add_argument("--out", type=Path, help="the Markdown file to write the section into")
    args = parser.parse_args(argv)
    s = sizes()
    counts, jobs = args.processes or s.processes, args.jobs or s.scaleout_jobs
    rounds = args.rounds or s.scaleout_rounds
    bench = Bench(
        admin_url=server_url(),
        side_url=f"{REDIS}/{SIDE_DB}",
        log_dir=Path(tempfile.mkdtemp(prefix="zeke-scaleout-")),
    )
    points = {n: Point(n) for n in counts}
    loads = []
    for number in range(rounds):
        start = load()
        turn = number % len(counts)
        for n in counts[turn:] + counts[:turn]:
            print(f"… {n} worker process(es), round {number + 1}", file=sys.stderr, flush=True)
            measure(bench, points[n], jobs)
        loads.append((start, load()))
    text = render([points[n] for n in counts], jobs, rounds)
    print(text)
    if args.out or not (args.no_write or quick()):
        publish(TITLE, "python -m bench.scaleout", argv, text, loads, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
