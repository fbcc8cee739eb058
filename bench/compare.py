"""``python -m bench.compare [--only KEY ...] [--rounds N] [--no-write]``: the setups side by side.

Each round runs every setup of :mod:`bench.targets` (their order turning from round to round), with
real ``celery worker -P prefork -c 2`` processes and a no-op task:

* **enqueue**: ``delay()`` calls per second of one producer, the setups taking turns 250 calls at
  a time so they share the background load (Node: ``send()``);
* **group**: one ``group()`` of 5,000 tasks, ``apply_async()`` timed (Node: one ``insert()``;
  ``memory://``, Celery's in-process transport, is the ceiling of Celery's own message building);
* **drain**: the backlog of both, emptied by one worker; timed from the moment every pool child
  holds a task (a gate in the task) to the last task's end, so start-up is not counted;
* **worker RSS** (main process + children) and **connections** it holds to PostgreSQL/Redis (the
  benchmark's side channel not counted), idle after the drain;
* **pickup**: publish → task start, one task at a time against the idle worker, p50/p99.

Rates and RSS are the median of the rounds, connections the most any round held; pickups pool
every sample. ``BENCH_QUICK=1``
runs one small round (a smoke run). The section "Setups side by side" of ``BENCHMARKS.md``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from bench.config import REDIS, SIDE_DB, quick, server_url, sizes
from bench.measures import Measures
from bench.node import NodeSession
from bench.report import load, publish
from bench.runner import Bench, Session
from bench.tables import every_setup, headline
from bench.targets import REDIS_ON, ZEKE, Target, targets

CHUNK = 250
TITLE = "Setups side by side"


def run_round(
    bench: Bench, chosen: list[Target], results: dict[str, Measures], number: int
) -> dict[str, float]:
    """One round of every chosen setup; returns each one's drain rate in it."""
    s = sizes()
    chosen = [t for t in chosen if not t.max_rounds or number <= t.max_rounds]
    turn = number % len(chosen)
    order = chosen[turn:] + chosen[:turn]
    sessions: list[Session | NodeSession] = []
    drains: dict[str, float] = {}
    mark = time.perf_counter()
    try:
        for target in order:
            if target.node:
                sessions.append(NodeSession.open(target, bench.admin_url, bench.log_dir))
            else:
                sessions.append(bench.open(target))
        for session in sessions:  # declares queues, opens connections; joins the backlog untimed
            session.delay(5)
        while any(x.enqueued < s.jobs for x in sessions):
            for session in sessions:
                count = min(CHUNK, s.jobs - session.enqueued)
                if count > 0:
                    session.enqueue_seconds += session.delay(count)
                    session.enqueued += count
        mark = _progress(mark, "set-up and enqueue")
        for session in sessions:
            m = results[session.target.key]
            m.enqueue.append(session.enqueued / session.enqueue_seconds)
            m.group.append(s.group / session.group(s.group))
        mark = _progress(mark, "groups")
        for session in sessions:
            if session.target.sends_only:
                continue
            if isinstance(session, NodeSession):
                _node(session, results[session.target.key], s.pings)
            else:
                pings = s.slow_pings if session.target.slow_pickup else s.pings
                _celery(bench, session, results[session.target.key], pings)
            drains[session.target.key] = results[session.target.key].drain[-1]
            mark = _progress(mark, session.target.label)
    finally:
        for session in sessions:
            session.close() if isinstance(session, NodeSession) else bench.close(session)
    return drains


def _progress(since: float, what: str) -> float:
    now = time.perf_counter()
    print(f"   {what}: {now - since:.1f} s (load {load():.2f})", file=sys.stderr, flush=True)
    return now


def _celery(bench: Bench, session: Session, m: Measures, pings: int) -> None:
    bench.arm(session)
    worker = bench.start_worker(session)
    try:
        drain = bench.drain(session, [worker])
        m.drain.append(drain.rate)
        time.sleep(0.3)
        after_drain = bench.held([worker])
        m.rss_mib.append(after_drain.rss_mib)
        warmup = 1 if session.target.slow_pickup or quick() else 5
        m.pickups += bench.pickup(session, pings, warmup)
        m.connections.append(max(after_drain.connections, bench.held([worker]).connections))
    finally:
        bench.stop_workers([worker])


def _node(session: NodeSession, m: Measures, pings: int) -> None:
    m.drain.append(session.drain())
    time.sleep(0.3)
    after_drain = session.held()
    m.rss_mib.append(after_drain.rss_mib)
    m.pickups += session.pickup(pings, 1 if quick() else 5)
    m.connections.append(max(after_drain.connections, session.held().connections))


def render(
    measures: list[Measures], loads: list[tuple[float, float]], rounds: dict[int, dict[str, float]]
) -> str:
    s = sizes()
    labels = {m.target.key: m.target.label for m in measures}
    round_lines = [
        f"- round {n} (load {a:.2f} → {b:.2f}), drain tasks/s: "
        + "; ".join(f"{labels[k]} {rounds[n][k]:,.0f}" for k in labels if k in rounds[n])
        + _zeke_vs_redis(rounds[n])
        for n, (a, b) in zip(sorted(rounds), loads, strict=True)
    ]
    setups = "\n".join(f"- {m.target.label}: {m.target.note}" for m in measures)
    return f"""### zeke's setup against Celery+Redis

{headline(measures)}

### Every setup

{every_setup(measures)}

× is against Celery+Redis with the same results setting (results on for zeke's setup, off for the
others). {s.rounds} round(s); per round and setup: {s.jobs:,} `delay()` calls, one `group()` of
{s.group:,}, a drain of both, then {s.pings} pickups ({s.slow_pings} for kombu SQLAlchemy).
kombu SQLAlchemy runs in the first round only (it drains at a fraction of the others' rate).
Worker: `celery worker -P prefork -c 2` with zeke's `celeryconfig.py` (acks late, prefetch 4) for
every Celery setup; RSS and connections are the worker's (main process and children), idle after the
drain (connections: the most of any round).

{setups}

### Rounds

{chr(10).join(round_lines)}"""


def _zeke_vs_redis(drains: dict[str, float]) -> str:
    if ZEKE in drains and REDIS_ON in drains:
        return f" (zeke ÷ Celery+Redis results on: {drains[ZEKE] / drains[REDIS_ON]:.2f}×)"
    return ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", help="setups by key (zeke, pgboss, redis-on, …)")
    parser.add_argument("--rounds", type=int, help="rounds (default: 3; 1 with BENCH_QUICK=1)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    parser.add_argument("--out", type=Path, help="the Markdown file to write the section into")
    args = parser.parse_args(argv)
    pg = server_url()
    chosen = [t for t in targets(pg) if not args.only or t.key in args.only]
    logs = Path(tempfile.mkdtemp(prefix="zeke-bench-"))
    bench = Bench(admin_url=pg, side_url=f"{REDIS}/{SIDE_DB}", log_dir=logs)
    results = {t.key: Measures(t) for t in chosen}
    loads: list[tuple[float, float]] = []
    rounds: dict[int, dict[str, float]] = {}
    for number in range(1, (args.rounds or sizes().rounds) + 1):
        start = load()
        print(f"round {number} (load {start:.2f}, logs {bench.log_dir})", file=sys.stderr, flush=True)
        rounds[number] = run_round(bench, chosen, results, number)
        loads.append((start, load()))
    text = render(list(results.values()), loads, rounds)
    print(text)
    if args.out or not (args.no_write or quick()):
        publish(TITLE, "python -m bench.compare", argv, text, loads, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
