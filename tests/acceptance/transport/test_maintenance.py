"""A worker's supervisor warns of a queue backlog as Node's does: a log record, and (the workers run
with -E) a ``pgboss-queue-warning`` Celery event that ``celery events`` and Flower would receive.
It also keeps the queue's statistics, which Node's getQueues() reads."""

from __future__ import annotations

import uuid
from typing import Any

from tests.acceptance.broker_workers import BrokerEnv, wait_for
from transport.maintenance import WARNING_EVENT


def test_a_backlog_is_warned_of_as_a_celery_event(broker_env: BrokerEnv) -> None:
    app = broker_env.app_module().app
    queue = f"backlog-{uuid.uuid4().hex[:6]}"  # no worker consumes it
    manager = broker_env.manager
    manager.create_queue(queue, warning_queue_size=2)
    for n in range(3):
        manager.send(queue, {"n": n})
    seen: list[dict[str, Any]] = []

    def on_warning(event: dict[str, Any]) -> None:
        if event.get("queue") == queue:
            seen.append(event)

    with app.connection_for_read() as conn:
        receiver = app.events.Receiver(conn, handlers={WARNING_EVENT: on_warning})
        for _ in range(30):  # the workers count every queue each second (monitor_interval 1)
            try:
                receiver.capture(limit=1, timeout=1, wakeup=False)
            except TimeoutError:
                pass
            if seen:
                break
    assert seen, "no pgboss-queue-warning event arrived"
    event = seen[0]
    assert (event["type"], event["kind"], event["queued"], event["threshold"]) == (
        WARNING_EVENT,
        "queue_backlog",
        3,
        2,
    )
    assert event["hostname"].endswith("@zeke-test")  # sent by a worker
    assert "over its warning threshold of 2" in event["message"]
    row = wait_for(lambda: (q := manager.get_queue(queue)) and q["queued_count"] == 3 and q, 10, "counts")
    assert row["monitor_on"] is not None
    assert any("large queue backlog" in w.log() and queue in w.log() for w in broker_env.workers)
