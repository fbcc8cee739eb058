"""A freed slot of a capped queue wakes the consumers the cap held back, in every process.

``concurrency_limits`` caps a queue's active jobs across all workers. A consumer that fetched at the
cap finds nothing and stops asking; the job's end is what frees a slot, and the consumer that ended
it NOTIFYs the queue once that end is committed, so the others fetch at once instead of at their
safety poll. Two consumers on two connections stand in for two workers here.
"""

from __future__ import annotations

import uuid
from typing import Any

import kombu
import pytest

from tests.dbutil import pgboss_url
from transport.db import Database
from transport.manager import JobManager

QUEUE = "capped"


def consumer_options(schema: str, settle_on_ack: bool) -> dict[str, Any]:
    return {
        "schema": schema,
        "concurrency_limits": {QUEUE: 1},
        "settle_on_ack": settle_on_ack,
        "polling_interval": 60,  # far beyond this test: only a NOTIFY can wake a consumer
        "supervise": False,
    }


@pytest.mark.parametrize("ended_by", ["ack", "result backend"])
def test_an_ended_job_of_a_capped_queue_wakes_the_other_consumers(
    db_url: str, database: Database, ended_by: str
) -> None:
    """``ack``: plain Kombu, the ack completes the job. ``result backend``: Celery with pg-boss's
    backend, which completed the job before the worker acks it."""
    schema = "c_" + uuid.uuid4().hex[:12]
    settle = ended_by == "ack"
    queue = kombu.Queue(QUEUE, routing_key=QUEUE)
    got: dict[str, list[kombu.Message]] = {"a": [], "b": []}
    with (
        kombu.Connection(pgboss_url(db_url), transport_options=consumer_options(schema, settle)) as a,
        kombu.Connection(pgboss_url(db_url), transport_options=consumer_options(schema, settle)) as b,
    ):
        with a.Producer() as producer:
            for n in range(2):
                producer.publish({"n": n}, routing_key=QUEUE, declare=[queue], retry=True)
        with (
            a.Consumer(queue, callbacks=[lambda body, message: got["a"].append(message)]),
            b.Consumer(queue, callbacks=[lambda body, message: got["b"].append(message)]),
        ):
            a.drain_events(timeout=5)
            assert [m.payload for m in got["a"]] == [{"n": 0}]  # the one slot
            with pytest.raises(TimeoutError):
                b.drain_events(timeout=0.5)  # at the cap: nothing, and nothing asks again for 60 s
            if not settle:
                job_id = got["a"][0].delivery_tag.split("/")[0]
                JobManager(database, schema).complete(QUEUE, [(job_id, {"done": True}, None)])
            got["a"][0].ack()  # a blocking consumer (no settle thread) writes and wakes right here
            b.drain_events(timeout=5)
            assert [m.payload for m in got["b"]] == [{"n": 1}]
            got["b"][0].ack()
