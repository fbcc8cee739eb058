"""Celery groups, chord headers and ``chunks`` published through :mod:`transport.batch_publish`: one
INSERT per queue, committed before ``apply_async`` returns, each row as the one-by-one path stores it.

A real Celery app on ``pgboss://`` publishes; nothing consumes, so each row is read as sent. Rows that
one statement inserted share their ``created_on`` (the statement's transaction time), which is how
these tests see the statement count.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery, chord, group

from tests.dbutil import drain, listen
from transport.db import Database
from transport.exceptions import InvalidOption, QueueNotFound
from transport.manager import JobManager

pytestmark = pytest.mark.own_database("batch_publish")

QUEUE = "batched"
OTHER = "batched-other"


@pytest.fixture(scope="module")
def schema(database: Database) -> Iterator[str]:
    name = "bp_" + uuid.uuid4().hex[:10]
    manager = JobManager(database, name)
    manager.create_queue(QUEUE, retry_limit=2, retry_delay=5)
    manager.create_queue(OTHER)
    yield name
    with database.cursor() as cur:
        for suffix in ("", "_zeke"):
            cur.execute(f'DROP SCHEMA IF EXISTS "{name}{suffix}" CASCADE')


@pytest.fixture(scope="module")
def manager(database: Database, schema: str) -> JobManager:
    return JobManager(database, schema)


def make_app(db_url: str, schema: str, batching: bool, **transport_options: Any) -> Celery:
    """An app publishing to the schema; its tasks are named for the app (Celery 5.7 warns of one name
    registered by two apps)."""
    import transport  # noqa: F401  (the pgboss:// alias)

    url = "pgboss://" + db_url.split("://", 1)[1]
    app_options: dict[str, Any] = {"set_as_current": False}
    if batching:
        app_options["amqp"] = "transport.batch_publish:AMQP"
    prefix = "batch" if batching else "plain"
    app = Celery(prefix + "-" + uuid.uuid4().hex[:6], **app_options)
    app.conf.update(
        broker_url=url,
        result_backend=url,
        broker_transport_options={"schema": schema, **transport_options},
        result_backend_transport_options={"schema": schema},
        task_default_queue=QUEUE,
        task_routes={f"{prefix}.other": {"queue": OTHER}},
    )

    @app.task(name=f"{prefix}.add")
    def add(x: int, y: int = 0) -> int:
        return x + y

    @app.task(name=f"{prefix}.other")
    def other(x: int) -> int:
        return x

    @app.task(name=f"{prefix}.total")
    def total(values: list[int]) -> int:
        return sum(values)

    return app


@pytest.fixture(scope="module")
def app(db_url: str, schema: str) -> Iterator[Celery]:
    app = make_app(db_url, schema, batching=True)
    yield app
    app.close()


def _rows(manager: JobManager, ids: list[str]) -> list[dict[str, Any]]:
    with manager.db.cursor() as cur:
        cur.execute(
            f"SELECT id::text, name, state, data, created_on, retry_limit, retry_delay"
            f" FROM {manager.schema}.job WHERE id = ANY(%s::uuid[])",
            (ids,),
        )
        return [dict(row) for row in cur.fetchall()]


def test_a_group_is_one_insert_committed_before_apply_async_returns(app: Celery, manager: JobManager) -> None:
    result = group(app.tasks["batch.add"].s(i, 1) for i in range(500)).apply_async()
    ids = [r.id for r in result.results]
    rows = _rows(manager, ids)  # another connection: what is committed
    assert len(rows) == 500
    assert len({row["created_on"] for row in rows}) == 1  # one statement
    by_id = {row["id"]: row for row in rows}
    assert [by_id[i]["data"]["__celery"]["args"] for i in ids] == [[i, 1] for i in range(500)]
    assert {(row["state"], row["retry_limit"], row["retry_delay"]) for row in rows} == {("created", 2, 5)}


def test_a_group_over_two_queues_is_one_insert_each(app: Celery, manager: JobManager) -> None:
    tasks = [app.tasks["batch.add"].s(i) if i % 2 else app.tasks["batch.other"].s(i) for i in range(40)]
    ids = [r.id for r in group(tasks).apply_async().results]
    rows = _rows(manager, ids)
    assert sorted(row["name"] for row in rows) == sorted([QUEUE] * 20 + [OTHER] * 20)
    for queue in (QUEUE, OTHER):
        assert len({row["created_on"] for row in rows if row["name"] == queue}) == 1


def test_chord_headers_and_chunks_are_batched(app: Celery, manager: JobManager) -> None:
    header = [app.tasks["batch.add"].s(i) for i in range(30)]
    result = chord(header)(app.tasks["batch.total"].s())
    header_ids = [r.id for r in result.parent.results]
    assert len({row["created_on"] for row in _rows(manager, header_ids)}) == 1

    chunks = app.tasks["batch.add"].chunks(((i, i) for i in range(100)), 10).group().apply_async()
    chunk_ids = [r.id for r in chunks.results]
    rows = _rows(manager, chunk_ids)
    assert len(rows) == 10 and len({row["created_on"] for row in rows}) == 1


def test_a_republished_id_in_a_group_takes_the_one_by_one_path(app: Celery, manager: JobManager) -> None:
    """A member whose id has an active row is Celery's Task.retry(): the row goes back to retry, as a
    lone republish of an id does; the rest of the group is inserted."""
    add = app.tasks["batch.add"]
    first, twin = add.apply_async((1,)), add.apply_async((1,))
    manager.fetch([QUEUE], 1000)  # everything queued so far is active now
    again = group([add.s(1).set(task_id=first.id), add.s(2)]).apply_async()
    add.apply_async((1,), task_id=twin.id)
    rows = {row["id"]: row for row in _rows(manager, [first.id, twin.id, again.results[1].id])}
    assert rows[first.id]["state"] == rows[twin.id]["state"] == "retry"
    assert rows[again.results[1].id]["state"] == "created"


def test_a_group_to_an_unknown_queue_declares_it_and_sends_every_member(
    app: Celery, manager: JobManager
) -> None:
    queue = "batched-new-" + uuid.uuid4().hex[:6]
    members = [app.tasks["batch.add"].s(i).set(queue=queue) for i in range(5)]
    with app.connection_for_write() as conn:  # declared to Kombu here, as a worker would
        conn.default_channel.queue_declare(queue, durable=True)
        manager.delete_queue(queue)  # ... and deleted behind its back
        ids = [r.id for r in group(members).apply_async(connection=conn).results]
    assert manager.get_queue(queue) is not None
    assert len(_rows(manager, ids)) == 5


def test_a_failing_batch_raises_from_apply_async(app: Celery, manager: JobManager) -> None:
    members = [app.tasks["batch.add"].s(i).set(pgboss={"dead_letter": "no-such-queue"}) for i in range(3)]
    with pytest.raises(QueueNotFound, match="no-such-queue"):
        group(members).apply_async()


def test_without_the_batching_pool_each_member_is_its_own_insert(
    db_url: str, schema: str, manager: JobManager
) -> None:
    """The comparison that shows the tests above can fail: Celery's own pool sends one by one."""
    plain = make_app(db_url, schema, batching=False)
    try:
        ids = [r.id for r in group(plain.tasks["plain.add"].s(i) for i in range(20)).apply_async().results]
        assert len({row["created_on"] for row in _rows(manager, ids)}) == 20
    finally:
        plain.close()


