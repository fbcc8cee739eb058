"""pg-boss send options from Celery (the ``pgboss`` namespace) and Celery's retry options, against
the job row a publish inserts and what Node pg-boss 12.38's ``getJobById`` reads of it.

A real Celery app on ``pgboss://`` publishes (``apply_async``, ``signature.set``, ``send_task``,
the decorator); nothing consumes, so each row is read as sent.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from transport import celery_options
from transport.db import Database, dsn_from_url
from transport.exceptions import InvalidOption, QueueNotFound
from transport.manager import JobManager

pytestmark = pytest.mark.own_database("pgboss_options")

QUEUE = "opts"
DEAD = "opts-dead"


@pytest.fixture(scope="module")
def schema(database: Database) -> Iterator[str]:
    name = "po_" + uuid.uuid4().hex[:10]
    manager = JobManager(database, name)
    manager.create_queue(DEAD)
    manager.create_queue(QUEUE, retry_limit=4, retry_delay=3, retry_backoff=False)
    yield name
    with database.cursor() as cur:
        for suffix in ("", "_zeke"):
            cur.execute(f'DROP SCHEMA IF EXISTS "{name}{suffix}" CASCADE')


@pytest.fixture(scope="module")
def manager(database: Database, schema: str) -> JobManager:
    return JobManager(database, schema)


def make_app(db_url: str, schema: str, **conf: Any) -> Celery:
    import transport  # noqa: F401  (the pgboss:// alias)

    url = "pgboss://" + db_url.split("://", 1)[1]
    app = Celery("opts-" + uuid.uuid4().hex[:6], set_as_current=False)
    app.conf.update(
        broker_url=url,
        result_backend=url,
        broker_transport_options={"schema": schema, **conf.pop("transport", {})},
        result_backend_transport_options={"schema": schema},
        task_default_queue=QUEUE,
        **conf,
    )
    return app


@pytest.fixture(scope="module")
def app(db_url: str, schema: str) -> Iterator[Celery]:
    app = make_app(db_url, schema)

    @app.task(name="opts.plain")
    def plain(x: Any = None) -> Any:
        return x

    @app.task(name="opts.decorated", pgboss={"singleton_key": "task-key", "priority": 3, "retry_limit": 8})
    def decorated() -> None:
        return None

    @app.task(name="opts.bad", pgboss={"retry_limt": 2})
    def bad() -> None:
        return None

    @app.task(name="opts.backoff", max_retries=5, retry_backoff=2, retry_backoff_max=100)
    def backoff() -> None:
        return None

    @app.task(name="opts.delay", default_retry_delay=7, max_retries=None)
    def delay() -> None:
        return None

    yield app
    app.close()


def row(manager: JobManager, result: Any) -> dict[str, Any]:
    job = manager.get_job(result.id)
    assert job is not None, f"no job {result.id}"
    return job


def node_get(node_dir: Path, db_url: str, schema: str, job_id: str) -> dict[str, Any]:
    argv = ["node", str(node_dir / "core.mjs"), "12.38", dsn_from_url(db_url), schema, "get"]
    argv += ["--queue", QUEUE, "--id", job_id]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["job"]


def near(value: dt.datetime, expected: dt.datetime, seconds: float = 5.0) -> bool:
    return abs((value - expected).total_seconds()) <= seconds


# -- every pg-boss 12 send option, from apply_async ----------------------------------------------------

#: option -> (value sent, {column: value read back}).
SIMPLE: dict[str, tuple[Any, dict[str, Any]]] = {
    "priority": (5, {"priority": 5}),
    "singleton_key": ("k1", {"singleton_key": "k1"}),
    "expire_in_seconds": (30, {"expire_seconds": 30}),
    "heartbeat_seconds": (20, {"heartbeat_seconds": 20}),
    "delete_after_seconds": (50, {"deletion_seconds": 50}),
    "retry_limit": (9, {"retry_limit": 9}),
    "retry_delay": (4, {"retry_delay": 4}),
    "retry_backoff": (True, {"retry_backoff": True}),
    "dead_letter": (DEAD, {"dead_letter": DEAD}),
    "group": ({"id": "g1", "tier": "gold"}, {"group_id": "g1", "group_tier": "gold"}),
}


@pytest.mark.parametrize("option", sorted(SIMPLE))
def test_each_option_reaches_its_column(app: Celery, manager: JobManager, option: str) -> None:
    value, columns = SIMPLE[option]
    job = row(manager, app.tasks["opts.plain"].apply_async(pgboss={option: value}))
    assert {column: job[column] for column in columns} == columns


def test_the_time_options(app: Celery, manager: JobManager) -> None:
    now = manager.now()
    later = row(manager, app.tasks["opts.plain"].apply_async(pgboss={"start_after": 600}))
    assert near(later["start_after"], now + dt.timedelta(seconds=600))
    kept = row(manager, app.tasks["opts.plain"].apply_async(pgboss={"retention_seconds": 100}))
    assert near(kept["keep_until"], kept["start_after"] + dt.timedelta(seconds=100), 0.01)
    until = dt.datetime(2031, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    assert (
        row(manager, app.tasks["opts.plain"].apply_async(pgboss={"keep_until": until}))["keep_until"] == until
    )
    capped = {"retry_backoff": True, "retry_delay_max": 40}
    assert row(manager, app.tasks["opts.plain"].apply_async(pgboss=capped))["retry_delay_max"] == 40


def test_throttle_and_debounce(app: Celery, manager: JobManager) -> None:
    key = uuid.uuid4().hex
    throttle = {"singleton_key": key, "singleton_seconds": 600}
    first = row(manager, app.tasks["opts.plain"].apply_async(pgboss=throttle))
    assert first["singleton_on"] is not None
    # A second send in the same slot is dropped by pg-boss (its task id then has no row).
    dropped = app.tasks["opts.plain"].apply_async(pgboss=throttle)
    assert manager.get_job(dropped.id) is None
    # Debounced: into the next slot instead, starting when that slot begins.
    debounced = row(
        manager, app.tasks["opts.plain"].apply_async(pgboss={**throttle, "singleton_next_slot": True})
    )
    assert debounced["singleton_on"] - first["singleton_on"] == dt.timedelta(seconds=600)
    assert debounced["start_after"] > first["start_after"]


def test_node_reads_the_options_celery_sent(
    app: Celery,
    manager: JobManager,
    db_url: str,
    schema: str,
    node_dir: Path,
) -> None:
    options = {
        "priority": 2,
        "singleton_key": "node-k",
        "retry_limit": 6,
        "retry_delay": 2,
        "retry_backoff": True,
        "retry_delay_max": 30,
        "expire_in_seconds": 45,
        "heartbeat_seconds": 15,
        "delete_after_seconds": 70,
        "dead_letter": DEAD,
        "group": {"id": "grp", "tier": "t1"},
    }
    result = app.tasks["opts.plain"].apply_async((1,), pgboss=options)
    node = node_get(node_dir, db_url, schema, result.id)
    assert {
        k: node[k]
        for k in (
            "priority", "singletonKey", "retryLimit", "retryDelay", "retryBackoff", "retryDelayMax",
            "expireInSeconds", "heartbeatSeconds", "deleteAfterSeconds", "deadLetter", "groupId", "groupTier",
        )
    } == {
        "priority": 2, "singletonKey": "node-k", "retryLimit": 6, "retryDelay": 2, "retryBackoff": True,
        "retryDelayMax": 30, "expireInSeconds": 45, "heartbeatSeconds": 15, "deleteAfterSeconds": 70,
        "deadLetter": DEAD, "groupId": "grp", "groupTier": "t1",
    }  # fmt: skip
    assert node["data"]["__celery"]["task"] == "opts.plain"


# -- the other ways in: signature.set, the decorator, send_task -----------------------------------


def test_signature_set_and_the_decorator(app: Celery, manager: JobManager) -> None:
    signature = app.tasks["opts.plain"].s(1).set(pgboss={"singleton_key": "sig", "retry_limit": 2})
    job = row(manager, signature.apply_async())
    assert (job["singleton_key"], job["retry_limit"]) == ("sig", 2)
    decorated = row(manager, app.tasks["opts.decorated"].delay())
    assert (decorated["singleton_key"], decorated["priority"], decorated["retry_limit"]) == ("task-key", 3, 8)
    # The call wins over the decorator, option by option.
    called = row(manager, app.tasks["opts.decorated"].apply_async(pgboss={"singleton_key": "call-key"}))
    assert (called["singleton_key"], called["priority"]) == ("call-key", 3)
    by_name = row(manager, app.send_task("opts.decorated", pgboss={"priority": 9}))
    assert (by_name["singleton_key"], by_name["priority"]) == ("task-key", 9)


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"retry_limt": 2}, InvalidOption, "unknown send option.*retry_limt"),
        ({"retry_limit": "2"}, InvalidOption, "retry_limit must be a whole number"),
        ({"retry_backoff": "yes"}, InvalidOption, "retry_backoff must be true or false"),
        ({"expire_in_seconds": 0}, InvalidOption, "expire_in_seconds"),
        ({"heartbeat_seconds": 5}, InvalidOption, "heartbeat_seconds"),
        ({"group": {"tier": "x"}}, InvalidOption, "group id"),
        ({"singleton_next_slot": True}, InvalidOption, "needs singleton_seconds"),
        ({"id": str(uuid.uuid4())}, InvalidOption, "task id is the job id"),
        ({"dead_letter": "no-such-queue"}, QueueNotFound, "no-such-queue"),
        (["retry_limit", 2], InvalidOption, "must be a dict"),
    ],
)
def test_a_bad_option_is_refused_at_send(
    app: Celery, manager: JobManager, options: Any, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        app.tasks["opts.plain"].apply_async(pgboss=options)


def test_a_bad_decorator_option_is_refused_at_send(app: Celery) -> None:
    with pytest.raises(InvalidOption, match="retry_limt"):
        app.tasks["opts.bad"].delay()


# -- Celery's retry options as the job's budget ------------------------------------------------------


def test_celery_retry_options_become_the_jobs_retry_fields(app: Celery, manager: JobManager) -> None:
    backoff = row(manager, app.tasks["opts.backoff"].delay())
    fields = ("retry_limit", "retry_backoff", "retry_delay", "retry_delay_max")
    assert tuple(backoff[f] for f in fields) == (5, True, 2, 100)
    assert backoff["data"]["__celery"]["headers"]["pgboss_retry"] == "celery"
    forever = row(manager, app.tasks["opts.delay"].delay())
    assert (forever["retry_limit"], forever["retry_backoff"], forever["retry_delay"]) == (
        celery_options.UNLIMITED, False, 7,
    )  # fmt: skip
    # A task that sets no retry option follows its queue.
    plain = row(manager, app.tasks["opts.plain"].delay())
    assert (plain["retry_limit"], plain["retry_delay"], plain["retry_backoff"]) == (4, 3, False)
    assert plain["data"]["__celery"]["headers"]["pgboss_retry"] == "pgboss"


@pytest.mark.parametrize(("policy", "retry_limit"), [(None, 0), ("celery", 0), ("pgboss", 3)])
def test_the_retry_policy_of_queues_the_transport_creates(
    db_url: str, schema: str, manager: JobManager, policy: str | None, retry_limit: int
) -> None:
    app = make_app(db_url, schema, transport={"retry_policy": policy} if policy else {})
    queue = "made-" + uuid.uuid4().hex[:8]
    try:
        job = row(manager, app.send_task("opts.anything", queue=queue))
        made = manager.get_queue(queue)
        assert (made["retry_limit"], job["retry_limit"]) == (retry_limit, retry_limit)
    finally:
        app.close()


def test_send_task_honours_the_apps_ignore_result(db_url: str, schema: str, manager: JobManager) -> None:
    app = make_app(db_url, schema, task_ignore_result=True)
    try:
        job = row(manager, app.send_task("opts.unknown-here"))
        assert job["data"]["__celery"]["headers"]["ignore_result"] is True
        assert "pgboss_retry" not in job["data"]["__celery"]["headers"]  # the worker decides
    finally:
        app.close()
