"""The host a benchmark ran on, and its section of ``BENCHMARKS.md`` (other sections left alone)."""

from __future__ import annotations

import datetime as dt
import os
import platform
import re
import sys
from pathlib import Path

import psycopg2
import redis

from bench.config import REDIS, ROOT, server_url
from transport.db import dsn_from_url


def load() -> float:
    """The host's 1-minute load average."""
    return os.getloadavg()[0]


def machine(pg_url: str) -> str:
    cpu = platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), cpu)
    except OSError:
        pass
    memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30
    conn = psycopg2.connect(dsn_from_url(pg_url))
    try:
        with conn.cursor() as cur:
            settings = {}
            for name in ("server_version", "synchronous_commit", "shared_buffers", "max_connections"):
                cur.execute(f"SHOW {name}")
                settings[name] = cur.fetchone()[0]
    finally:
        conn.close()
    redis_version = redis.Redis.from_url(REDIS).info()["redis_version"]
    return (
        f"{os.cpu_count()} vCPU {cpu}, {memory:.0f} GiB RAM, {platform.system()} {platform.release()}; "
        f"PostgreSQL {settings['server_version'].split()[0]} "
        f"(synchronous_commit={settings['synchronous_commit']}, shared_buffers={settings['shared_buffers']}, "
        f"max_connections={settings['max_connections']}) "
        f"and Redis {redis_version} on the same host; Python {platform.python_version()}"
    )


def section(path: Path, title: str, header: list[str], body: str) -> None:
    """Replace (or append) the ``## <title>`` section of ``path``."""
    section = f"## {title}\n\n" + "".join(f"- {line}\n" for line in header) + f"\n{body.strip()}\n"
    text = path.read_text() if path.exists() else "# Benchmarks\n\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text, count=1).rstrip() + "\n"
    else:
        text = text.rstrip() + "\n\n" + section
    path.write_text(text)


def publish(
    title: str,
    prog: str,
    argv: list[str] | None,
    body: str,
    loads: list[tuple[float, float]],
    out: Path | None = None,
) -> None:
    """Write ``body`` as the ``## <title>`` section, with the command, the host, its load and the time."""
    command = " ".join([prog, *(argv if argv is not None else sys.argv[1:])])
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    load_text = "; ".join(f"{a:.2f} → {b:.2f}" for a, b in loads)
    header = [
        f"Command: `{command}` (part of `make bench`)",
        f"Host: {machine(server_url())}",
        f"Load average (1 min) over each round: {load_text}; the host is shared with other work",
        f"Date: {now}",
    ]
    section(out or ROOT / "BENCHMARKS.md", title, header, body)


# The shapes bench.scale, bench.interop, bench.trace and bench.floor call.


def write_section(path: Path, title: str, machine_text: str, date: str, command: str, body: str) -> None:
    section(path, title, [f"Machine: {machine_text}", f"Date: {date}", f"Command: `{command}`"], body)


def record(title: str, pg_url: str, prog: str, argv: list[str] | None, body: str) -> None:
    """Write ``body`` as the ``## <title>`` section, with the host, its load at the end and the time."""
    command = " ".join([prog, *(argv if argv is not None else sys.argv[1:])])
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    host = f"{machine(pg_url)}; 1-min load average {load():.2f} at the end (the host is shared)"
    write_section(ROOT / "BENCHMARKS.md", title, host, now, command, body)
