"""A Python supervisor leaves a pg-boss schema as Node's supervisor would, for every release of the
interop matrix: the queue statistics Node's ``getQueues()``/``getQueueStats()`` read, backlog
warnings, flow resolution; and beside a live Node supervisor it steps back instead of racing it."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.interop.transport.test_manager import RELEASES, VERSIONS, Node
from transport import bindings
from transport.maintenance import Supervisor
from transport.manager import JobManager

pytestmark = [pytest.mark.node, pytest.mark.own_database("supervise")]


@pytest.fixture(params=list(RELEASES), ids=[f"pg-boss-{VERSIONS[r]}" for r in RELEASES])
def pair(
    request: pytest.FixtureRequest,
    node_dir: Path,
    make_boss: Callable[..., JobManager],
    db_url: str,
) -> tuple[str, Node, JobManager]:
    release = request.param
    schema = "s_" + uuid.uuid4().hex[:12]
    boss = make_boss(schema)
    node = Node(node_dir, release, db_url, schema)
    if RELEASES[release] != 46:
        assert node("install") == {"schemaVersion": RELEASES[release]}
    assert boss.info.version == RELEASES[release]
    return release, node, boss


def supervisor(
    boss: JobManager, warnings: list[dict[str, Any]] | None = None, **intervals: float
) -> Supervisor:
    """A supervisor whose every claim is due at once (the tests call its passes themselves)."""
    bindings.install(boss)  # the transport's tables, whose broadcast log a pass sweeps
    options = {"monitor_interval": 0.0, "maintenance_interval": 0.0, "flow_interval": 0.0, **intervals}
    on_warning = warnings.append if warnings is not None else (lambda _w: None)
    return Supervisor(boss, on_warning=on_warning, **options)


def test_python_supervisor_fills_the_counts_node_reads(pair: tuple[str, Node, JobManager]) -> None:
    release, node, boss = pair
    node("create-queue", queue="counted", options={"warningQueueSize": 2})
    for n in range(4):
        node("send", queue="counted", data={"n": n})
    node("send", queue="counted", data={"n": "later"}, options={"startAfter": 3600})
    first, second = boss.fetch(["counted"], 2)
    boss.complete("counted", [(first.id, {"ok": 1}, first.retry_count)])

    before = node("queues", names=["counted"])["queues"][0]
    assert (before["queuedCount"], before["activeCount"], before["totalCount"]) == (
        0,
        0,
        0,
    )  # nobody counted yet

    warnings: list[dict[str, Any]] = []
    sup = supervisor(boss, warnings)
    sup.run_once()  # counts, then the deletion pass sets what the queue retains (schema 46)
    sup.run_once()  # counts again, now with the retained count
    [seen] = node("queues", names=["counted"])["queues"]
    # 2 waiting now + 1 deferred; 1 active; 1 completed; 5 in all.
    expected = {"queuedCount": 3, "deferredCount": 1, "activeCount": 1, "totalCount": 5}
    if RELEASES[release] >= 32:
        expected |= {"readyCount": 2, "failedCount": 0}
    assert {k: seen[k] for k in expected} == expected
    if release == "12.38":
        assert seen["blockedCount"] == 0
        [stats] = node("stats", queue="counted")["stats"]
        assert {k: stats[k] for k in expected} == expected
        assert stats["capturedOn"] is not None  # monitor_on: when these counts were written
    elif release == "12.5":
        stats = node("stats", queue="counted")["stats"]
        assert (stats["queuedCount"], stats["activeCount"], stats["totalCount"]) == (3, 1, 5)

    # The backlog warning: 3 queued over the queue's threshold of 2, once per counting pass.
    assert warnings and {w["queue"] for w in warnings} == {"counted"}
    assert (warnings[0]["queued"], warnings[0]["threshold"]) == (3, 2)
    assert "over its warning threshold of 2" in warnings[0]["message"]

    # The counts follow the jobs at the next pass.
    boss.complete("counted", [(second.id, None, second.retry_count)])
    sup.run_once()
    [seen] = node("queues", names=["counted"])["queues"]
    assert (seen["activeCount"], seen["queuedCount"], seen["totalCount"]) == (0, 3, 5)


def test_a_node_flow_completes_when_python_runs_every_job(pair: tuple[str, Node, JobManager]) -> None:
    release, node, boss = pair
    if not boss.info.has("flows"):
        pytest.skip(f"pg-boss {VERSIONS[release]} has no flows")  # schema 26: before flows existed
    node("create-queue", queue="parent")
    node("create-queue", queue="child")
    ids = node(
        "flow",
        jobs=[
            {"ref": "p", "name": "parent", "data": {"step": 1}},
            {"ref": "c", "name": "child", "data": {"step": 2}, "dependsOn": ["p"]},
        ],
    )["ids"]
    child = node("get", queue="child", id=ids["c"])["job"]
    assert (child["blocked"], child["pendingDependencies"]) == (True, 1)
    assert boss.fetch(["child"], 1) == []  # blocked: not runnable

    [parent] = boss.fetch(["parent"], 1)
    assert parent.id == ids["p"]
    boss.complete("parent", [(parent.id, {"done": 1}, parent.retry_count)])
    sup = supervisor(boss)
    assert sup.resolve_flows() == (1, 1)
    assert sup.resolve_flows() == (0, 0)  # the parent no longer blocks: nothing twice

    child = node("get", queue="child", id=ids["c"])["job"]
    assert (child["blocked"], child["pendingDependencies"]) == (False, 0)
    [fetched] = boss.fetch(["child"], 1)
    boss.complete("child", [(fetched.id, {"done": 2}, fetched.retry_count)])
    child = node("get", queue="child", id=ids["c"])["job"]
    assert (child["state"], child["output"]) == ("completed", {"done": 2})


def test_python_steps_back_while_a_node_supervisor_runs(pair: tuple[str, Node, JobManager]) -> None:
    """Node and Python supervisors on the same 1-second intervals: Node keeps its turn (Python claims
    nothing while Node's registered instance is alive), the counts stay fresh, and once Node stops
    Python takes over. Node registers its instances from schema 44 on; older schemas only share the
    claims (tested above through the same statements)."""
    release, node, boss = pair
    if not boss.info.has("instances"):
        pytest.skip(f"pg-boss {VERSIONS[release]} keeps no instance registry")
    node("create-queue", queue="shared")
    for n in range(3):
        node("send", queue="shared", data={"n": n})
    proc = subprocess.Popen(
        node.argv("supervise", interval=1, seconds=8),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert json.loads(proc.stdout.readline()) == {"started": True}
        # A queue never claimed is due to whoever comes first: let Node's first pass take it.
        deadline = time.monotonic() + 10
        while boss.get_queue("shared")["monitor_on"] is None:
            assert time.monotonic() < deadline, "Node's supervisor never counted the queue"
            time.sleep(0.1)
        sup = supervisor(boss, monitor_interval=1.0, maintenance_interval=86400.0, flow_interval=1.0)
        deadline = time.monotonic() + 6
        counted = flows = 0
        while time.monotonic() < deadline:
            counted += sup.run_once()["counted"]
            flows += sup.resolve_flows() != (0, 0) or sup.manager.claim_flow_pass(2.0)
            time.sleep(0.25)
        assert sup.upkeep.node_supervisors() == 1
        assert (counted, flows) == (0, 0)  # Node's turn every time
        [seen] = node("queues", names=["shared"])["queues"]
        assert seen["queuedCount"] == 3  # Node counted
        with boss.db.cursor() as cur:
            cur.execute(
                f'SELECT now() - monitor_on AS age FROM "{boss.schema}".queue WHERE name = %s', ("shared",)
            )
            assert cur.fetchone()["age"] < dt.timedelta(seconds=3)  # fresh: within two intervals
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert sup.upkeep.node_supervisors() == 0  # stopped: Python's turn
    node("send", queue="shared", data={"n": 3})
    time.sleep(1.1)
    assert sup.run_once()["counted"] == 1
    [seen] = node("queues", names=["shared"])["queues"]
    assert seen["queuedCount"] == 4
