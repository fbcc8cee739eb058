"""pg-boss 12.38's verbs beyond send/fetch/settle (transport.verbs) against real Node pg-boss, both ways.

Each verb: Python writes and Node 12.38 reads it through its own API, and Node writes and Python
reads it, on the same schema. Node is driven through ``tests/node/verbs.mjs`` (any PgBoss method with
JSON arguments), started with ``supervise: false`` so only the test moves jobs. A schema made by
Node 12.5.4 (version 26) shows the refusals of operations that need a newer schema.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from transport.db import dsn_from_url
from transport.exceptions import InvalidOption, QueueNotFound, UnsupportedBySchema
from transport.manager import JobManager

pytestmark = [pytest.mark.node, pytest.mark.own_database("verbs")]


class Node:
    """``node(method, *args)``: Node pg-boss's ``boss[method](...args)`` on the same schema."""

    def __init__(self, directory: Path, release: str, url: str, schema: str) -> None:
        self.script = directory / "verbs.mjs"
        self.release, self.url, self.schema = release, dsn_from_url(url), schema

    def call(self, method: str, *args: Any) -> dict[str, Any]:
        argv = ["node", str(self.script), self.release, self.url, self.schema, method, json.dumps(args)]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        if done.returncode not in (0, 2):
            raise AssertionError(f"node {method} crashed:\n{done.stderr.strip()}")
        return json.loads(done.stdout)

    def __call__(self, method: str, *args: Any) -> Any:
        out = self.call(method, *args)
        if "error" in out:
            raise AssertionError(f"node {method} failed: {out['error']}")
        return out["result"]


@pytest.fixture
def boss(make_boss: Callable[..., JobManager]) -> JobManager:
    boss = make_boss()
    assert boss.info.version == 46
    return boss


@pytest.fixture
def node(boss: JobManager, node_dir: Path, db_url: str) -> Node:
    return Node(node_dir, "12.38", db_url, boss.schema)


def test_pubsub_both_ways(boss: JobManager, node: Node) -> None:
    boss.create_queue("py-sub")
    node("createQueue", "node-sub")
    boss.subscribe("news", "py-sub")
    node("subscribe", "news", "node-sub")

    sent = boss.publish("news", {"from": "python"})
    assert set(sent) == {"py-sub", "node-sub"} and all(sent.values())
    node("publish", "news", {"from": "node"})
    for queue in ("py-sub", "node-sub"):
        py_seen = sorted(j["data"]["from"] for j in boss.find_jobs(queue))
        node_seen = sorted(j["data"]["from"] for j in node("findJobs", queue))
        assert py_seen == node_seen == ["node", "python"]

    boss.unsubscribe("news", "node-sub")
    node("unsubscribe", "news", "py-sub")
    assert boss.publish("news", {"from": "nobody"}) == {}
    with pytest.raises(QueueNotFound):
        boss.subscribe("news", "no-such-queue")
    with pytest.raises(InvalidOption):
        boss.publish("")


def test_update_queue_both_ways(boss: JobManager, node: Node) -> None:
    boss.create_queue("dlq")
    boss.create_queue("uq", retry_limit=1)
    boss.update_queue("uq", retry_limit=7, dead_letter="dlq", retry_delay_max=30, warning_queue_size=50)
    seen = node("getQueue", "uq")
    assert (seen["retryLimit"], seen["deadLetter"], seen["retryDelayMax"], seen["warningQueueSize"]) == (
        7,
        "dlq",
        30,
        50,
    )
    assert seen["policy"] == "standard" and seen["retryDelay"] == 1  # untouched

    node("updateQueue", "uq", {"retryLimit": 2, "deadLetter": None, "expireInSeconds": 60})
    queue = boss.get_queue("uq")
    assert queue is not None
    assert (queue["retry_limit"], queue["dead_letter"], queue["expire_seconds"]) == (2, None, 60)
    boss.update_queue("uq", retry_delay_max=None)
    assert node("getQueue", "uq")["retryDelayMax"] is None

    # Node's refusals, in Python's exceptions.
    assert "cannot be changed" in node.call("updateQueue", "uq", {"policy": "singleton"})["error"]
    with pytest.raises(InvalidOption, match="policy cannot be changed"):
        boss.update_queue("uq", policy="singleton")
    with pytest.raises(InvalidOption, match="no properties"):
        boss.update_queue("uq")
    with pytest.raises(InvalidOption, match="itself"):
        boss.update_queue("uq", dead_letter="uq")
    with pytest.raises(QueueNotFound):
        boss.update_queue("no-such-queue", retry_limit=1)
    with pytest.raises(InvalidOption, match="retry_limit"):
        boss.update_queue("uq", retry_limit=-1)


