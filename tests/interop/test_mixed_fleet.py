"""A mixed fleet on one throwaway database: Node producers and a Node supervisor (pg-boss 12.38.1,
supervise and schedule on), Python workers (real ``celery worker`` processes) and a Python beat.

For the run's length (``ZEKE_FLEET_SECONDS``, default 180 s, under ``make chaos``; a 30-s run is
part of ``make test``) the Node producer (tests/node/fleet.mjs) sends plain jobs, throttled and
debounced singletons, jobs that fail once then succeed, jobs that always fail into a dead letter
queue, jobs it cancels before they start and jobs of three groups (``group_concurrency`` 1); this
process sends Python -> Node jobs a Node worker completes, and grouped jobs of its own; beat and
Node's timekeeper both run a once-a-minute schedule. Then every job's state and run count, the
dead letters, the schedule's firings and Node's queue statistics are checked exactly.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.interop import fleet_app
from tests.interop.fleet_procs import Fleet, Proc, overlaps, wait_for
from transport.db import Database
from transport.manager import JobManager

QUEUES = ["fleet-plain", "fleet-single", "fleet-grouped", "fleet-flaky", "fleet-doomed", "fleet-cron"]
ALL_QUEUES = [*QUEUES, "fleet-node", "fleet-dead"]


@pytest.fixture
def fleet(scratch_db: Callable[[str], str], tmp_path: Path, node_dir: Path) -> Iterator[Fleet]:
    url = scratch_db("zeke_fleet")
    fleet = Fleet(url, tmp_path, node_dir)
    assert fleet.install() == 46
    fleet_app.create_effects(url)
    db = Database(url, max_connections=2, application_name="zeke-fleet-test")
    try:
        boss = JobManager(db, fleet_app.SCHEMA)
        for name in ["fleet-dead", *(q for q in fleet_app.QUEUE_OPTIONS if q != "fleet-dead")]:
            boss.create_queue(name, **fleet_app.QUEUE_OPTIONS[name])
    finally:
        db.close()
    try:
        yield fleet
    finally:
        fleet.stop()


@pytest.mark.slow
def test_mixed_fleet_minutes(fleet: Fleet) -> None:
    run_fleet(fleet, float(os.environ.get("ZEKE_FLEET_SECONDS", "180")))


def test_mixed_fleet_short(fleet: Fleet) -> None:
    run_fleet(fleet, 30)


def _json_lines(proc: Proc) -> list[dict[str, Any]]:
    lines = []
    for line in proc.log().splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def _line(proc: Proc, key: str, timeout: float) -> dict[str, Any]:
    def found() -> dict[str, Any] | None:
        if not proc.alive() and not any(key in line for line in _json_lines(proc)):
            raise AssertionError(f"{proc.log_path.name} exited:\n{proc.log()[-4000:]}")
        return next((line for line in _json_lines(proc) if key in line), None)

    return wait_for(found, timeout, f"{key!r} from {proc.log_path.name}")


def run_fleet(fleet: Fleet, seconds: float) -> dict[str, Any]:
    url = fleet.url
    supervisor = fleet.node_script("node-supervisor", "fleet.mjs", "supervisor", url)
    _line(supervisor, "ready", 60)
    workers = [fleet.worker(f"py{i}", QUEUES, concurrency=2) for i in (1, 2)]
    beat = fleet.beat()
    for worker in workers:
        worker.wait_log(" ready.")
    beat.wait_log("beat: Starting")
    scheduled = wait_for(
        lambda: fleet.rows("SELECT created_on FROM pgboss.schedule WHERE name = 'fleet-cron'"),
        30,
        "beat to install the schedule",
    )[0]["created_on"]
    producer = fleet.node_script("node-producer", "fleet.mjs", "producer", url, "--seconds", str(seconds))

    # Python -> Node jobs, and Python's own grouped jobs, while Node produces.
    to_node: list[tuple[int, Any]] = []
    python_grouped: list[str] = []
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        to_node.append((n, fleet.send("fleet-node", {"n": n})))
        if n % 3 == 0:
            result = fleet.send("fleet-grouped", {"group": "b", "hold": 0.1}, pgboss={"group": {"id": "b"}})
            python_grouped.append(result.id)
        n += 1
        time.sleep(1.0)
    summary = _line(producer, "summary", seconds + 120)["summary"]
    for value, result in to_node:
        assert result.get(timeout=60) == {"node": value}

    fleet.node("unschedule", "fleet-cron")  # beat and Node read the rows every pass
    cron_stopped = fleet.rows("SELECT now() AS now")[0]["now"]

    def drained() -> bool:
        rows = fleet.rows(
            "SELECT count(*) AS n FROM pgboss.job WHERE state < 'completed' "
            "AND name <> 'fleet-dead' AND NOT (name = 'fleet-plain' AND state = 'cancelled')"
        )
        return rows[0]["n"] == 0

    wait_for(drained, 240, "every job of the fleet to end", interval=1.0)
    producer.process.send_signal(15)
    stopped = _line(producer, "stopped", 30)
    assert stopped["errors"] == 0, producer.log()[-4000:]

    jobs = fleet.rows(
        "SELECT id::text, name, state::text, retry_count, group_id, singleton_on, created_on, data, "
        "output FROM pgboss.job WHERE name LIKE 'fleet-%%'"
    )
    runs = fleet.rows("SELECT job_id, queue, grp, attempt, started, ended FROM fleet_effects.run")
    by_id = {job["id"]: job for job in jobs}
    run_count = Counter(run["job_id"] for run in runs)
    ids_of = lambda name: {job["id"] for job in jobs if job["name"] == name}  # noqa: E731

    def settled(ids: list[str], state: str, runs_each: int, retry_count: int = 0) -> None:
        for job_id in ids:
            job = by_id[job_id]
            assert (job["state"], job["retry_count"], run_count[job_id]) == (state, retry_count, runs_each), (
                job_id,
                job["name"],
            )

    # Plain jobs and cancels: every one Node sent is here, ran once (cancelled ones never).
    assert ids_of("fleet-plain") == set(summary["plain"]) | set(summary["cancelled"])
    settled(summary["plain"], "completed", 1)
    settled(summary["cancelled"], "cancelled", 0)
    # Throttled and debounced singletons: one job per 5-s slot and key, each completed once.
    assert ids_of("fleet-single") == set(summary["single"]) | set(summary["debounce"])
    settled(summary["single"] + summary["debounce"], "completed", 1)
    for kind in ("single", "debounce"):
        slots = [by_id[i]["singleton_on"] for i in summary[kind]]
        assert len(set(slots)) == len(slots), f"two {kind} jobs in one slot"
    # Fail once, then succeed: two runs, retry_count 1.
    assert ids_of("fleet-flaky") == set(summary["flaky"])
    settled(summary["flaky"], "completed", 2, retry_count=1)
    # Always fail: two runs, failed, each one dead letter in fleet-dead.
    assert ids_of("fleet-doomed") == set(summary["doomed"])
    settled(summary["doomed"], "failed", 2, retry_count=1)
    dead = [job for job in jobs if job["name"] == "fleet-dead"]
    doomed_n = sorted(by_id[i]["data"]["n"] for i in summary["doomed"])
    assert sorted(job["data"]["n"] for job in dead) == doomed_n
    assert all(job["state"] == "created" for job in dead)
    # Groups: every job ran once, never two of one group at once.
    grouped = summary["grouped"] + python_grouped
    assert ids_of("fleet-grouped") == set(grouped)
    settled(grouped, "completed", 1)
    for group in "abc":
        same = [run for run in runs if run["queue"] == "fleet-grouped" and run["grp"] == group]
        assert overlaps(same) == [], f"two jobs of group {group} ran at once"
    # Python -> Node: completed by Node with its output.
    assert len(ids_of("fleet-node")) == len(to_node)
    assert all(by_id[r.id]["state"] == "completed" for _, r in to_node)
    # The schedule: once a minute from its creation until it was removed, never twice a minute.
    # Each occurrence is one __pgboss__send-it job (whoever's pass filed it, in its minute's
    # throttle slot) forwarded as one fleet-cron job, which a worker ran once.
    cron_jobs = [job for job in jobs if job["name"] == "fleet-cron"]
    settled([job["id"] for job in cron_jobs], "completed", 1)
    send_its = fleet.rows(
        "SELECT state::text, singleton_on FROM pgboss.job WHERE name = '__pgboss__send-it' "
        "AND data ->> 'name' = 'fleet-cron'"
    )
    assert all(row["state"] == "completed" for row in send_its), send_its
    slots = Counter(row["singleton_on"].replace(tzinfo=dt.UTC) for row in send_its)
    assert all(count == 1 for count in slots.values()), slots
    assert len(cron_jobs) == len(send_its)
    first = (scheduled + dt.timedelta(minutes=1)).replace(second=0, microsecond=0)
    required = set()
    minute = first
    while minute <= cron_stopped - dt.timedelta(seconds=10):
        required.add(minute)
        minute += dt.timedelta(minutes=1)
    # A pass's due window is the last 60 s: the minute the schedule was made in may be sent too.
    assert required <= set(slots), (sorted(required - set(slots)), sorted(slots))
    assert all(first - dt.timedelta(minutes=1) <= m <= cron_stopped for m in slots), sorted(slots)

    # Node's statistics agree with the rows (its supervisor and Python's keep them fresh).
    def stats_agree() -> list[Any]:
        wrong = []
        node_queues = {q["name"]: q for q in fleet.node("getQueues", ALL_QUEUES)}
        counts = {
            row["name"]: row
            for row in fleet.rows(
                "SELECT name, count(*) FILTER (WHERE state < 'active') AS queued, "
                "count(*) FILTER (WHERE state < 'active' AND start_after > now()) AS deferred, "
                "count(*) FILTER (WHERE state = 'active') AS active, count(*) AS total "
                "FROM pgboss.job WHERE name LIKE 'fleet-%%' GROUP BY name"
            )
        }
        for name in ALL_QUEUES:
            row, seen = counts[name], node_queues[name]
            expected = (row["queued"], row["deferred"], row["active"], row["total"])
            got = (seen["queuedCount"], seen["deferredCount"], seen["activeCount"], seen["totalCount"])
            if got != expected:
                wrong.append((name, expected, got))
        return wrong

    wait_for(lambda: not stats_agree(), 30, "Node's getQueues() to agree with the rows", interval=2.0)
    for name in ALL_QUEUES:
        (stats,) = fleet.node("getQueueStats", name) or [None]
        assert stats is not None and stats["totalCount"] == len(ids_of(name)), (name, stats)

    supervisor.process.send_signal(15)
    assert _line(supervisor, "stopped", 30)["errors"] == 0, supervisor.log()[-4000:]
    report = {
        "seconds": seconds,
        "jobs": len(jobs),
        "task_runs": len(runs),
        "by_queue": dict(Counter(job["name"] for job in jobs)),
        "by_state": dict(Counter(job["state"] for job in jobs)),
        "cron_firings": len(cron_jobs),
        "python_to_node": len(to_node),
    }
    print("fleet run:", json.dumps(report, sort_keys=True))  # shown with pytest -s
    return report
