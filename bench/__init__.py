"""zeke's benchmarks: ``make bench`` (``python -m bench``) reproduces every figure of BENCHMARKS.md.

* :mod:`bench.compare`: zeke's setup beside the pgboss broker alone, Celery+Redis (results on and
  off), kombu's SQLAlchemy transport, Node pg-boss 12.38.1 and Celery's ``memory://``;
* :mod:`bench.scaleout`: drain against 1–8 worker processes, with the CPU each party used;
* :mod:`bench.scale`: pg-boss's core alone (bulk send; fetch/complete on a 1 M-job table);
* :mod:`bench.interop`: Node ⇄ Python latency across Node pg-boss releases.

Their parts: :mod:`bench.targets` (the setups), :mod:`bench.runner` (scratch databases, workers,
drain and pickup), :mod:`bench.node` with ``pgboss_loop.mjs`` (the Node row), :mod:`bench.procs`
(RSS, connections, CPU from ``/proc``), :mod:`bench.measures` and :mod:`bench.tables` (figures and
tables), :mod:`bench.report` (the host and BENCHMARKS.md's sections), :mod:`bench.tasks` (the
workers' app). ``BENCH_QUICK=1`` runs small sizes as a smoke test (tests/bench).

Diagnostics outside BENCHMARKS.md: ``python -m bench.trace --no-write`` (a pickup, stage by stage)
and ``python -m bench.floor --no-write`` (the round trips a pickup is made of).
"""
