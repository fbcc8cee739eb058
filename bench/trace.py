"""``python -m bench.trace [--samples N] [--no-write]``: where a ping's pickup latency goes.

One ping at a time (as in ``python -m bench``), to a ``pgboss://`` worker and a Celery+Redis worker
with the same tasks. Stages, as medians in ms after the producer called ``send_task``: the call
returned (the job committed, or the Redis push done); the worker's LISTEN socket became readable;
its fetch started and returned; Celery received the task; the task started in a pool child.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.__main__ import REDIS
from bench.config import database_url
from bench.report import record
from bench.runner import Bench, Target, server_url

STAGES = (
    ("returned", "`send_task` returned"),
    ("readable0", "LISTEN socket readable"),
    ("fetch0", "fetch started"),
    ("fetch1", "fetch returned"),
    ("received", "Celery received the task"),
    ("started", "task started in the pool child"),
)


def trace(bench: Bench, target: Target, samples: int) -> dict[str, float]:
    session = bench._open(target)
    worker = None
    try:
        session.producer.send_task("bench.noop", args=(session.run,), queue=session.queue)  # declares
        env = {**session.env, "BENCH_APP": "bench.trace_tasks"}
        worker = bench._start_worker(env, session.queue, target.label)
        rows: dict[str, list[float]] = {name: [] for name, _ in STAGES}
        for i in range(samples + 10):  # the first ten warm the idle path up
            sent = time.time()
            session.producer.send_task("bench.ping", args=(session.run, sent), queue=session.queue)
            returned = time.time()
            popped = bench.side.blpop([f"{session.run}:latency"], timeout=30)
            stamps = bench.side.blpop([f"{session.run}:trace"], timeout=30)
            if popped is None or stamps is None:
                raise TimeoutError("a ping never ran")
            if i >= 10:
                times = {**json.loads(stamps[1]), "returned": returned, "started": sent + float(popped[1])}
                for name, _ in STAGES:
                    if name in times:
                        rows[name].append((times[name] - sent) * 1000)
            time.sleep(0.01)
        return {name: statistics.median(v) for name, v in rows.items() if v}
    finally:
        if worker is not None:
            bench._stop_worker(worker)
        bench._close(session)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.trace", description=__doc__)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    args = parser.parse_args(argv)
    pg = server_url()
    pgboss_url = "pgboss://" + database_url(pg, "{db}").split("://", 1)[1]
    targets = [
        Target("redis://", f"{REDIS}/13"),
        Target("pgboss://", pgboss_url, {"settle_on_ack": True}),
    ]
    bench = Bench(
        admin_url=pg,
        side_url=f"{REDIS}/14",
        jobs=0,
        samples=args.samples,
        log_dir=Path(tempfile.mkdtemp(prefix="zeke-trace-")),
    )
    measured = {t.label: trace(bench, t, args.samples) for t in targets}
    names = " | ".join(f"`{label}`" for label in measured)
    header = f"| stage (median ms after `send_task` was called) | {names} |"
    lines = [header, "|---|" + "---:|" * len(measured)]
    for name, label in STAGES:
        cells = [f"{m[name]:.2f}" if name in m else "–" for m in measured.values()]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + f"\n\n{args.samples} pings each, one at a time, 10 ms apart."
    print(text)
    if not args.no_write:
        record("Pickup latency, stage by stage", pg, "python -m bench.trace", argv, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