def test_find_jobs_both_ways(boss: JobManager, node: Node) -> None:
    boss.create_queue("fq")
    py_ids = [boss.send("fq", {"kind": "a", "n": n}, singleton_key=f"k{n}") for n in range(3)]
    node_id = node("send", "fq", {"kind": "b", "n": 9}, {"singletonKey": "k9"})
    assert boss.fetch(["fq"], 1)[0].id == py_ids[0]  # one active: not "queued" any more

    assert [j["id"] for j in node("findJobs", "fq", {"data": {"kind": "a"}})] == py_ids
    assert [j["id"] for j in boss.find_jobs("fq", data={"kind": "b"})] == [node_id]
    assert [j["id"] for j in boss.find_jobs("fq", key="k9")] == [node_id]
    assert [j["id"] for j in boss.find_jobs("fq", id=py_ids[1])] == [py_ids[1]]
    queued = [j["id"] for j in boss.find_jobs("fq", queued=True)]
    assert queued == [j["id"] for j in node("findJobs", "fq", {"queued": True})] == [*py_ids[1:], node_id]
    # Pages: (created_on, id) order, after the last id of the previous page, like Node's.
    first = boss.find_jobs("fq", limit=2)
    rest = boss.find_jobs("fq", limit=2, after=first[-1]["id"])
    node_rest = node("findJobs", "fq", {"limit": 2, "after": first[-1]["id"]})
    assert [j["id"] for j in rest] == [j["id"] for j in node_rest]
    assert len(first) + len(rest) == 4
    with pytest.raises(InvalidOption, match="limit"):
        boss.find_jobs("fq", limit=0)


def test_update_both_ways(boss: JobManager, node: Node) -> None:
    boss.create_queue("edit")
    old = boss.send("edit", {"v": 1}, singleton_key="doc")
    new = node("send", "edit", {"v": 2}, {"singletonKey": "doc"})

    # By key, newest by default: Node's job is the one Python edits.
    assert boss.update("edit", {"v": 3}, singleton_key="doc", priority=4) == {"jobs": [new], "updated": 1}
    seen = node("getJobById", "edit", new)
    assert (seen["data"], seen["priority"]) == ({"v": 3}, 4)
    # Node edits Python's (the oldest); Python reads it.
    assert node("update", "edit", {"v": 5}, {"singletonKey": "doc", "match": "oldest"})["jobs"] == [old]
    assert boss.get_job(old)["data"] == {"v": 5}
    # By id, options only (data kept); a start_after moves keep_until with it.
    before = boss.get_job(old)
    assert boss.update("edit", id=old, start_after=3600, retry_limit=9)["updated"] == 1
    after = boss.get_job(old)
    assert after["data"] == {"v": 5} and after["retry_limit"] == 9
    assert after["start_after"] > before["start_after"]
    assert after["keep_until"] - after["start_after"] == before["keep_until"] - before["start_after"]
    assert node("getJobById", "edit", old)["retryLimit"] == 9
    # match="all" edits every waiting job of the key; an active job is never edited.
    boss.fetch(["edit"], 1)
    assert boss.update("edit", {"v": 0}, singleton_key="doc", match="all")["updated"] == 1

    with pytest.raises(InvalidOption, match="exactly one of id or singleton_key"):
        boss.update("edit", {"v": 1})
    with pytest.raises(InvalidOption, match="match is only valid"):
        boss.update("edit", {"v": 1}, id=old, match="all")
    with pytest.raises(InvalidOption, match="match must be"):
        boss.update("edit", {"v": 1}, singleton_key="doc", match="middle")  # type: ignore[arg-type]


