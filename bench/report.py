"""The benchmark's table, the machine it ran on, and its section of ``BENCHMARKS.md``."""

from __future__ import annotations

import datetime as dt
import os
import platform
import re
import sys
from pathlib import Path

import psycopg2
import redis

from bench.runner import ROOT, Result
from transport.db import dsn_from_url

TARGETS = (
    "Targets: drain ≥ 1.0× Redis, p50 ≤ 1.2× Redis, p99 ≤ 20 ms, enqueue ≥ 0.6× Redis, drain ≥ 6× kombu-sqla."
)


def table(results: list[Result]) -> str:
    redis_row = next((r for r in results if r.target.label.startswith("redis")), None)
    sqla_row = next((r for r in results if r.target.label.startswith("sqla")), None)

    def ratio(value: float, base: Result | None, attr: str) -> str:
        return f"{value / getattr(base, attr):.2f}×" if base else "–"

    header = (
        "| broker | drain tasks/s | vs Redis | enqueue tasks/s | vs Redis | pickup p50 ms | vs Redis "
        "| p99 ms | drain vs sqla | runs | what |"
    )
    lines = [header, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    for r in results:
        cells = [
            f"`{r.target.label}`",
            f"{r.drain_rate:,.0f}",
            ratio(r.drain_rate, redis_row, "drain_rate"),
            f"{r.enqueue_rate:,.0f}",
            ratio(r.enqueue_rate, redis_row, "enqueue_rate"),
            f"{r.p50_ms:.2f}",
            ratio(r.p50_ms, redis_row, "p50_ms"),
            f"{r.p99_ms:.2f}",
            ratio(r.drain_rate, sqla_row, "drain_rate"),
            f"{r.rounds}× ({r.jobs} jobs), {r.samples} pings",
            r.target.note,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\n" + TARGETS + verdicts(results)


def verdicts(results: list[Result]) -> str:
    """Each target, met or missed, for the ``pgboss://`` row (the configuration the targets are for)."""
    ours = next((r for r in results if r.target.label == "pgboss://"), None)
    redis_row = next((r for r in results if r.target.label.startswith("redis")), None)
    sqla_row = next((r for r in results if r.target.label.startswith("sqla")), None)
    if ours is None:
        return ""
    checks: list[tuple[str, float | None, float, bool]] = [("p99 ≤ 20 ms", ours.p99_ms, 20.0, False)]
    if redis_row:
        checks += [
            ("drain ≥ 1.0× Redis", ours.drain_rate / redis_row.drain_rate, 1.0, True),
            ("pickup p50 ≤ 1.2× Redis", ours.p50_ms / redis_row.p50_ms, 1.2, False),
            ("enqueue ≥ 0.6× Redis", ours.enqueue_rate / redis_row.enqueue_rate, 0.6, True),
        ]
    if sqla_row:
        checks.append(("drain ≥ 6× kombu-sqla", ours.drain_rate / sqla_row.drain_rate, 6.0, True))
    lines = []
    for name, value, bound, at_least in checks:
        met = value >= bound if at_least else value <= bound
        lines.append(f"- {name}: {value:.2f} — **{'met' if met else 'missed'}**")
    return "\n\n`pgboss://` against the targets in this run:\n\n" + "\n".join(lines)


def machine(pg_url: str) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), cpu)
    except OSError:
        pass
    memory = ""
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        memory = f", {pages * size / 2**30:.0f} GiB RAM"
    except (ValueError, OSError):
        pass
    conn = psycopg2.connect(dsn_from_url(pg_url))
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW server_version")
            pg_version = cur.fetchone()[0]
            cur.execute("SHOW synchronous_commit")
            sync = cur.fetchone()[0]
    finally:
        conn.close()
    redis_version = redis.Redis.from_url(os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379")).info()[
        "redis_version"
    ]
    load = ""
    try:
        load = f"; 1-min load average {os.getloadavg()[0]:.2f} at the end (the host is shared)"
    except OSError:
        pass
    return (
        f"{os.cpu_count()} vCPU {cpu}{memory}, {platform.system()} {platform.release()}{load}; "
        f"PostgreSQL {pg_version} (synchronous_commit={sync}) and Redis {redis_version} on the same host, "
        f"shared with the workers and the producer; Python {platform.python_version()}"
    )


def write_section(path: Path, title: str, machine_text: str, date: str, command: str, body: str) -> None:
    """Replace (or append) the ``## <title>`` section of ``path``, leaving other sections alone."""
    section = f"## {title}\n\n- Machine: {machine_text}\n- Date: {date}\n- Command: `{command}`\n\n{body}\n"
    text = path.read_text() if path.exists() else "# Benchmarks\n\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text, count=1).rstrip() + "\n"
    else:
        text = text.rstrip() + "\n\n" + section
    path.write_text(text)


def record(title: str, pg_url: str, prog: str, argv: list[str] | None, body: str) -> None:
    """Write ``body`` as BENCHMARKS.md's ``## <title>``, with this machine, the time and the command."""
    command = " ".join([prog, *(argv if argv is not None else sys.argv[1:])])
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    write_section(ROOT / "BENCHMARKS.md", title, machine(pg_url), now, command, body)
