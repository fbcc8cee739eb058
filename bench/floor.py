"""``python -m bench.floor [--samples N] [--no-write]``: what each round trip of a pickup costs here.

A ping's pickup (``python -m bench``) is a chain of round trips: Redis's is one push and one pop;
``pgboss://``'s is a durable insert into pg-boss's job table, then the worker's fetch, an UPDATE
of that row. This times each link on its own, back to back ("hot") and 10 ms apart as the pings
are ("idle": a host that has gone quiet wakes up slowly), beside the cheapest statement of the same
kind, so the part the transport's SQL adds can be told from what the server and host cost anyway.
Every statement runs prepared on an autocommit connection, as the transport runs them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import psycopg2
import redis

from bench.__main__ import REDIS
from bench.report import record
from bench.runner import Scratch, server_url
from transport.db import dsn_from_url
from transport.manager import JobManager
from transport.prepared import PreparedDatabase
from transport.shared import ensure_installed

QUEUE = "floor"
#: A Celery message as ``bench.ping`` stores it (kwargs at the top, the envelope beside them).
PAYLOAD = {
    "__celery": {
        "v": 1,
        "task": "bench.ping",
        "args": ["bench-0123abcd", 1767225600.0],
        "headers": {
            "argsrepr": "('bench-0123abcd', 1767225600.0)",
            "kwargsrepr": "{}",
            "origin": "gen1@host",
        },
    }
}


class Floor:
    """One scratch database with pg-boss installed, a durable and an async-commit session."""

    def __init__(self, url: str) -> None:
        self.db = PreparedDatabase(url)
        self.boss = JobManager(self.db)
        ensure_installed(self.boss)  # pg-boss's schema; the transport's statements prepared
        self.boss.create_queue(QUEUE)
        self.durable = self.db.connect(autocommit=True)
        self.claiming = self.db.connect(autocommit=True)
        with self.claiming.cursor() as cur:
            cur.execute("SET synchronous_commit TO off")  # as the transport's fetch session
        with self.durable.cursor() as cur:
            cur.execute("CREATE TABLE floor_row (x int)")
        for conn in (self.durable, self.claiming):
            with conn.cursor() as cur:
                for name, sql in STATEMENTS.items():
                    cur.execute(f"PREPARE {name} AS {sql}")
        self.red = redis.Redis.from_url(f"{REDIS}/14")
        self.data = json.dumps(PAYLOAD)

    def close(self) -> None:
        self.durable.close()
        self.claiming.close()
        self.db.close()
        self.red.delete("floor:list")

    @staticmethod
    def _execute(conn: Any, name: str) -> None:
        with conn.cursor() as cur:
            cur.execute(f"EXECUTE {name}")
            if cur.description:
                cur.fetchall()

    def _send(self) -> None:
        self.boss.send(QUEUE, PAYLOAD, conn=self.durable)

    def links(self) -> list[tuple[str, Callable[[], Any], bool]]:
        """(what, one call, whether it needs a queued job first)."""
        claim, durable = self.claiming, self.durable
        return [
            ("Redis `PING`", self.red.ping, False),
            ("Redis `LPUSH` of the message", lambda: self.red.lpush("floor:list", self.data), False),
            ("PostgreSQL `SELECT 1`", lambda: self._execute(claim, "floor_select"), False),
            ("durable `INSERT` of one int", lambda: self._execute(durable, "floor_insert"), False),
            ("publish: `send_job` (durable)", self._send, False),
            ("lock the next job (`SKIP LOCKED`)", lambda: self._execute(claim, "floor_lock"), True),
            ("`UPDATE` the next job to active", lambda: self._execute(claim, "floor_update"), True),
            ("fetch: `fetch_plain_jobs`", lambda: self.boss.fetch([QUEUE], 8, conn=claim), True),
        ]

    def measure(self, samples: int) -> list[tuple[str, float, float]]:
        links = self.links()
        idle: dict[str, list[float]] = {name: [] for name, _, _ in links}
        hot: dict[str, list[float]] = {name: [] for name, _, _ in links}
        for round_ in range(samples + 10):  # the first ten warm caches and plans up
            for name, call, needs_job in links:
                for gap, into in ((0.01, idle), (0.0, hot)):
                    if needs_job:  # exactly one runnable job, as a ping finds
                        self._execute(self.durable, "floor_clear")
                        self._send()
                    if gap:
                        time.sleep(gap)
                    started = time.perf_counter()
                    call()
                    if round_ >= 10:
                        into[name].append(time.perf_counter() - started)
            if round_ % 50 == 49:  # as autovacuum would: the claimed and deleted rows' index entries
                with self.durable.cursor() as cur:
                    cur.execute("VACUUM pgboss.job")
        return [(name, _ms(idle[name]), _ms(hot[name])) for name in idle]


#: The cheapest statements of each kind, beside the transport's own (prepared on both sessions).
STATEMENTS = {
    "floor_select": "SELECT 1",
    "floor_insert": "INSERT INTO floor_row VALUES (1)",
    "floor_lock": f"""SELECT id FROM pgboss.job
        WHERE name = '{QUEUE}' AND state < 'active' AND start_after <= now()
        ORDER BY priority DESC, created_on LIMIT 1 FOR UPDATE SKIP LOCKED""",
    "floor_update": f"""UPDATE pgboss.job SET state = 'active', started_on = now()
        WHERE name = '{QUEUE}' AND id = (SELECT id FROM pgboss.job WHERE name = '{QUEUE}'
        AND state < 'active' ORDER BY priority DESC, created_on LIMIT 1)""",
    "floor_clear": f"DELETE FROM pgboss.job WHERE name = '{QUEUE}'",
}


def _ms(seconds: list[float]) -> float:
    return statistics.median(seconds) * 1000


def render(rows: list[tuple[str, float, float]], samples: int) -> str:
    lines = ["| round trip | idle p50 ms | hot p50 ms |", "|---|---:|---:|"]
    lines += [f"| {name} | {idle:.3f} | {hot:.3f} |" for name, idle, hot in rows]
    return (
        "\n".join(lines)
        + f"\n\n{samples} samples of each, idle (10 ms apart) and hot (back to back) taking turns; "
        "the rows needing a queued job find exactly one, sent just before."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--no-write", action="store_true", help="do not update BENCHMARKS.md")
    args = parser.parse_args(argv)
    pg = server_url()
    with Scratch(pg) as db_name:
        params = psycopg2.extensions.parse_dsn(dsn_from_url(pg))
        params["dbname"] = db_name
        floor = Floor(psycopg2.extensions.make_dsn(**params))
        try:
            rows = floor.measure(args.samples)
        finally:
            floor.close()
    text = render(rows, args.samples)
    print(text)
    if not args.no_write:
        record("Round trips of a pickup", pg, "python -m bench.floor", argv, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
