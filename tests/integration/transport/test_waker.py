"""Consumers wake at once for jobs that become runnable without a new insert, in every process.

* A capped queue (``concurrency_limits``): a consumer that fetched at the cap finds nothing and stops
  asking; the job's end frees a slot, and the consumer that ended it NOTIFYs the queue once that end
  is committed, so the others fetch at once instead of at their safety poll.
* A failed job with retries left: the failure announces its retry (fail_jobs NOTIFYs), runnable now
  or at a later time the consumers set a timer for.

Two consumers on two connections stand in for two workers; the safety poll is set beyond the test.
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


def consumer_options(schema: str, settle_on_ack: bool, **options: Any) -> dict[str, Any]:
    return {
        "schema": schema,
        "concurrency_limits": {QUEUE: 1},
        "settle_on_ack": settle_on_ack,
        "polling_interval": 60,  # far beyond this test: only a NOTIFY can wake a consumer
        "supervise": False,
        **options,
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


@pytest.mark.parametrize("delay", [0, 1])
def test_a_failed_job_wakes_the_other_consumer_for_its_retry(
    db_url: str, database: Database, delay: int
) -> None:
    """Consumer a rejects its job (the ack mode fails it); b takes the retry at once, or once its
    retry delay has passed, with no safety poll to help."""
    schema = "r_" + uuid.uuid4().hex[:12]
    queue = kombu.Queue("retrying", routing_key="retrying")
    boss = JobManager(database, schema)
    boss.create_queue("retrying", retry_limit=1, retry_delay=delay, retry_backoff=False)
    options = consumer_options(schema, True, concurrency_limits={})
    got: dict[str, list[kombu.Message]] = {"a": [], "b": []}
    with (
        kombu.Connection(pgboss_url(db_url), transport_options=options) as a,
        kombu.Connection(pgboss_url(db_url), transport_options=options) as b,
    ):
        with a.Producer() as producer:
            producer.publish({"n": 1}, routing_key="retrying", declare=[queue], retry=True)
        with a.Consumer(queue, callbacks=[lambda body, message: got["a"].append(message)]):
            a.drain_events(timeout=5)
        with b.Consumer(queue, callbacks=[lambda body, message: got["b"].append(message)]):
            with pytest.raises(TimeoutError):
                b.drain_events(timeout=0.3)  # the job is a's: nothing, and nothing asks again for 60 s
            got["a"][0].reject()  # fails the job: a retry, runnable after `delay` seconds
            b.drain_events(timeout=delay + 3)
            [message] = got["b"]
            assert message.payload == {"n": 1} and message.delivery_info["pgboss_attempt"] == 1
            message.ack()
