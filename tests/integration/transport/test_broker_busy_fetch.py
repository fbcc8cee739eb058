"""A busy worker's fetch thread and its event loop: a job announced while a fetch is out is fetched
next, not left for the safety poll.

The loop drives a kombu Hub as a Celery worker's would; the safety poll is set beyond the test, so
only the announcement (pg-boss's insert NOTIFY) can bring the job.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import kombu
from kombu.asynchronous import Hub

from tests.dbutil import pgboss_url

QUEUE = "busy"


def run_until(hub: Hub, done: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        hub.run_once()
    return done()


def test_a_job_announced_while_the_fetch_thread_is_out_is_fetched_at_once(db_url: str) -> None:
    schema = "b_" + uuid.uuid4().hex[:12]
    options = {"schema": schema, "polling_interval": 60, "supervise": False, "settle_on_ack": True}
    queue = kombu.Queue(QUEUE, routing_key=QUEUE)
    got: list[kombu.Message] = []
    with (
        kombu.Connection(pgboss_url(db_url), transport_options=options) as conn,
        kombu.Connection(pgboss_url(db_url), transport_options=options) as other,
    ):
        with conn.Producer() as producer:
            producer.publish({"n": 0}, routing_key=QUEUE, declare=[queue], retry=True)
        transport = conn.transport
        hub = Hub()
        transport.register_with_event_loop(conn.connection, hub)
        try:
            with conn.Consumer(queue, callbacks=[lambda body, message: got.append(message)]) as consumer:
                consumer.qos(prefetch_count=10)
                assert run_until(hub, lambda: len(got) == 1, 10)  # idle: fetched inline
                # Holding a job, the worker fetches on its thread. While that fetch is out (its
                # statement has run and seen nothing more), a job is published and the loop hears of it.
                poller = transport.poller
                fetch, raced = poller.fetcher.fetch, []

                def racing(queues: list[str], limit: int, limits: Mapping[str, int]) -> list[Any]:
                    jobs = fetch(queues, limit, limits)
                    if raced:
                        return jobs
                    raced.append(len(jobs))
                    with other.Producer() as late:
                        late.publish({"n": 1}, routing_key=QUEUE, retry=True)
                    deadline = time.monotonic() + 10
                    while QUEUE not in poller.dirty and time.monotonic() < deadline:
                        time.sleep(0.01)
                    return jobs

                poller.fetcher.fetch = racing
                poller.mark_dirty([QUEUE])
                run_until(hub, lambda: len(got) == 2, 5)
                assert raced == [0]  # the fetch thread's fetch, which found nothing yet
                assert [m.payload for m in got] == [{"n": 0}, {"n": 1}]
                for message in got:
                    message.ack()
        finally:
            transport.unregister_from_event_loop(conn.connection, hub)
            hub.close()
