"""``python -m bench.budget [--jobs N] [--no-write]``: the CPU a drained task costs, process by process.

The drain of ``python -m bench`` (prefork ``-c 2``, no-op task) runs every party on the same vCPUs:
the worker's main process, its two pool children, PostgreSQL and Redis (the side channel every
task writes to, and the broker of the Redis run). This drains a backlog per broker and, over the
middle of the drain (from 15% to 85% of the tasks done), reads each party's CPU time from
``/proc``: CPU milliseconds per task, and the rate this host's vCPUs could reach at that cost if
nothing waited. A drain target is only reachable where that ceiling is above it.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.__main__ import REDIS, targets
from bench.report import record
from bench.runner import Bench, Target, server_url

#: The parties, in the table's order; everything else running meanwhile is "other".
PARTIES = ("worker main", "pool children", "postgres", "redis-server", "other")
#: The share of the drain measured (its start and its tail are the worker's, not the broker's).
WINDOW = (0.15, 0.85)
TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class Budget:
    label: str
    rate: float
    #: CPU ms per task, by party.
    per_task: dict[str, float]
    #: Share of the host's vCPUs busy meanwhile.
    busy: float

    @property
    def total(self) -> float:
        return sum(self.per_task.values())

    @property
    def ceiling(self) -> float:
        """Tasks/s the vCPUs could run at this cost if every one were busy all the time."""
        return (os.cpu_count() or 1) * 1000 / self.total


def _process_times(worker_pid: int) -> dict[str, float]:
    """CPU seconds so far of each party's processes."""
    seconds = dict.fromkeys(PARTIES[:-1], 0.0)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                raw = f.read()
        except OSError:
            continue  # gone meanwhile
        comm = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2 :].split()
        ppid, cpu = int(fields[1]), (int(fields[11]) + int(fields[12])) / TICK
        if int(entry) == worker_pid:
            seconds["worker main"] += cpu
        elif ppid == worker_pid:
            seconds["pool children"] += cpu
        elif comm.startswith("postgres"):
            seconds["postgres"] += cpu
        elif comm.startswith("redis-server"):
            seconds["redis-server"] += cpu
    return seconds


def _host_times() -> tuple[float, float]:
    """(busy, total) CPU seconds of the host so far."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]
    return (sum(values) - idle) / TICK, sum(values) / TICK


def _snapshot(worker_pid: int) -> tuple[float, dict[str, float], tuple[float, float]]:
    return time.perf_counter(), _process_times(worker_pid), _host_times()


def measure(bench: Bench, target: Target, jobs: int) -> Budget:
    session = bench._open(target)
    worker = None
    try:
        for _ in range(jobs):
            session.producer.send_task("bench.noop", args=(session.run,), queue=session.queue)
        bench.side.set(f"{session.run}:total", jobs)
        worker = bench._start_worker(session.env, session.queue, target.label)
        marks = []
        for share in WINDOW:
            deadline = time.monotonic() + 240
            while int(bench.side.get(f"{session.run}:count") or 0) < share * jobs:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{target.label}: the drain stalled")
                time.sleep(0.01)
            marks.append((int(bench.side.get(f"{session.run}:count") or 0), _snapshot(worker.pid)))
        (done0, (t0, cpu0, host0)), (done1, (t1, cpu1, host1)) = marks
        tasks = done1 - done0
        per_task = {party: (cpu1[party] - cpu0[party]) * 1000 / tasks for party in PARTIES[:-1]}
        host_busy = host1[0] - host0[0]
        per_task["other"] = max(0.0, host_busy * 1000 / tasks - sum(per_task.values()))
        busy = host_busy / (host1[1] - host0[1])
        return Budget(target.label, tasks / (t1 - t0), per_task, busy)
    finally:
        if worker is not None:
            bench._stop_worker(worker)
        bench._close(session)


def table(budgets: list[Budget]) -> str:
    cpus = os.cpu_count() or 1
    header = "| broker | drain tasks/s | " + " | ".join(PARTIES) + " | total | host busy | ceiling tasks/s |"
    lines = [header, "|---|---:|" + "---:|" * len(PARTIES) + "---:|---:|---:|"]
    for b in budgets:
        cells = [f"`{b.label}`", f"{b.rate:,.0f}", *(f"{b.per_task[p]:.3f}" for p in PARTIES)]
        cells += [f"{b.total:.3f}", f"{b.busy * cpus:.2f} of {cpus} vCPUs", f"{b.ceiling:,.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    text = "\n".join(lines)
    text += (
        f"\n\nCPU ms per task over the middle of the drain ({WINDOW[0]:.0%}–{WINDOW[1]:.0%} done); "
        f"the ceiling is {cpus} vCPUs divided by the total."
    )
    sqla = next((b for b in budgets if b.label.startswith("sqla")), None)
    ours = next((b for b in budgets if b.label == "pgboss://"), None)
    if sqla and ours:
        goal = 6 * sqla.rate
        allowed = cpus * 1000 / goal
        text += (
            f" Drain ≥ 6× kombu-sqla is {goal:,.0f} tasks/s here: at most {allowed:.3f} CPU ms per "
            f"task for everything, where `pgboss://` takes {ours.total:.3f}, of which its worker's "
            f"pool children and Redis alone take "
            f"{ours.per_task['pool children'] + ours.per_task['redis-server']:.3f} "
            f"and PostgreSQL {ours.per_task['postgres']:.3f}."
        )
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.budget", description=__doc__)
    parser.add_argument("--jobs", type=int, default=5000, help="backlog per broker (default 5000, as bench)")
    parser.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    args = parser.parse_args(argv)
    pg = server_url()
    chosen = [t for t in targets(pg) if t.label in ("redis://", "pgboss://", "sqla+postgresql://")]
    bench = Bench(
        admin_url=pg,
        side_url=f"{REDIS}/14",
        jobs=args.jobs,
        samples=0,
        log_dir=Path(tempfile.mkdtemp(prefix="zeke-budget-")),
    )
    budgets = []
    for target in chosen:
        print(f"… {target.label}", file=sys.stderr, flush=True)
        budgets.append(measure(bench, target, args.jobs))
    text = table(budgets)
    print(text)
    if not args.no_write:
        record("Drain: CPU per task", pg, "python -m bench.budget", argv, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
