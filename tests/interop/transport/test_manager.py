"""The pg-boss core against real Node pg-boss from npm, both ways, for 12.38.1, 12.34.0 AND 12.5.4.

* pg-boss 12.38.1 runs on a schema Python installed (version 46), started with ``migrate: false``.
* pg-boss 12.34.0 and 12.5.4 cannot use schema 46, so each creates its own (versions 42 and 26) and
  JobManager must serve those: same tests, older catalogs (42: no ``source_output``, no upsert key;
  26: no heartbeat, no job_now(), no notify, no dead-letter source columns).

Node is driven through ``tests/node/core.mjs`` (subprocess, JSON on stdout), always with
``supervise: false`` so only the test moves jobs. tests/node is installed with npm by the session
fixture when needed; these tests never skip.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kombu
import pytest

from tests.dbutil import pgboss_url
from transport import outputs
from transport import schema as pgschema
from transport.db import dsn_from_url
from transport.manager import JobManager

pytestmark = [pytest.mark.node, pytest.mark.own_database("interop")]

#: Release -> the schema version it runs on.
RELEASES = {"12.38": 46, "12.34": 42, "12.5": 26}
#: Release -> the npm version tests/node/package.json pins for it.
VERSIONS = {"12.38": "12.38.1", "12.34": "12.34.0", "12.5": "12.5.4"}
MS = dt.timedelta(milliseconds=1)  # Node's dates carry milliseconds only


class Node:
    """One Node pg-boss release on one schema: ``node(command, **options)`` -> its JSON output."""

    #: Options core.mjs parses as JSON; the rest are plain strings.
    JSON_OPTIONS = frozenset({"data", "options", "result", "names", "jobs"})

    def __init__(self, directory: Path, release: str, url: str, schema: str) -> None:
        self.script = directory / "core.mjs"
        self.release, self.url, self.schema = release, dsn_from_url(url), schema

    def argv(self, command: str, **options: Any) -> list[str]:
        argv = ["node", str(self.script), self.release, self.url, self.schema, command]
        for key, value in options.items():
            argv += [f"--{key}", json.dumps(value) if key in self.JSON_OPTIONS else str(value)]
        return argv

    def __call__(self, command: str, **options: Any) -> Any:
        done = subprocess.run(self.argv(command, **options), capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise AssertionError(f"node {self.release} {command} failed:\n{done.stderr.strip()}")
        return json.loads(done.stdout)


@dataclass
class Pair:
    release: str
    node: Node
    boss: JobManager


@pytest.fixture(params=list(RELEASES), ids=[f"pg-boss-{VERSIONS[r]}" for r in RELEASES])
def pair(
    request: pytest.FixtureRequest,
    node_dir: Path,
    make_boss: Callable[..., JobManager],
    db_url: str,
) -> Pair:
    release = request.param
    schema = "t_" + uuid.uuid4().hex[:12]
    boss = make_boss(schema)  # nothing touches the database until boss.info
    node = Node(node_dir, release, db_url, schema)
    if RELEASES[release] != 46:
        # Older releases cannot use schema 46: each makes its own.
        assert node("install") == {"schemaVersion": RELEASES[release]}
    assert boss.info.version == RELEASES[release]  # Python installs 46 only where there is nothing
    return Pair(release, node, boss)


def node_time(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")) if value is not None else None


def catalog(boss: JobManager) -> list[tuple[str, str]]:
    with boss.db.cursor() as cur:
        cur.execute(
            "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s ORDER BY 1",
            (boss.schema,),
        )
        return [(r["relname"], r["relkind"]) for r in cur.fetchall()]


def test_node_starts_on_the_schema_without_migrating(
    pair: Pair, make_boss: Callable[..., JobManager]
) -> None:
    before = catalog(pair.boss)
    assert pair.node("start") == {"schemaVersion": RELEASES[pair.release]}  # migrate: false
    assert catalog(pair.boss) == before
    with pair.boss.db.connection() as conn:
        assert pgschema.detect(conn, pair.boss.schema).version == RELEASES[pair.release]
    if pair.release == "12.5":
        # The v26 catalog JobManager serves: none of the later optional features.
        assert not {"heartbeat", "job_now", "source", "blocked"} & pair.boss.info.features
        # ...and 12.5.4 itself refuses a schema-46 database, which is why it gets its own.
        python_made = make_boss()
        assert python_made.info.version == 46
        with pytest.raises(AssertionError, match="requires migrations"):
            Node(pair.node.script.parent, "12.5", pair.node.url, python_made.schema)("start")


def test_node_sends_python_completes(pair: Pair) -> None:
    node, boss = pair.node, pair.boss
    node("create-queue", queue="from-node", options={"retryLimit": 4})
    data = {"url": "https://example.org/a", "tags": ["x", "y"], "n": 1}
    job_id = node("send", queue="from-node", data=data, options={"priority": 3})["id"]
    scalar_id = node("send", queue="from-node", data={"n": 2})["id"]

    jobs = boss.fetch(["from-node"], 5)
    assert [(j.id, j.data, j.priority, j.retry_limit, j.retry_count) for j in jobs] == [
        (job_id, data, 3, 4, 0),
        (scalar_id, {"n": 2}, 0, 4, 0),
    ]
    completed = boss.complete("from-node", [(job_id, {"answer": 42}, 0), (scalar_id, ["a", 1], 0)])
    assert sorted(completed) == sorted([job_id, scalar_id])
    assert {r["id"]: r["state"] for r in boss.get_jobs([job_id, scalar_id])} == {
        job_id: "completed",
        scalar_id: "completed",
    }

    seen = node("get", queue="from-node", id=job_id)["job"]
    assert (seen["state"], seen["output"], seen["retryCount"]) == ("completed", {"answer": 42}, 0)
    assert seen["completedOn"] is not None and seen["startedOn"] is not None
    seen = node("get", queue="from-node", id=scalar_id)["job"]
    assert (seen["state"], seen["output"]) == ("completed", {"value": ["a", 1]})


EXOTIC = {
    "text": "héllo ✓ \u2028 \"quoted\" 'single' \\ back",
    "int": 9007199254740991,
    "float": 1.5,
    "negative": -0.25,
    "bool": False,
    "null": None,
    "empty": {},
    "nested": {"list": [1, None, True, {"deep": ["x"]}], "emoji": "🦆"},
}


def test_python_sends_node_works(pair: Pair) -> None:
    boss = pair.boss
    boss.create_queue("from-python")
    job_id = boss.send("from-python", EXOTIC, priority=1)
    result = pair.node("work", queue="from-python", count=1)
    assert result["jobs"] == [{"id": job_id, "data": EXOTIC, "retryCount": 0}]
    [final] = result["final"]
    assert (final["state"], final["output"]) == ("completed", {"seen": EXOTIC})
    row = boss.get_job(job_id)
    assert (row["state"], row["output"], row["data"]) == ("completed", {"seen": EXOTIC}, EXOTIC)


def test_python_fail_is_a_node_retry(pair: Pair) -> None:
    node, boss = pair.node, pair.boss
    boss.create_queue("failing", retry_limit=2, retry_delay=1, retry_backoff=True)
    job_id = node("send", queue="failing", data={"try": "me"})["id"]
    [job] = boss.fetch(["failing"])
    t0 = boss.now()
    moved = boss.fail("failing", [job_id], outputs.error_output(ValueError("kaput")), attempts={job_id: 0})
    t1 = boss.now()
    assert [m["state"] for m in moved] == ["retry"]

    seen = node("get", queue="failing", id=job_id)["job"]
    assert (seen["state"], seen["retryCount"], seen["completedOn"]) == ("retry", 0, None)
    assert (seen["output"]["name"], seen["output"]["message"]) == ("ValueError", "kaput")
    assert "ValueError: kaput" in seen["output"]["stack"]
    # pg-boss backoff, first retry: between retry_delay·2^0 and twice that after the failure.
    start_after = node_time(seen["startAfter"])
    assert t0 + dt.timedelta(seconds=1) - MS <= start_after <= t1 + dt.timedelta(seconds=2)
    assert node_time(seen["startedOn"]) is not None  # kept, so Node counts the next claim as a retry

    # Node's worker honours that start_after and counts the re-claim.
    result = node("work", queue="failing", count=1, result="ok", timeout=20)
    assert result["jobs"] == [{"id": job_id, "data": {"try": "me"}, "retryCount": 1}]
    [final] = result["final"]
    assert (final["state"], final["output"], final["retryCount"]) == ("completed", {"value": "ok"}, 1)
    assert node_time(final["startedOn"]) >= start_after - MS


def test_python_fail_dead_letters_a_node_job_like_node(pair: Pair) -> None:
    """The dead-letter copy of a failed Node job carries what Node's own copy carries."""
    node, boss = pair.node, pair.boss
    boss.create_queue("graveyard", retry_limit=5, retention_seconds=600)
    boss.create_queue("doomed", retry_limit=0, dead_letter="graveyard")
    options: dict[str, Any] = {"priority": 4, "singletonKey": "key-1"}
    if pair.release != "12.5":
        options["group"] = {"id": "tenant-7", "tier": "gold"}
    job_id = node("send", queue="doomed", data={"d": 1}, options=options)["id"]
    boss.fetch(["doomed"])
    error = outputs.error_output(RuntimeError("final"))
    assert [m["state"] for m in boss.fail("doomed", [job_id], error)] == ["failed"]

    [dead] = [r for r in boss.list_jobs(name="graveyard")]
    seen = node("get", queue="graveyard", id=dead["id"])["job"]
    assert (seen["state"], seen["data"], seen["retryLimit"], seen["policy"]) == ("created", {"d": 1}, 5, None)
    if pair.release == "12.38":  # schema 46: the origin is recorded, the error moves to sourceOutput
        assert (seen["sourceName"], seen["sourceId"], seen["sourceRetryCount"]) == ("doomed", job_id, 0)
        assert (seen["sourceOutput"], seen["output"], seen["sourceRootId"]) == (error, None, job_id)
        assert (seen["priority"], seen["singletonKey"]) == (4, "key-1")
        assert (dead["group_id"], dead["group_tier"]) == ("tenant-7", "gold")
    elif pair.release == "12.34":  # schema 42: the origin is recorded, the error stays the output
        assert (seen["sourceName"], seen["sourceId"], seen["output"]) == ("doomed", job_id, error)
        assert (seen["priority"], seen["singletonKey"]) == (4, "key-1")
        assert (dead["group_id"], dead["group_tier"]) == ("tenant-7", "gold")
    else:  # schema 26 (pg-boss 12.0-12.5): the copy holds the error as its output
        assert seen["output"] == error