# -- a long batch: one transaction over every queue it sends to ------------------------------------

LONG = 785  # a few hundred rows per queue


def _count(manager: JobManager, queue: str) -> int:
    with manager.db.cursor() as cur:
        cur.execute(f"SELECT count(*) AS n FROM {manager.schema}.job WHERE name = %s", (queue,))
        return int(cur.fetchone()["n"])


def test_a_long_group_is_one_transaction_committed_before_apply_async_returns(
    app: Celery, manager: JobManager
) -> None:
    tasks = [app.tasks["batch.add"].s(i) if i % 3 else app.tasks["batch.other"].s(i) for i in range(LONG)]
    ids = [r.id for r in group(tasks).apply_async().results]
    rows = _rows(manager, ids)  # another connection: what is committed
    assert len(rows) == LONG
    assert len({row["created_on"] for row in rows}) == 1  # one transaction, both queues
    by_id = {row["id"]: row for row in rows}
    assert [by_id[i]["data"]["__celery"]["args"] for i in ids] == [[i] for i in range(LONG)]
    assert {by_id[i]["name"] for i in ids[1::3]} == {QUEUE}
    assert {by_id[i]["name"] for i in ids[::3]} == {OTHER}


@pytest.mark.parametrize("where", ["early", "late"])
def test_a_long_group_failing_mid_way_commits_nothing(app: Celery, manager: JobManager, where: str) -> None:
    """A member refused anywhere in the group: none of it is committed."""
    queue = "batched-atomic-" + uuid.uuid4().hex[:6]
    manager.create_queue(queue)
    bad = 5 if where == "early" else LONG - 3
    members = [
        app.tasks["batch.add"].s(i).set(queue=queue, pgboss={"retry_limit": -1} if i == bad else None)
        for i in range(LONG)
    ]
    with pytest.raises(InvalidOption, match="retry_limit"):
        group(members).apply_async()
    assert _count(manager, queue) == 0
    # and the next group on the same producer pool goes through
    group(app.tasks["batch.add"].s(i).set(queue=queue) for i in range(LONG)).apply_async()
    assert _count(manager, queue) == LONG


