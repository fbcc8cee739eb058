"""``python -m bench [--jobs N] [--samples N] [--only LABEL ...] [--no-write]``."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from bench.report import record, table
from bench.runner import Bench, Result, Target, server_url

REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379")


def targets(pg: str) -> list[Target]:
    base = pg.rsplit("/", 1)[0]  # the server, without its database
    pgboss = "pgboss://" + base.split("://", 1)[1] + "/{db}"
    return [
        Target("redis://", f"{REDIS}/13", note="Celery + Redis, results ignored"),
        Target(
            "pgboss://",
            pgboss,
            {"settle_on_ack": True},
            note="ack completes the job (settle_on_ack), many acks per statement from a settle thread",
        ),
        Target(
            "pgboss:// unbatched",
            pgboss,
            {"settle_on_ack": True, "settle_batch": False},
            max_rounds=1,
            note="same, one complete statement per ack on the event loop",
        ),
        Target(
            "pgboss:// + backend",
            pgboss,
            {},
            result_backend=pgboss,
            max_rounds=1,
            note="pg-boss result backend completes the job with its output (zeke's setup)",
        ),
        Target(
            "sqla+postgresql://",
            # psycopg2, named: SQLAlchemy 2.1 made psycopg 3 the default driver of postgresql://.
            "sqla+postgresql+psycopg2://" + base.split("://", 1)[1] + "/{db}",
            # The same backlog as the others: kombu-sqla keeps consumed rows (visible=false) and each
            # get steps past them, so its rate falls as a drain proceeds and a smaller backlog
            # flatters it (BENCHMARKS.md, "Transport targets").
            max_samples=20,
            max_rounds=1,
            note="kombu's SQLAlchemy transport (1 s polling)",
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--jobs", type=int, default=5000, help="tasks drained per broker (default 5000)")
    parser.add_argument("--samples", type=int, default=300, help="latency samples per broker (default 300)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds, brokers interleaved (default 2)")
    parser.add_argument("--only", action="append", help="run only targets whose label starts with this")
    parser.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    args = parser.parse_args(argv)

    pg = server_url()
    chosen = [t for t in targets(pg) if not args.only or any(t.label.startswith(o) for o in args.only)]
    bench = Bench(
        admin_url=pg,
        side_url=f"{REDIS}/14",
        jobs=args.jobs,
        samples=args.samples,
        log_dir=Path(tempfile.mkdtemp(prefix="zeke-bench-")),
    )
    merged: dict[str, Result] = {}
    for round_ in range(1, args.rounds + 1):
        print(f"round {round_}", file=sys.stderr, flush=True)
        batch = [t for t in chosen if not (t.max_rounds and round_ > t.max_rounds)]
        for result in bench.round(batch):
            if result.target.label in merged:
                merged[result.target.label].merge(result)
            else:
                merged[result.target.label] = result
    results = list(merged.values())
    text = table(results)
    print(text)
    if not args.no_write:
        record("Transport", pg, "python -m bench", argv, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
