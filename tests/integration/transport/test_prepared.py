"""Prepared statements keep index plans however the job table grows after they were planned.

The transport and the result backend prepare their hot statements and force generic plans (see
transport.prepared). A generic plan is made once per session, from the statistics of that moment:
a worker that starts on an empty queue keeps the plan it made then. Until ANALYZE runs (never, with
autovacuum off) that plan must not scan the queue. Here every registered statement is planned on an
empty queue, the table then grows to 30,000 rows, and EXPLAIN ANALYZE of the same prepared statement
on the same session must show index lookups: few rows filtered, few buffers, no JIT.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.dbutil import own_database
from transport import backend, prepared, shared
from transport.manager import JobManager
from transport.outputs import to_json
from transport.prepared import PreparedDatabase, PreparingCursor

QUEUE = "plans-q"
#: Rows of the queue after growth; a scan of them shows up as tens of thousands filtered or read.
GROWN = 30_000


@pytest.fixture(scope="module")
def manager(admin_url: str) -> Iterator[JobManager]:
    with own_database(admin_url, "plans") as url:
        db = PreparedDatabase(url)
        boss = JobManager(db)
        shared.ensure_installed(boss)  # the pg-boss schema, the transport's tables, its statements
        with db.cursor() as cur:
            cur.execute(boss.queries["create_result_store"])
        prepared.register(boss.queries[name] for name in backend.PREPARED_STATEMENTS)
        boss.create_queue(QUEUE)
        yield boss
        db.close()


def _params(boss: JobManager, job_ids: list[str]) -> dict[str, Callable[[], dict[str, Any]]]:
    """Arguments for every prepared statement, aimed at real rows of the queue."""
    one = job_ids[0]
    return {
        "send_jobs": lambda: {"jobs": to_json([{"data": {"n": 1}}]), "name": QUEUE, "channel": boss.channel},
        "send_job": lambda: {
            "id": str(uuid.uuid4()),
            "priority": None,
            "data": '{"n": 1}',
            "start_after_at": None,
            "keep_until": None,
            "name": QUEUE,
            "channel": boss.channel,
        },
        "fetch_jobs": lambda: {"names": [QUEUE], "batch_size": 4, "limits": "{}"},
        "fetch_plain_jobs": lambda: {"names": [QUEUE], "batch_size": 4},
        "complete_jobs": lambda: {
            "name": QUEUE,
            "jobs": to_json([{"id": i, "retry_count": 0, "output": None} for i in job_ids]),
        },
        "next_start_after": lambda: {"names": [QUEUE]},
        "broadcast_publish": lambda: {
            "exchange": "celery.pidbox",
            "routing_key": "",
            "payload": "{}",
            "channel": boss.channel,
            "notice": "x",
        },
        "broadcast_read": lambda: {"exchanges": ["celery.pidbox"], "after": 0, "gaps": [], "limit": 100},
        "wake": lambda: {"channel": boss.channel, "payload": QUEUE},
        "get_results": lambda: {"keys": [f"celery-task-meta-{one}"]},
        "incr_result": lambda: {"key": "chord-unlock-x", "expires": None},
    }


def _explain(cur: Any, sql: str, params: dict[str, Any]) -> list[str]:
    statement, args = prepared.execute_statement(sql, params)
    cur.execute("BEGIN")
    cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, args)
    plan = [row["QUERY PLAN"] for row in cur.fetchall()]
    cur.execute("ROLLBACK")
    return plan


def test_every_prepared_statement_keeps_its_index_plan_as_the_queue_grows(manager: JobManager) -> None:
    names = list(shared.PREPARED_STATEMENTS) + list(backend.PREPARED_STATEMENTS)
    conn = manager.db.connect(autocommit=True)
    try:
        cur = conn.cursor(cursor_factory=PreparingCursor)
        cur.execute("SHOW plan_cache_mode")
        assert cur.fetchone()["plan_cache_mode"] == "force_generic_plan"

        # A small queue: four active jobs, as a worker starting up would see.
        manager.send_many(QUEUE, [{"data": {"n": i}} for i in range(4)])
        active = [job.id for job in manager.fetch([QUEUE], 4)]
        params = _params(manager, active)
        assert set(params) == set(names), "every prepared statement needs arguments here"
        for name in names:  # the generic plans are made now, on the small table
            cur.execute(manager.queries[name], manager._params(params[name]()))
            assert cur.rowcount >= 0

        # The queue grows: a backlog, finished jobs, more active ones.
        with manager.db.cursor() as grow:
            grow.execute(
                "INSERT INTO pgboss.job (id, name, data, state, started_on, completed_on, policy)"
                " SELECT gen_random_uuid(), %(queue)s, '{}'::jsonb,"
                "  (ARRAY['created', 'completed', 'active'])[1 + g %% 3]::pgboss.job_state,"
                "  CASE WHEN g %% 3 > 0 THEN now() END, CASE WHEN g %% 3 = 1 THEN now() END, 'standard'"
                " FROM generate_series(1, %(rows)s) AS g",
                {"queue": QUEUE, "rows": GROWN},
            )

        # Aim at the newest rows: an index walked in creation order reaches them last. Eight urgent
        # jobs: four now active (settled below), four left for the fetch to take first.
        manager.send_many(QUEUE, [{"data": {"n": i}, "priority": 5} for i in range(8)])
        params = _params(manager, [job.id for job in manager.fetch([QUEUE], 4)])
        for name in names:
            plan = _explain(cur, manager.queries[name], manager._params(params[name]()))
            text = "\n".join(plan)
            filtered = [int(n) for n in re.findall(r"Rows Removed by (?:Join )?Filter: (\d+)", text)]
            buffers = [int(n) for n in re.findall(r"shared hit=(\d+)", text)]
            assert "JIT:" not in text, f"{name} was JIT-compiled:\n{text}"
            assert max(filtered, default=0) < 1000, f"{name} scans the queue:\n{text}"
            assert max(buffers, default=0) < 2000, f"{name} reads too much:\n{text}"
    finally:
        conn.close()


def test_a_generic_plan_made_on_an_empty_table_scans_ids_through_the_wrong_index(manager: JobManager) -> None:
    """Why the id lookups are not prepared: the same hazard, shown on one of them (touch_jobs)."""
    conn = manager.db.connect(autocommit=True)
    try:
        cur = conn.cursor()
        cur.execute("CREATE TEMP TABLE probe (LIKE pgboss.job_common INCLUDING ALL)")
        sql = (
            "UPDATE probe SET heartbeat_on = now()"
            " WHERE name = $1 AND id = ANY($2::uuid[]) AND state = 'active'"
        )
        cur.execute(f"PREPARE probe_touch (text, text) AS {sql}")
        cur.execute("EXECUTE probe_touch (%s, %s)", ("q", "{" + str(uuid.uuid4()) + "}"))
        cur.execute(
            "INSERT INTO probe (id, name, data, state) SELECT gen_random_uuid(), 'q', '{}', 'active'"
            " FROM generate_series(1, 5000)"
        )
        cur.execute("SELECT id FROM probe LIMIT 1")
        target = cur.fetchone()[0]
        cur.execute("EXPLAIN (ANALYZE) EXECUTE probe_touch (%s, %s)", ("q", "{" + target + "}"))
        text = "\n".join(row[0] for row in cur.fetchall())
        filtered = [int(n) for n in re.findall(r"Rows Removed by Filter: (\d+)", text)]
        assert max(filtered, default=0) > 1000, text
    finally:
        conn.close()