def test_upsert_both_ways(boss: JobManager, node: Node) -> None:
    boss.create_queue("up")
    made = boss.upsert("up", {"v": 1}, singleton_key="u")
    assert made["inserted"] == 1 and made["updated"] == 0
    # Node's upsert of the same key finds Python's job (upsert_by_key, job_i13) and edits it.
    assert node("upsert", "up", {"v": 2}, {"singletonKey": "u"}) == {
        "jobs": made["jobs"],
        "updated": 1,
        "inserted": 0,
    }
    assert boss.get_job(made["jobs"][0])["data"] == {"v": 2}
    # Node inserts, Python edits.
    theirs = node("upsert", "up", {"v": 3}, {"singletonKey": "n"})["jobs"]
    assert boss.upsert("up", {"v": 4}, singleton_key="n") == {"jobs": theirs, "updated": 1, "inserted": 0}
    assert node("getJobById", "up", theirs[0])["data"] == {"v": 4}
    # By id: the id given is the new job's id.
    job_id = str(uuid.uuid4())
    assert boss.upsert("up", {"v": 5}, id=job_id)["jobs"] == [job_id]
    assert node("getJobById", "up", job_id)["data"] == {"v": 5}

    boss.create_queue("fifo-up", policy="key_strict_fifo")
    with pytest.raises(InvalidOption, match="key_strict_fifo queues require a singleton_key"):
        boss.upsert("fifo-up", {"v": 1}, id=str(uuid.uuid4()))


def test_bulk_deletes_both_ways(boss: JobManager, node: Node) -> None:
    boss.create_queue("del")
    for n in range(3):
        boss.send("del", {"n": n})
    done = boss.fetch(["del"], 1)[0]
    boss.complete("del", [(done.id, None, done.retry_count)])
    active = boss.fetch(["del"], 1)[0]
    node("send", "del", {"n": 9})

    assert boss.delete_queued_jobs("del") == 2  # one of Python's, one of Node's
    assert node("deleteStoredJobs", "del") == 1  # the completed one
    assert [j["id"] for j in boss.find_jobs("del")] == [active.id]
    node("send", "del", {"n": 10})
    assert boss.delete_all_jobs("del") == 2
    assert node("findJobs", "del") == []
    with pytest.raises(QueueNotFound):
        boss.delete_queued_jobs("no-such-queue")


def test_blocked_keys_both_ways(boss: JobManager, node: Node) -> None:
    node("createQueue", "fifo", {"policy": "key_strict_fifo", "retryLimit": 0})
    for key in ("b", "a", "c"):
        boss.send("fifo", {"key": key}, singleton_key=key)
    failed = [j for j in boss.fetch(["fifo"], 3) if j.singleton_key in ("a", "b")]
    boss.fail("fifo", [j.id for j in failed], output={"boom": True})
    assert boss.get_blocked_keys("fifo") == node("getBlockedKeys", "fifo") == ["a", "b"]
    assert boss.get_blocked_keys("fifo", after="a") == ["b"]
    boss.create_queue("plain")
    with pytest.raises(InvalidOption, match="only available for key_strict_fifo"):
        boss.get_blocked_keys("plain")


def test_key_strict_fifo_without_key_is_a_clear_error(boss: JobManager, node: Node) -> None:
    boss.create_queue("fifo-send", policy="key_strict_fifo")
    with pytest.raises(InvalidOption, match="key_strict_fifo queues require a singleton_key"):
        boss.send("fifo-send", {"n": 1})
    with pytest.raises(InvalidOption, match="key_strict_fifo"):
        boss.send_many("fifo-send", [{"data": 1, "singleton_key": "k"}, {"data": 2}])
    assert boss.find_jobs("fifo-send") == []  # nothing half-sent
    assert "singletonKey" in node.call("send", "fifo-send", {"n": 1})["error"]


