"""The transport's small parts without a database: transient buffers, the broadcast reader's gap
handling, prepared-statement rewriting, and which Celery task runs a Node job."""

from __future__ import annotations

import time
from typing import Any

import pytest
from celery import Celery

from transport import fanout, prepared
from transport.queue_tasks import QueueTasks
from transport.transient import TransientQueue


def message(priority: int, body: str) -> dict[str, Any]:
    return {"body": body, "properties": {"priority": priority, "delivery_info": {"routing_key": "x"}}}


def test_transient_queue_orders_by_priority_then_arrival() -> None:
    queue = TransientQueue("q")
    for priority, body in [(1, "a"), (5, "b"), (1, "c"), (9, "d")]:
        queue.push(message(priority, body))
    queue.push_front(message(1, "first-of-ones"))  # a requeued message goes ahead of its peers
    assert [queue.pop()["body"] for _ in range(5)] == ["d", "b", "first-of-ones", "a", "c"]
    assert queue.pop() is None


def test_transient_queue_copies_what_it_delivers() -> None:
    queue = TransientQueue("q")
    original = message(0, "x")
    queue.push(original)
    delivered = queue.pop()
    delivered["properties"]["delivery_tag"] = "t"
    delivered["properties"]["delivery_info"]["redelivered"] = True
    assert "delivery_tag" not in original["properties"]
    assert "redelivered" not in original["properties"]["delivery_info"]


def test_transient_queue_ttl_and_limit() -> None:
    queue = TransientQueue("q", ttl=0.05, limit=3)
    assert queue.accepts(0.01) and not queue.accepts(0.2)
    queue.push(message(0, "old"))
    time.sleep(0.06)
    queue.push(message(0, "new"))
    assert queue.pop()["body"] == "new" and queue.pop() is None
    for body in "abcd":
        queue.push(message(0, body))
    assert len(queue) == 3
    assert [queue.pop()["body"] for _ in range(3)] == ["b", "c", "d"]  # the oldest was dropped


class FakeLog:
    """A broadcast table whose rows become visible when a test "commits" them."""

    channel = "c"

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.reads: list[tuple[int, list[int]]] = []

    def head(self) -> int:
        return max((r["id"] for r in self.rows), default=0)

    def commit(self, row_id: int, exchange: str = "ex", age: float = 0.0) -> None:
        self.rows.append({"id": row_id, "exchange": exchange, "routing_key": "", "payload": "{}", "age": age})

    def read(self, after: int, gaps: Any, exchanges: Any) -> list[dict[str, Any]]:
        gaps = list(gaps)
        self.reads.append((after, gaps))
        wanted = set(exchanges)
        return [
            {**r, "payload": r["payload"] if r["exchange"] in wanted else None}
            for r in sorted(self.rows, key=lambda r: r["id"])
            if r["id"] > after or r["id"] in gaps
        ]


def test_subscription_rereads_ids_committed_out_of_order() -> None:
    log = FakeLog()
    log.commit(1)
    sub = fanout.Subscription(log, gap_timeout=5.0)  # type: ignore[arg-type]
    assert sub.last_id == 1
    log.commit(3)  # id 2 is still committing
    assert [b.id for b in sub.read(["ex"])] == [3]
    assert sub.waiting and sub.last_id == 3
    log.commit(2)
    assert [b.id for b in sub.read(["ex"])] == [2]  # found again through the gap list
    assert not sub.waiting


def test_subscription_filters_exchanges_but_tracks_every_id() -> None:
    log = FakeLog()
    sub = fanout.Subscription(log, gap_timeout=5.0)  # type: ignore[arg-type]
    log.commit(1, "other")
    log.commit(2, "ex")
    assert [b.id for b in sub.read(["ex"])] == [2]
    assert not sub.waiting and sub.last_id == 2


def test_subscription_ignores_holes_older_than_the_gap_timeout() -> None:
    log = FakeLog()
    sub = fanout.Subscription(log, gap_timeout=1.0)  # type: ignore[arg-type]
    log.commit(5, age=30.0)  # ids 1-4 were swept long ago: nothing to wait for
    sub.read(["ex"])
    assert not sub.waiting and sub.last_id == 5


def test_subscription_gives_up_on_gaps_after_the_timeout() -> None:
    log = FakeLog()
    sub = fanout.Subscription(log, gap_timeout=0.05)  # type: ignore[arg-type]
    log.commit(2)
    sub.read(["ex"])
    assert sub.waiting
    time.sleep(0.06)
    sub.read(["ex"])
    assert not sub.waiting


def test_positional_parameters() -> None:
    text, names = prepared.positional("SELECT %(a)s, %(b)s::int, %(a)s || '%%'")
    assert text == "SELECT $1, $2::int, $1 || '%'"
    assert names == ("a", "b")


def test_array_arguments_stay_untyped_literals() -> None:
    assert prepared._argument(["a", None, 'q"uo\\te']) == '{"a",NULL,"q\\"uo\\\\te"}'
    assert prepared._argument([1, 2]) == "{1,2}"
    assert prepared._argument([]) == "{}"
    assert prepared._argument([True]) == [True]  # left to psycopg2
    assert prepared._argument("x") == "x"


@pytest.fixture
def app() -> Celery:
    app = Celery("queue-tasks", set_as_current=False)
    app.conf.task_routes = {"proj.routed": {"queue": "routed-q"}}

    @app.task(name="analyze-story", shared=False)
    def analyze(**kwargs: Any) -> None: ...

    @app.task(name="proj.routed", shared=False)
    def routed(**kwargs: Any) -> None: ...

    @app.task(name="proj.unrouted", shared=False)
    def unrouted(**kwargs: Any) -> None: ...

    return app


def test_queue_tasks_lookup_order(app: Celery) -> None:
    tasks = QueueTasks({"explicit-q": "proj.unrouted"}, app=app)
    assert tasks.task_for("explicit-q") == "proj.unrouted"
    assert tasks.task_for("analyze-story") == "analyze-story"  # named like the queue
    assert tasks.task_for("routed-q") == "proj.routed"  # task_routes
    assert tasks.task_for("celery") is None  # the default queue is no evidence
    assert tasks.task_for("nowhere") is None


def test_queue_tasks_callable(app: Celery) -> None:
    tasks = QueueTasks(lambda queue: "proj.unrouted" if queue.startswith("legacy-") else None, app=app)
    assert tasks.task_for("legacy-1") == "proj.unrouted"
    assert tasks.task_for("analyze-story") == "analyze-story"
