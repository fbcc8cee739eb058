"""Celery groups, chord headers and ``chunks`` sent as one INSERT per queue.

Celery publishes a group one task at a time through one producer it takes from the app's producer
pool for the whole group. This pool opens a batch on the producer's pgboss channel when it hands the
producer out and sends the batch when the producer comes back, so the loop's publishes become one
``send_jobs`` statement per queue, all in one transaction; a single ``delay()`` is a batch of one
and takes the usual path. Either way the rows are committed before ``apply_async`` returns.

zeke's Celery app uses it; another app opts in with ``Celery(..., amqp="transport.batch_publish:AMQP")``.
Producers on other transports pass through untouched.
"""

from __future__ import annotations

from typing import Any

from celery.app.amqp import AMQP as CeleryAMQP
from kombu import pools
from kombu.pools import ProducerPool


class BatchingProducerPool(ProducerPool):
    """A producer pool whose producers batch their pgboss publishes while they are out."""

    def prepare(self, p: Any) -> Any:
        producer = super().prepare(p)
        channel = producer.channel
        begin = getattr(channel, "begin_batch", None)
        if begin is not None:
            begin()
            # Kept: a reconnect inside publish() gives the producer another channel, and the held
            # messages are still in this one.
            producer._pgboss_batch_channel = channel
        return producer

    def release(self, resource: Any) -> None:
        held = getattr(resource, "_pgboss_batch_channel", None)
        try:
            if held is not None:
                resource._pgboss_batch_channel = None
                held.flush_batch()
                current = resource._channel
                if current is not None and current is not held and hasattr(current, "flush_batch"):
                    current.flush_batch()
        finally:
            super().release(resource)


class AMQP(CeleryAMQP):
    """Celery's AMQP helper with a :class:`BatchingProducerPool`."""

    @property
    def producer_pool(self) -> ProducerPool:
        if self._producer_pool is None:
            connections = pools.connections[self.app.connection_for_write()]
            self._producer_pool = BatchingProducerPool(connections, limit=self.app.pool.limit)
        return self._producer_pool

    publisher_pool = producer_pool