def _start_of_a_fresh_slot(seconds: int, needed: float) -> None:
    """Wait, when fewer than ``needed`` seconds are left of the current ``seconds``-wide singleton
    slot, for the next one: the sends below must all fall in one slot (the server is on this clock)."""
    left = seconds - time.time() % seconds
    if left < needed:
        time.sleep(left + 0.5)


def test_debounce_and_throttle_like_node(boss: JobManager, node: Node) -> None:
    boss.create_queue("deb")
    _start_of_a_fresh_slot(600, needed=90)
    first = boss.send_debounced("deb", {"n": 1}, 600, "k")
    second = boss.send("deb", {"n": 2}, singleton_seconds=600, singleton_key="k", singleton_next_slot=True)
    assert first and second and first != second
    # The slot after it is taken as well: a third send in this slot is dropped, as Node drops it.
    assert boss.send_debounced("deb", {"n": 3}, 600, "k") is None
    assert node("sendDebounced", "deb", {"n": 4}, None, 600, "k") is None
    jobs = {j["id"]: j for j in node("findJobs", "deb")}
    assert jobs[second]["startAfter"] > jobs[first]["startAfter"]  # waits for the next slot
    # Node debounces another key; Python's second send for it goes to the next slot.
    theirs = node("sendDebounced", "deb", {"n": 5}, None, 600, "n")
    assert theirs and boss.send_debounced("deb", {"n": 6}, 600, "n") not in (None, theirs)
    assert boss.send_throttled("deb", {"n": 7}, 600, "t") is not None
    assert boss.send_throttled("deb", {"n": 8}, 600, "t") is None
    assert node("sendThrottled", "deb", {"n": 9}, None, 600, "t") is None
    with pytest.raises(InvalidOption, match="singleton_seconds"):
        boss.send("deb", {}, singleton_next_slot=True)


def test_queue_stats_and_instances(boss: JobManager, node: Node) -> None:
    boss.create_queue("stats")
    boss.send("stats", {"n": 1})
    boss.send("stats", {"n": 2}, start_after=3600)
    boss.fetch(["stats"], 1)
    # Never monitored: counted now.
    counted = boss.get_queue_stats("stats")
    assert (counted["queued_count"], counted["deferred_count"], counted["active_count"]) == (1, 1, 1)
    assert counted["ready_count"] == 0 and counted["total_count"] == 2
    # Node counts and caches them on the queue row; Python reads that cache, as Node does.
    node_stats = node("getQueueStats", "stats")[0]
    cached = boss.get_queue_stats("stats")
    for key, node_key in (
        ("queued_count", "queuedCount"),
        ("deferred_count", "deferredCount"),
        ("active_count", "activeCount"),
        ("total_count", "totalCount"),
    ):
        assert cached[key] == node_stats[node_key] == counted[key]
    assert cached["captured_on"] is not None
    boss.send("stats", {"n": 3})
    assert boss.get_queue_stats("stats")["queued_count"] == 1  # the cache, until the next pass
    assert boss.get_queue_stats("stats", force=True)["queued_count"] == 2
    with pytest.raises(QueueNotFound):
        boss.get_queue_stats("no-such-queue")

    # Every Node call above registered an instance (and stopped it); Python lists them as Node does.
    ours = boss.get_instances()
    theirs = node("getInstances")
    assert [i["id"] for i in ours] == [i["id"] for i in theirs][: len(ours)]
    assert ours and all(not i["live"] for i in ours)