def test_a_group_over_two_queues_commits_nothing_when_one_fails(app: Celery, manager: JobManager) -> None:
    """One transaction: the first queue's INSERT is rolled back when the second fails."""
    first, second = ("batched-pair-" + uuid.uuid4().hex[:6] + s for s in "ab")
    manager.create_queue(first)
    manager.create_queue(second)
    members = [app.tasks["batch.add"].s(i).set(queue=first) for i in range(5)]
    members.append(app.tasks["batch.add"].s(9).set(queue=second, pgboss={"dead_letter": "no-such-queue"}))
    with pytest.raises(QueueNotFound, match="no-such-queue"):
        group(members).apply_async()
    assert _count(manager, first) == _count(manager, second) == 0


def test_a_long_group_notifies_each_queue_once_at_commit(app: Celery, manager: JobManager) -> None:
    listener = listen(manager, manager.channel)
    try:
        tasks = [app.tasks["batch.add"].s(i) if i % 2 else app.tasks["batch.other"].s(i) for i in range(LONG)]
        group(tasks).apply_async()
        assert sorted(drain(listener, 0.5)) == sorted([QUEUE, OTHER])  # pg-boss's payload: the queue's name
    finally:
        listener.close()


def test_a_group_starting_later_sends_one_timer_notice_per_queue(app: Celery, manager: JobManager) -> None:
    """Python consumers set a timer for a queue whose job starts later: one notice per queue does."""
    from transport import names

    listener = listen(manager, names.broker_channel(manager.schema))
    try:
        tasks = [
            (app.tasks["batch.add"] if i % 2 else app.tasks["batch.other"]).s(i).set(countdown=60)
            for i in range(LONG)
        ]
        group(tasks).apply_async()
        assert sorted(drain(listener, 0.5)) == sorted(names.TIMER_NOTICE + q for q in (QUEUE, OTHER))
    finally:
        listener.close()


def test_a_long_group_is_held_as_one_string_per_member_until_the_producer_returns(
    app: Celery, manager: JobManager
) -> None:
    """While Celery builds a group, each member is held checked and serialised, not as its Kombu
    message; nothing is committed until the producer goes back to its pool."""
    queue = "batched-held-" + uuid.uuid4().hex[:6]
    manager.create_queue(queue)
    with app.producer_or_acquire() as producer:
        result = group(app.tasks["batch.add"].s(i).set(queue=queue) for i in range(LONG)).apply_async(
            producer=producer
        )
        held = producer.channel._batch.held
        assert len(held) == LONG and held[0].id == result.results[0].id
        assert all(item.message is None and isinstance(item.encoded.text, str) for item in held)
        assert _count(manager, queue) == 0
    assert _count(manager, queue) == LONG


@pytest.mark.parametrize("size", [2, LONG])
def test_a_group_stores_the_rows_a_single_delay_stores(app: Celery, manager: JobManager, size: int) -> None:
    alone = app.tasks["batch.add"].apply_async((7,), priority=3, countdown=60)
    member = app.tasks["batch.add"].s(7).set(priority=3, countdown=60)
    batched = group(member.clone() for _ in range(size)).apply_async()
    columns = (
        "name, data, priority, state, retry_limit, retry_delay, retry_backoff, expire_seconds,"
        " deletion_seconds, policy, singleton_key, dead_letter, (start_after - created_on) > '50 s' AS later,"
        " keep_until - start_after AS kept"
    )
    with manager.db.cursor() as cur:
        query = f"SELECT {columns} FROM {manager.schema}.job WHERE id = %s"
        cur.execute(query, (alone.id,))
        expected = dict(cur.fetchone())
        for member in (batched.results[0], batched.results[-1]):
            cur.execute(query, (member.id,))
            row = dict(cur.fetchone())
            headers = row["data"]["__celery"]["headers"]
            assert headers.pop("group") == batched.id and "group_index" in headers
            headers.pop("group_index")
            assert _without_eta(row) == _without_eta(expected)


def _without_eta(row: dict[str, Any]) -> dict[str, Any]:
    envelope = row["data"]["__celery"]
    headers = {k: v for k, v in envelope["headers"].items() if k != "eta"}
    return {**row, "data": {**envelope, "headers": headers}}


def test_a_long_group_to_an_unknown_queue_declares_it_and_sends_every_member(
    app: Celery, manager: JobManager
) -> None:
    queue = "batched-new-" + uuid.uuid4().hex[:6]
    members = [app.tasks["batch.add"].s(i).set(queue=queue) for i in range(LONG)]
    with app.connection_for_write() as conn:
        conn.default_channel.queue_declare(queue, durable=True)
        manager.delete_queue(queue)
        ids = [r.id for r in group(members).apply_async(connection=conn).results]
    assert manager.get_queue(queue) is not None
    assert len(_rows(manager, ids)) == len(members)
