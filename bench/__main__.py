"""``python -m bench [--quick] [--skip PART ...] [--out FILE]``: every figure of BENCHMARKS.md.

``make bench`` runs this. Parts, each also runnable alone (``python -m bench.<part>``) and each
writing its own section:

* ``compare``: the setups side by side (zeke's, pgboss broker only, Celery+Redis results on/off,
  kombu SQLAlchemy, Node pg-boss 12.38.1, Celery ``memory://``);
* ``scaleout``: drain against 1, 2, 4 and 8 worker processes, with the CPU split;
* ``scale``: pg-boss's core on its own: bulk send, fetch/complete on a 1 M-job table;
* ``interop``: Node ⇄ Python latency across Node pg-boss releases.

``--quick`` (or ``BENCH_QUICK=1``) is a smoke run: small sizes, one round, nothing written to
BENCHMARKS.md unless ``--out`` names a file (``scale`` and ``interop`` then only print).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

from bench.config import REDIS, quick

__all__ = ["REDIS", "main"]

PARTS = ("compare", "scaleout", "scale", "interop")
#: What the full run passes each part beyond its defaults.
FULL_ARGS: dict[str, list[str]] = {"interop": ["--samples", "40"]}
#: The smoke run's sizes for the parts that take them as options (compare and scaleout read BENCH_QUICK).
QUICK_ARGS: dict[str, list[str]] = {
    "scale": ["--completed", "2000", "--queued", "21000", "--samples", "20", "--batch-samples", "5",
              "--send-jobs", "3000", "--no-write"],
    "interop": ["--samples", "1", "--only", "12.38", "--no-write"],
}  # fmt: skip


def _entry(part: str) -> Callable[[list[str]], int]:
    module = __import__(f"bench.{part}", fromlist=["main"])
    return module.main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run (same as BENCH_QUICK=1)")
    parser.add_argument("--skip", action="append", choices=PARTS, default=[], help="leave a part out")
    parser.add_argument("--out", type=Path, help="file for compare's and scaleout's sections")
    args = parser.parse_args(argv)
    if args.quick:
        os.environ["BENCH_QUICK"] = "1"
    for part in PARTS:
        if part in args.skip:
            continue
        part_args = list((QUICK_ARGS if quick() else FULL_ARGS).get(part, []))
        if args.out and part in ("compare", "scaleout"):
            part_args += ["--out", str(args.out)]
        print(f"== bench.{part} {' '.join(part_args)}", file=sys.stderr, flush=True)
        print(f"\n== {part}\n", flush=True)
        if _entry(part)(part_args) != 0:
            return 1
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