def test_a_python_consumer_turns_notify_on_so_node_sends_wake_it(pair: Pair, db_url: str) -> None:
    """Node's createQueue leaves ``notify`` off: its sends then NOTIFY no one, and a Python consumer
    would find them only at its safety poll. Consuming the queue turns it on (schema 32+); where
    there is no notify the safety poll runs at Node's own polling interval."""
    node, boss = pair.node, pair.boss
    node("create-queue", queue="node-made")
    options = {
        "schema": boss.schema,
        "polling_interval": 60,  # far beyond this test: only a NOTIFY can wake the consumer
        "task_for_queue": {"node-made": "stories.analyze"},
        "supervise": False,
    }
    got: list[kombu.Message] = []

    def keep(body: Any, message: kombu.Message) -> None:
        got.append(message)
        message.ack()

    with kombu.Connection(pgboss_url(db_url), transport_options=options) as conn:
        with conn.Consumer(kombu.Queue("node-made", routing_key="node-made"), callbacks=[keep]):
            with pytest.raises(TimeoutError):
                conn.drain_events(timeout=0.5)  # the first pass finds nothing; the next poll is in 60 s
            if pair.release == "12.5":
                # Schema 26 has no notify: nothing to turn on, so the consumer polls as often as
                # Node's own workers do (2 s), whatever its polling_interval.
                assert "notify" not in boss.get_queue("node-made")
            else:
                assert boss.get_queue("node-made")["notify"] is True
            job_id = node("send", queue="node-made", data={"storyId": "s1"})["id"]
            conn.drain_events(timeout=10)
    assert [(m.headers["id"], m.headers["task"]) for m in got] == [(job_id, "stories.analyze")]
