"""pg-boss groups in the Celery consumer: real ``celery worker`` processes honour ``groupConcurrency``.

Two prefork workers (3 processes each) consume ``fleet-grouped`` with the transport option
``group_concurrency: {"fleet-grouped": 1}``. Node pg-boss 12.38.1 inserts jobs of groups a, b and
c (``group: {id}``), Python sends jobs of group d (``apply_async(pgboss={"group": ...})``) and jobs
with no group. Every job runs once; no two jobs of one group ever run at the same time, while jobs
of different groups do run side by side (six slots, four groups).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.interop.fleet_procs import Fleet, overlaps, wait_for

QUEUE = "fleet-grouped"
PER_GROUP = 4
HOLD = 0.4


@pytest.fixture
def fleet(scratch_db: Callable[[str], str], tmp_path: Path, node_dir: Path) -> Iterator[Fleet]:
    from tests.interop import fleet_app

    url = scratch_db("zeke_groups")
    fleet = Fleet(url, tmp_path, node_dir)
    assert fleet.install() == 46
    fleet_app.create_effects(url)
    try:
        yield fleet
    finally:
        fleet.stop()


def test_group_concurrency_one_serialises_each_group_across_workers(fleet: Fleet) -> None:
    workers = [fleet.worker(f"g{i}", [QUEUE], concurrency=3) for i in (1, 2)]
    for worker in workers:
        worker.wait_log(" ready.")

    node_jobs = [
        {"data": {"group": g, "hold": HOLD, "n": n}, "group": {"id": g}}
        for n in range(PER_GROUP)
        for g in "abc"
    ]
    fleet.node("insert", QUEUE, node_jobs)

    python_ids = [
        fleet.send(QUEUE, {"group": "d", "hold": HOLD}, pgboss={"group": {"id": "d"}}).id
        for _ in range(PER_GROUP)
    ] + [fleet.send(QUEUE, {"group": "free", "hold": HOLD}).id for _ in range(2)]
    total = 4 * PER_GROUP + 2

    wait_for(
        lambda: len(fleet.rows("SELECT 1 FROM fleet_effects.run WHERE queue = %s", (QUEUE,))) >= total,
        120,
        "every grouped job to run",
    )
    wait_for(
        lambda: (
            fleet.rows(
                "SELECT count(*) AS n FROM pgboss.job WHERE name = %s AND state = 'completed'", (QUEUE,)
            )[0]["n"]
            == total
        ),
        30,
        "every grouped job to complete",
    )
    runs = fleet.rows("SELECT * FROM fleet_effects.run WHERE queue = %s", (QUEUE,))
    assert len(runs) == total, "a job ran more than once"
    assert len({r["job_id"] for r in runs}) == total
    jobs = fleet.rows("SELECT id::text, group_id, state FROM pgboss.job WHERE name = %s", (QUEUE,))
    assert sorted(j["group_id"] or "-" for j in jobs) == sorted(
        [g for g in "abcd" for _ in range(PER_GROUP)] + ["-", "-"]
    )
    assert set(python_ids) <= {j["id"] for j in jobs}

    for group in "abcd":
        same = [r for r in runs if r["grp"] == group]
        assert len(same) == PER_GROUP
        assert overlaps(same) == [], f"two jobs of group {group} ran at once"
    grouped_runs = [r for r in runs if r["grp"] in "abcd"]
    assert any(a["grp"] != b["grp"] for a, b in overlaps(grouped_runs)), (
        "jobs of different groups never ran side by side"
    )
    assert len({r["pid"] for r in runs}) > 1  # more than one pool process took part