def test_old_schema_refuses_what_it_lacks(
    make_boss: Callable[..., JobManager], node_dir: Path, db_url: str
) -> None:
    schema = "t_" + uuid.uuid4().hex[:12]
    old = Node(node_dir, "12.5", db_url, schema)
    done = subprocess.run(
        ["node", str(node_dir / "core.mjs"), "12.5", old.url, schema, "install"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    boss = make_boss(schema)
    assert boss.info.version == 26
    boss.create_queue("old")
    job_id = boss.send("old", {"n": 1}, singleton_key="k")
    assert job_id
    with pytest.raises(UnsupportedBySchema, match=r"pg-boss 12\.36"):
        boss.get_instances()
    with pytest.raises(UnsupportedBySchema, match=r"pg-boss 12\.19"):
        boss.get_dependencies("old", job_id)
    with pytest.raises(UnsupportedBySchema, match=r"pg-boss 12\.37"):
        boss.upsert("old", {"n": 2}, singleton_key="k")
    with pytest.raises(UnsupportedBySchema, match=r"pg-boss 12\.12"):
        boss.update_queue("old", heartbeat_seconds=30)
    with pytest.raises(UnsupportedBySchema, match=r"pg-boss 12\.6"):
        boss.send("old", {"n": 2}, group={"id": "g"})
    with pytest.raises(UnsupportedBySchema, match=r"pg-boss 12\.6"):
        boss.fetch_grouped("old", 1, group_concurrency=1)
    with pytest.raises(UnsupportedBySchema, match=r"pg-boss 12\.19"):
        boss.flow([{"ref": "a", "name": "old"}, {"ref": "b", "name": "old", "depends_on": ["a"]}])
    with pytest.raises(UnsupportedBySchema, match=r"pg-boss 12\.35"):
        boss.redrive("old")
    assert len(boss.find_jobs("old")) == 1  # none of the refusals wrote anything
    # What schema 26 has works, and Node 12.5.4 reads it.
    boss.update_queue("old", retry_limit=5)
    assert boss.update("old", {"n": 3}, singleton_key="k")["updated"] == 1
    assert old("getJobById", "old", job_id)["data"] == {"n": 3}
    assert old("getQueue", "old")["retryLimit"] == 5
    assert [j["id"] for j in boss.find_jobs("old")] == [job_id]
    assert boss.delete_all_jobs("old") == 1


def test_groups_both_ways(boss: JobManager, node: Node) -> None:
    boss.create_queue("grp")
    for n in range(3):
        boss.send("grp", {"g": "a", "n": n}, group={"id": "a"})
        node("send", "grp", {"g": "b", "n": n}, {"group": {"id": "b", "tier": "vip"}})
    boss.send("grp", {"g": None})
    seen = {j["data"]["g"]: (j["groupId"], j["groupTier"]) for j in node("findJobs", "grp")}
    assert seen == {"a": ("a", None), "b": ("b", "vip"), None: (None, None)}

    # At most 1 active per group, 2 for the vip tier, across every worker; no group: no limit.
    got = boss.fetch_grouped("grp", 10, group_concurrency={"default": 1, "tiers": {"vip": 2}})
    assert sorted(str(j.data["g"]) for j in got) == ["None", "a", "b", "b"]
    assert boss.fetch_grouped("grp", 10, group_concurrency={"default": 1, "tiers": {"vip": 2}}) == []
    # Node's fetch with the same limits sees the jobs Python holds active and claims nothing either.
    assert (
        node("fetch", "grp", {"batchSize": 10, "groupConcurrency": {"default": 1, "tiers": {"vip": 2}}}) == []
    )
    # Up to 3 per group: Node takes a's last two (1 active) and b's last one (2 active).
    more = node("fetch", "grp", {"batchSize": 10, "groupConcurrency": 3})
    assert sorted(j["data"]["g"] for j in more) == ["a", "a", "b"]

    with pytest.raises(InvalidOption, match="group.id"):
        boss.send("grp", {}, group={"id": ""})
    with pytest.raises(InvalidOption, match="group_concurrency"):
        boss.fetch_grouped("grp", 1, group_concurrency=0)


def test_flow_both_ways(boss: JobManager, node: Node) -> None:
    boss.create_queue("steps")
    boss.create_queue("report")
    ids = boss.flow(
        [
            {"ref": "fetch", "name": "steps", "data": {"step": 1}},
            {"ref": "parse", "name": "steps", "data": {"step": 2}, "depends_on": ["fetch"]},
            {"ref": "report", "name": "report", "depends_on": ["fetch", "parse"]},
        ]
    )
    assert node("getDependencies", "report", ids["report"]) == sorted(
        [{"name": "steps", "id": ids["fetch"]}, {"name": "steps", "id": ids["parse"]}], key=lambda r: r["id"]
    )
    assert node("getDependents", "steps", ids["fetch"]) == sorted(
        [{"name": "report", "id": ids["report"]}, {"name": "steps", "id": ids["parse"]}],
        key=lambda r: (r["name"], r["id"]),
    )
    job = node("getJobById", "report", ids["report"])
    assert (job["blocked"], job["pendingDependencies"]) == (True, 2)
    assert node("getJobById", "steps", ids["fetch"])["blocking"] is True
    # Only the root is runnable, for Python and for Node.
    assert [j.id for j in boss.fetch(["steps", "report"], 10)] == [ids["fetch"]]
    assert node("fetch", "report", {"batchSize": 10}) == []

    theirs = node(
        "flow",
        [
            {"ref": "a", "name": "steps", "data": {"n": 1}},
            {"ref": "b", "name": "report", "dependsOn": ["a"]},
        ],
    )
    assert boss.get_dependencies("report", theirs["b"]) == [{"name": "steps", "id": theirs["a"]}]
    assert boss.get_dependents("steps", theirs["a"]) == [{"name": "report", "id": theirs["b"]}]
    assert boss.get_job(theirs["b"])["blocked"] is True
    assert boss.fetch(["report"], 10) == []

    with pytest.raises(InvalidOption, match="cycle"):
        boss.flow(
            [
                {"ref": "x", "name": "steps", "depends_on": ["y"]},
                {"ref": "y", "name": "steps", "depends_on": ["x"]},
            ]
        )
    with pytest.raises(InvalidOption, match="at least one job with depends_on"):
        boss.flow([{"ref": "x", "name": "steps"}, {"ref": "y", "name": "steps"}])
    # Atomic: a job that cannot be inserted (its id is taken) sends nothing.
    before = len(boss.find_jobs("steps"))
    with pytest.raises(InvalidOption, match="nothing was sent"):
        boss.flow(
            [
                {"ref": "new", "name": "steps"},
                {"ref": "dup", "name": "steps", "options": {"id": ids["fetch"]}, "depends_on": ["new"]},
            ]
        )
    assert len(boss.find_jobs("steps")) == before


def test_redrive_both_ways(boss: JobManager, node: Node) -> None:
    boss.create_queue("dead")
    boss.create_queue("work", retry_limit=0, dead_letter="dead")
    for n in range(3):
        boss.send("work", {"n": n, "kind": "py"})
    failed = boss.fetch(["work"], 3)
    boss.fail("work", [j.id for j in failed], output={"boom": True})
    assert len(boss.find_jobs("dead")) == 3

    preview = boss.preview_redrive("dead")
    assert preview == node("previewRedrive", "dead")
    assert preview == {"total": 3, "destinations": [{"name": "work", "count": 3}], "unroutable": 0}
    # Node moves one (filtered by data), Python the rest.
    assert node("redrive", "dead", {"data": {"n": 0}}) == 1
    assert boss.redrive("dead", limit=10) == 2
    assert boss.find_jobs("dead") == []
    back = boss.find_jobs("work", queued=True)
    assert sorted(j["data"]["n"] for j in back) == [0, 1, 2]
    assert {j["source_root_id"] for j in back} == {j.id for j in failed}
    assert all(j["retry_count"] == 0 and j["id"] not in {f.id for f in failed} for j in back)

    # Node dead-letters, Python redrives to another destination.
    boss.create_queue("elsewhere")
    assert boss.delete_queued_jobs("work") == 3
    node_job = node("send", "work", {"n": 9})
    fetched = node("fetch", "work", {"batchSize": 10})
    node("fail", "work", [j["id"] for j in fetched], {"why": "node"})
    assert boss.preview_redrive("dead", destination="elsewhere")["destinations"] == [
        {"name": "elsewhere", "count": 1}
    ]
    assert boss.redrive("dead", destination="elsewhere") == 1
    moved = node("findJobs", "elsewhere")
    assert [j["data"] for j in moved] == [{"n": 9}] and moved[0]["sourceRootId"] == node_job
    with pytest.raises(InvalidOption, match="limit"):
        boss.redrive("dead", limit=0)
