"""``python -m bench.scale``: the pg-boss core at scale, no Celery worker involved.

Two measurements on scratch databases (created on ``DATABASE_PRIMARY_URL``'s server, dropped after):

* **send throughput**: jobs/s of ``JobManager.send_many`` and ``zeke.client.send_jobs`` in batches
  of 1000 and 5000 (target ≥ 20 000 jobs/s);
* **fetch/complete latency**: ``manager.fetch(['q'], 1)`` then ``manager.complete(...)`` one job at
  a time, and ``fetch(['q'], 10)`` plus one ``complete`` of the ten, with 1 M completed + 100 k
  queued jobs in the same queue against an empty job table (target ≤ 1.5×), then while and after
  ``manager.delete_finished`` removes the completed million (their deletion made due).

The host may be busy with other work, so the empty-table baseline is not measured once up front:
a second scratch database stays empty, and every sample on the loaded table is paired with one on
the empty table taken right beside it (alternating), so both see the same background load. The
first row measures two empty tables against each other: the method's own noise.

The loaded table is built the honest way: every job is sent through ``send_many`` (so it carries the
queue's policy, retry and retention settings) and the oldest million are then marked completed long
enough ago by a named statement of ``bench/sql/scale.sql``. Results go to the section "pg-boss core:
bulk send and a 1 M-job table" of
``BENCHMARKS.md``.

Options: ``--completed N`` (default 1 000 000), ``--queued N`` (100 000), ``--samples N`` single
fetch/complete pairs per phase (1000), ``--batch-samples N`` batches of 10 per phase (200),
``--send-jobs N`` jobs per throughput run (60 000, sent in 3 rounds), ``--only send|latency``,
``--no-write``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg2

from bench.config import database_url
from bench.runner import server_url
from transport import sql as sqlmod
from transport.db import Database, dsn_from_url
from transport.manager import JobManager

ROOT = Path(__file__).resolve().parent.parent
QUEUE = "q"
SEND_TARGET = 20_000.0
LATENCY_TARGET = 1.5
SEND_ROUNDS = 3
#: Cap on the single cycles sampled while the deletion pass runs (they come out of the backlog).
DURING_MAX_SAMPLES = 20_000
_BLOCK = re.compile(r"^-- name: (?P<name>\w+)\s*$", re.MULTILINE)


# -- plumbing --------------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def bench_queries(schema: str = "pgboss", features: Iterable[str] = ()) -> dict[str, str]:
    """``bench/sql/scale.sql`` rendered for a pg-boss schema (transport/sql's template rules)."""
    text = (Path(__file__).resolve().parent / "sql" / "scale.sql").read_text()
    parts = _BLOCK.split(text)
    features = tuple(features)
    values = {"schema": f'"{schema}"', "now": "{schema}.job_now()" if "job_now" in features else "now()"}
    return {
        name: sqlmod.render(body.strip(), features, values)
        for name, body in zip(parts[1::2], parts[2::2], strict=True)
    }


@contextmanager
def scratch_database(admin_url: str, prefix: str) -> Iterator[str]:
    """A new empty database on the server of ``admin_url``; yields its URL, drops it afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    dsn = dsn_from_url(admin_url)

    def admin(statement: str) -> None:
        conn = psycopg2.connect(dsn)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(statement)
        finally:
            conn.close()

    admin(f'CREATE DATABASE "{name}"')
    try:
        yield database_url(dsn, name)
    finally:
        admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Store:
    """One scratch database: its pool, a JobManager on schema ``pgboss`` and the bench statements."""

    def __init__(self, url: str) -> None:
        self.db = Database(url, max_connections=4, application_name="zeke-bench-scale")
        self.manager = JobManager(self.db, "pgboss")
        self.queries = bench_queries(self.manager.schema, self.manager.info.features)
        self.manager.create_queue(QUEUE)

    def execute(self, name: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        with self.db.cursor() as cur:
            cur.execute(self.queries[name], params or {})
            return [dict(r) for r in cur.fetchall()] if cur.description else []

    def maintenance(self, name: str) -> float:
        """VACUUM/ANALYZE (outside a transaction); returns seconds taken."""
        conn = self.db.connect(autocommit=True)
        try:
            started = time.perf_counter()
            with conn.cursor() as cur:
                cur.execute(self.queries[name])
            return time.perf_counter() - started
        finally:
            conn.close()

    def reset(self) -> None:
        """Back to an empty job table, dead rows vacuumed away."""
        self.execute("reset_jobs")
        self.maintenance("vacuum_analyze_jobs")

    def size(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.execute("job_table_size")[0].items()}

    def close(self) -> None:
        self.db.close()


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def payload(i: int) -> dict[str, Any]:
    """A job's data: the size and shape of a typical Zeke task payload."""
    return {"url": f"https://news.example.com/2026/11/article-{i}", "requestedBy": "bench", "n": i}


# -- send throughput -------------------------------------------------------------------------------


@dataclass
class SendResult:
    api: str
    batch: int
    rounds: list[tuple[int, float]] = field(default_factory=list)  # (jobs, seconds)

    @property
    def jobs(self) -> int:
        return sum(n for n, _ in self.rounds)

    @property
    def rates(self) -> list[float]:
        return [n / s for n, s in self.rounds]

    @property
    def rate(self) -> float:
        """The median round: a round slowed by another process on the host does not decide it."""
        return statistics.median(self.rates)


def send_throughput(manager: JobManager, jobs: int, batches: Sequence[int]) -> list[SendResult]:
    """Jobs/s of send_many and client.send_jobs, payloads built beforehand, configurations in turn."""
    from zeke import client

    configs = [(api, batch) for batch in batches for api in ("manager.send_many", "client.send_jobs")]
    results = {config: SendResult(*config) for config in configs}
    per_round = jobs // SEND_ROUNDS
    previous = client.set_manager(manager)
    try:
        for config in configs:  # warm-up: connections, the statement's plan, caches (not counted)
            queue = _send_queue(*config)
            manager.create_queue(queue)
            _send(manager, client, config[0], queue, [payload(i) for i in range(config[1])], config[1])
        for round_no in range(SEND_ROUNDS):
            for api, batch in configs:
                items = [payload(round_no * per_round + i) for i in range(per_round)]
                started = time.perf_counter()
                sent = _send(manager, client, api, _send_queue(api, batch), items, batch)
                seconds = time.perf_counter() - started
                assert sent == per_round, (sent, per_round)
                results[(api, batch)].rounds.append((per_round, seconds))
                log(f"{api} batch {batch} round {round_no + 1}: {per_round / seconds:,.0f} jobs/s")
    finally:
        client.set_manager(previous)
    return list(results.values())


def _send_queue(api: str, batch: int) -> str:
    return f"send-{api.split('.')[0]}-{batch}"


def _send(manager: JobManager, client: Any, api: str, queue: str, items: list[Any], batch: int) -> int:
    sent = 0
    if api == "manager.send_many":
        jobs = [{"data": item} for item in items]  # send_many's own input shape, built before timing
        items = jobs
    for start in range(0, len(items), batch):
        chunk = items[start : start + batch]
        if api == "manager.send_many":
            sent += len(manager.send_many(queue, chunk))
        else:
            sent += sum(r["id"] is not None for r in client.send_jobs(queue, chunk))
    return sent


# -- fetch / complete latency ----------------------------------------------------------------------


@dataclass
class Series:
    """Timings of one table in one phase (seconds)."""

    fetch1: list[float] = field(default_factory=list)
    complete1: list[float] = field(default_factory=list)
    cycle1: list[float] = field(default_factory=list)
    fetch10: list[float] = field(default_factory=list)
    complete10: list[float] = field(default_factory=list)
    cycle10: list[float] = field(default_factory=list)

    def add(self, batch: int, fetch: float, complete: float) -> None:
        if batch == 1:
            self.fetch1.append(fetch)
            self.complete1.append(complete)
            self.cycle1.append(fetch + complete)
        else:
            self.fetch10.append(fetch)
            self.complete10.append(complete)
            self.cycle10.append(fetch + complete)


@dataclass
class Phase:
    label: str
    note: str
    table: Series = field(default_factory=Series)
    #: The empty table, sampled alternately with ``table``.
    empty: Series = field(default_factory=Series)
    #: Whether this phase's ratios decide the ≤ 1.5× target.
    judged: bool = False


class Sampler:
    """Times fetch and complete on one queue; ``refill`` keeps a small stock of jobs to fetch."""

    def __init__(self, manager: JobManager, *, refill: bool) -> None:
        self.manager = manager
        self.refill = refill
        self.stock = 0
        self.serial = 0

    def _ensure(self, needed: int, block: int) -> None:
        if not self.refill or self.stock >= needed:
            return
        jobs = [{"data": payload(self.serial + i)} for i in range(block)]
        self.serial += block
        self.stock += len(self.manager.send_many(QUEUE, jobs))

    def cycle(self, batch: int) -> tuple[float, float]:
        self._ensure(batch, 100 if batch == 1 else 10 * batch)
        started = time.perf_counter()
        jobs = self.manager.fetch([QUEUE], batch)
        fetched = time.perf_counter()
        if len(jobs) != batch:
            raise RuntimeError(f"fetch({batch}) returned {len(jobs)} jobs: the queue ran dry")
        done = self.manager.complete(QUEUE, [(j.id, {"ok": True}, j.retry_count) for j in jobs])
        completed = time.perf_counter()
        if len(done) != batch:
            raise RuntimeError(f"complete settled {len(done)} of {batch} jobs")
        self.stock -= batch
        return fetched - started, completed - fetched


def alternate(phase: Phase, table: Sampler, empty: Sampler, batch: int, count: int) -> None:
    """``count`` cycles on each table, alternating (and alternating which goes first)."""
    for i in range(count):
        order = ((table, phase.table), (empty, phase.empty))
        for sampler, series in order if i % 2 == 0 else order[::-1]:
            series.add(batch, *sampler.cycle(batch))


def measure(phase: Phase, table: Sampler, empty: Sampler, args: argparse.Namespace) -> Phase:
    for batch in (1, 10):  # warm-up: plans, caches, pool connections
        alternate(Phase("", ""), table, empty, batch, 15)
    alternate(phase, table, empty, 1, args.samples)
    alternate(phase, table, empty, 10, args.batch_samples)
    return phase


def while_running(
    phase: Phase, table: Sampler, empty: Sampler, work: Callable[[], Any]
) -> tuple[Any, float, float]:
    """Sample single cycles (paired) while ``work`` runs in a thread; returns its result, its time, and
    how long the samples took to be taken."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        started = time.perf_counter()
        try:
            outcome["value"] = work()
        except BaseException as exc:  # re-raised in the caller
            outcome["error"] = exc
        outcome["seconds"] = time.perf_counter() - started

    thread = threading.Thread(target=run, name="bench-work")
    thread.start()
    started = time.perf_counter()
    while thread.is_alive() and len(phase.table.cycle1) < DURING_MAX_SAMPLES:
        alternate(phase, table, empty, 1, 1)
        time.sleep(0.002)  # a steady trickle of work beside the pass, not a second bulk load
    sampling = time.perf_counter() - started
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"], outcome["seconds"], sampling


def load(store: Store, completed: int, queued: int) -> dict[str, float]:
    """``completed + queued`` jobs sent in batches of 5000, then the oldest ``completed`` completed."""
    timings: dict[str, float] = {}
    total = completed + queued
    batch = 5000
    started = time.perf_counter()
    for start in range(0, total, batch):
        jobs = [{"data": payload(i)} for i in range(start, min(total, start + batch))]
        store.manager.send_many(QUEUE, jobs)
        if (start // batch) % 50 == 49:
            log(f"  sent {start + len(jobs):,}/{total:,}")
    timings["send"] = time.perf_counter() - started
    started = time.perf_counter()
    step = 250_000
    for start in range(0, completed, step):
        store.execute(
            "complete_oldest",
            {"name": QUEUE, "count": min(step, completed - start), "output": '{"ok": true}'},
        )
        log(f"  completed {min(completed, start + step):,}/{completed:,}")
    timings["complete"] = time.perf_counter() - started
    return timings


def latency(args: argparse.Namespace, admin: str) -> tuple[list[Phase], dict[str, Any]]:
    facts: dict[str, Any] = {}
    phases: list[Phase] = []
    with (
        scratch_database(admin, "zeke_scale_empty") as empty_url,
        scratch_database(admin, "zeke_scale_loaded") as loaded_url,
    ):
        empty, loaded = Store(empty_url), Store(loaded_url)
        try:
            baseline = Sampler(empty.manager, refill=True)

            def next_phase(label: str, note: str, *, judged: bool = False) -> Phase:
                empty.reset()  # the baseline stays an empty table: drop the jobs it completed so far
                baseline.stock = 0
                phase = Phase(label, note, judged=judged)
                phases.append(phase)
                log(f"latency: {label} ({note})")
                return phase

            phase = next_phase("empty", "two empty tables against each other: the method's noise")
            measure(phase, Sampler(loaded.manager, refill=True), baseline, args)
            loaded.reset()

            log(f"loading {args.completed:,} completed + {args.queued:,} queued jobs")
            facts["load"] = load(loaded, args.completed, args.queued)
            facts["load_rate"] = (args.completed + args.queued) / facts["load"]["send"]
            facts["analyze_s"] = loaded.maintenance("analyze_jobs")
            facts["loaded"] = loaded.size()
            log(f"loaded: {facts['loaded']}")
            table = Sampler(loaded.manager, refill=False)

            label = f"{args.completed / 1e6:g} M completed + {args.queued / 1e3:g} k queued"
            note = "after ANALYZE (the completing updates' dead rows remain)"
            measure(next_phase(label, note, judged=True), table, baseline, args)
            facts["vacuum_s"] = loaded.maintenance("vacuum_analyze_jobs")
            note = "after VACUUM (ANALYZE), as autovacuum would leave it"
            measure(next_phase(label, note, judged=True), table, baseline, args)

            during = next_phase("during `delete_finished`", "single cycles while the deletion pass runs")
            deleted, seconds, _ = while_running(
                during, table, baseline, lambda: loaded.manager.delete_finished([QUEUE])
            )
            facts["deleted"], facts["deletion_s"] = deleted, seconds
            log(f"deleted {deleted:,} in {seconds:.1f}s")

            facts["after_delete_analyze_s"] = loaded.maintenance("analyze_jobs")
            note = "after ANALYZE (the deleted rows not vacuumed)"
            measure(next_phase("after `delete_finished`", note), table, baseline, args)
            facts["after_delete_vacuum_s"] = loaded.maintenance("vacuum_analyze_jobs")
            measure(next_phase("after `delete_finished`", "after VACUUM (ANALYZE)"), table, baseline, args)
            facts["final"] = loaded.size()
        finally:
            empty.close()
            loaded.close()
    return phases, facts


# -- report ----------------------------------------------------------------------------------------


def _ms(values: Sequence[float]) -> str:
    if not values:
        return "–"
    return f"{statistics.median(values) * 1000:.2f} / {percentile(values, 0.99) * 1000:.2f}"


def ratios(values: Sequence[float], base: Sequence[float]) -> tuple[float, float]:
    return (
        statistics.median(values) / statistics.median(base),
        percentile(values, 0.99) / percentile(base, 0.99),
    )


def _ratio(values: Sequence[float], base: Sequence[float]) -> str:
    if not values or not base:
        return "–"
    p50, p99 = ratios(values, base)
    return f"{p50:.2f}× / {p99:.2f}×"


def latency_table(phases: list[Phase]) -> str:
    lines = [
        "| job table | fetch(1) | complete(1) | fetch+complete(1) | empty table, same moments "
        "| ratio | fetch(10) | complete(10) | fetch+complete(10) | empty table, same moments | ratio "
        "| samples | note |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for p in phases:
        t, e = p.table, p.empty
        cells = [
            p.label,
            _ms(t.fetch1),
            _ms(t.complete1),
            _ms(t.cycle1),
            _ms(e.cycle1),
            _ratio(t.cycle1, e.cycle1),
            _ms(t.fetch10),
            _ms(t.complete10),
            _ms(t.cycle10),
            _ms(e.cycle10),
            _ratio(t.cycle10, e.cycle10),
            f"{len(t.cycle1)} + {len(t.cycle10)}×10",
            p.note,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def send_table(results: list[SendResult]) -> str:
    lines = [
        "| API | batch | jobs | jobs/s (median round) | rounds | target ≥ 20 000 |",
        "|---|---:|---:|---:|---|---|",
    ]
    for r in results:
        met = "met" if r.rate >= SEND_TARGET else "missed"
        rounds = ", ".join(f"{rate:,.0f}" for rate in r.rates)
        lines.append(f"| `{r.api}` | {r.batch} | {r.jobs:,} | {r.rate:,.0f} | {rounds} | {met} |")
    return "\n".join(lines)


def verdict(phases: list[Phase]) -> list[str]:
    out = []
    for p in phases:
        if not p.judged:
            continue
        worst = max(*ratios(p.table.cycle1, p.empty.cycle1), *ratios(p.table.cycle10, p.empty.cycle10))
        met = "met" if worst <= LATENCY_TARGET else "missed"
        out.append(f"{p.label}, {p.note.split(' (')[0]}: worst ratio {worst:.2f}× — target ≤ 1.5× {met}")
    return out


def server_settings(url: str) -> dict[str, str]:
    db = Database(url, max_connections=1, application_name="zeke-bench-scale")
    try:
        with db.cursor() as cur:
            cur.execute(bench_queries()["server_settings"])
            return dict(cur.fetchone())
    finally:
        db.close()


def machine(url: str) -> str:
    cpu = platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), cpu)
    except OSError:
        pass
    memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30
    s = server_settings(url)
    return (
        f"{os.cpu_count()} vCPU {cpu}, {memory:.0f} GiB RAM, {platform.system()} {platform.release()}; "
        f"PostgreSQL {s['server_version'].split()[0]} on the same host (synchronous_commit="
        f"{s['synchronous_commit']}, shared_buffers={s['shared_buffers']}, autovacuum={s['autovacuum']}); "
        f"Python {platform.python_version()}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.splitlines()[0])
    parser.add_argument("--completed", type=int, default=1_000_000)
    parser.add_argument("--queued", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--batch-samples", type=int, default=200)
    parser.add_argument("--send-jobs", type=int, default=60_000)
    parser.add_argument("--only", choices=("send", "latency"))
    parser.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    args = parser.parse_args(argv)
    needed = 4 * (15 + 10 * 15 + args.samples + 10 * args.batch_samples) + DURING_MAX_SAMPLES
    if args.only != "send" and args.queued < needed:
        parser.error(f"--queued must leave enough backlog for every phase: at least {needed}")

    admin = server_url()
    about = machine(admin)
    started = dt.datetime.now(dt.UTC)
    load_before = os.getloadavg()[0]
    sections: list[str] = []
    summary: list[str] = []

    if args.only in (None, "send"):
        with scratch_database(admin, "zeke_scale_send") as url:
            store = Store(url)
            try:
                results = send_throughput(store.manager, args.send_jobs, (1000, 5000))
            finally:
                store.close()
        sections.append(
            "### Bulk send throughput\n\n"
            "One producer thread, payloads built beforehand; each batch is one `send_jobs` statement in "
            f"its own transaction (synchronous commit), into a queue of its own. {SEND_ROUNDS} rounds per "
            "configuration, configurations taking turns.\n\n" + send_table(results)
        )
        worst = min(r.rate for r in results)
        met = "met" if worst >= SEND_TARGET else "missed"
        summary.append(f"send: slowest configuration {worst:,.0f} jobs/s — target ≥ 20 000 {met}")

    if args.only in (None, "latency"):
        phases, facts = latency(args, admin)
        loaded, final = facts["loaded"], facts["final"]
        rate = facts["deleted"] / max(facts["deletion_s"], 1e-9)
        sections.append(
            "### fetch / complete latency (ms, p50 / p99)\n\n"
            "`manager.fetch(['q'], n)` then `manager.complete('q', ...)` of what it fetched, one at a time, "
            "in queue `q` (seed defaults: standard policy, retry 3, delete after 7 days); the loaded table "
            "holds its jobs in that same queue. Each sample on it is paired with one on an empty job "
            "table in another scratch database, taken alternately, so both see the same background "
            "load; the ratio compares the two.\n\n"
            + latency_table(phases)
            + "\n\n"
            + "\n".join(
                [
                    f"- Load: {args.completed + args.queued:,} jobs through `send_many` (batches of 5000) in "
                    f"{facts['load']['send']:.1f} s ({facts['load_rate']:,.0f} jobs/s into the growing "
                    f"table), then {args.completed:,} marked completed 8 days ago in "
                    f"{facts['load']['complete']:.1f} s; ANALYZE {facts['analyze_s']:.1f} s, "
                    f"VACUUM (ANALYZE) {facts['vacuum_s']:.1f} s.",
                    f"- Loaded table: {loaded['total']:,} rows ({loaded['completed']:,} completed, "
                    f"{loaded['queued']:,} queued), {loaded['bytes'] / 2**20:,.0f} MiB with its indexes.",
                    f"- `delete_finished(['q'])` (batches of 10 000) deleted {facts['deleted']:,} jobs in "
                    f"{facts['deletion_s']:.1f} s ({rate:,.0f} rows/s) while the single cycles above ran "
                    f"beside it; ANALYZE afterwards {facts['after_delete_analyze_s']:.1f} s, VACUUM "
                    f"(ANALYZE) {facts['after_delete_vacuum_s']:.1f} s; {final['total']:,} rows left, "
                    f"{final['bytes'] / 2**20:,.0f} MiB.",
                    *(f"- {line}" for line in verdict(phases)),
                ]
            )
        )
        summary.extend(verdict(phases))

    load_after = os.getloadavg()[0]
    about += f"; 1-min load average {load_before:.2f} at start, {load_after:.2f} at the end"
    body = "\n\n".join(sections)
    print(body)
    print("\n".join(summary), file=sys.stderr)
    if not args.no_write:
        from bench.report import write_section

        command = "python -m bench.scale " + " ".join(argv if argv is not None else sys.argv[1:])
        write_section(
            ROOT / "BENCHMARKS.md",
            "pg-boss core: bulk send and a 1 M-job table",
            about,
            started.strftime("%Y-%m-%d %H:%M UTC"),
            command.strip(),
            body,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
