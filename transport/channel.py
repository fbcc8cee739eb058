"""The pg-boss transport's Kombu channel: declaring, publishing and consuming, and the consumer's
state: the jobs it holds until they are settled, the queues it consumes, what it could not decode.

A durable queue is a pg-boss queue (its jobs are fetched up to the prefetch budget the channel's
:class:`QoS` allows); a transient one lives in this connection's memory (:mod:`transport.mailboxes`).
What an ack, reject or restore does to a job row the settle thread writes (:mod:`transport.settle`).
The connection's parts are the transport's (:mod:`transport.broker`); its loop is the poller's
(:mod:`transport.poller`), which pumps the channels.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from queue import Empty
from typing import TYPE_CHECKING, Any

from kombu.transport import virtual

from transport import celery_options, envelope, poison, wellformed
from transport.settle import Held
from transport.worker_state import WORKER

if TYPE_CHECKING:
    from transport.publisher import Batch

logger = logging.getLogger(__name__)

#: Unique delivery tags within a process: "<job id>/<n>".
_tag_counter = itertools.count(1)


@dataclass(frozen=True, slots=True)
class _Local:
    """A message delivered from a transient queue (held until acked, requeued in memory)."""

    queue: str
    payload: dict[str, Any]


class QoS(virtual.QoS):
    """Prefetch accounting; ack/reject/restore act on the job rows through the channel."""

    def ack(self, delivery_tag: str) -> None:
        self.channel._on_ack(delivery_tag)
        self._quick_ack(delivery_tag)

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        self.channel._on_reject(delivery_tag, requeue)
        self._quick_ack(delivery_tag)

    def restore_unacked(self) -> list[tuple[BaseException, Any]]:
        self._flush()
        tags = list(self._delivered)
        self._delivered.clear()
        if self.channel.owner_pid == os.getpid():  # a forked child never gives back its parent's jobs
            self.channel._restore_tags(tags)
        return []  # failures are logged: jobs left active come back through expiry/heartbeat


class Message(virtual.Message):
    """A delivered job; a body its consumer cannot decode is remembered, so that the ack Celery
    gives such a message (``on_decode_error``) fails the job instead of leaving it active.

    A task message built from a job's envelope comes with the value of its JSON body
    (:data:`transport.envelope.BODY_VALUE`): decoding returns it rather than parsing the text made
    from it a moment ago (Celery's worker decodes every task message it receives), when the
    consumer accepts JSON."""

    #: The body's value, until decoded (None: parse the body).
    _body_value: Any = None

    def __init__(self, payload: dict[str, Any], channel: Any = None, **kwargs: Any) -> None:
        value = payload.pop(envelope.BODY_VALUE, None)
        super().__init__(payload, channel=channel, **kwargs)
        if value is not None:
            self._body_value = value

    def _decode(self) -> Any:
        value = self._body_value
        if value is not None:
            self._body_value = None
            if self.accept is None or self.content_type in self.accept:
                return value
        try:
            return super()._decode()
        except Exception as exc:
            self.channel._undecodable[self.delivery_tag] = exc
            raise


class Channel(virtual.Channel):
    QoS = QoS
    Message = Message
    supports_fanout = True
    #: Bodies stay text; bytes (pickle...) are base64'd by the envelope, not by Kombu.
    body_encoding = None

    #: ``{queue: {create_queue kwargs}}`` for queues this transport creates (zeke's registry passes
    #: its own dict, so tasks declared later are seen).
    queue_options: Mapping[str, Mapping[str, Any]] = {}
    #: ``heartbeat_seconds`` of queues this transport creates (pg-boss requires >= 10; None: none).
    heartbeat_seconds: int | None = 30
    #: ``{queue: N}``: at most N active jobs of the queue across every worker.
    concurrency_limits: Mapping[str, int] = {}
    #: Ack completes, reject(requeue=False) fails. None (the default): unless the Celery app's result
    #: backend is pg-boss's, which writes each job's end itself (see :mod:`transport.worker_state`).
    settle_on_ack: bool | None = None
    #: Retries of the queues this transport creates without ``queue_options``: ``"celery"`` (a raise
    #: fails once) or ``"pgboss"`` (the seed's: 3 with backoff); see transport.celery_options.
    retry_policy: str = celery_options.DEFAULT_POLICY
    #: ``eta`` becomes ``start_after`` and is dropped on delivery.
    native_eta: bool = True
    #: Most jobs one fetch claims.
    fetch_batch_size: int = 100
    #: Most messages a transient queue buffers before dropping the oldest.
    transient_queue_limit: int = 10_000
    #: While jobs are held, fetch again only once this fraction of the prefetch count is free
    #: (an idle consumer always fetches at once).
    refill_fraction: float = 0.5

    from_transport_options = virtual.Channel.from_transport_options + (
        "queue_options",
        "heartbeat_seconds",
        "concurrency_limits",
        "settle_on_ack",
        "retry_policy",
        "native_eta",
        "fetch_batch_size",
        "transient_queue_limit",
        "refill_fraction",
    )

    def __init__(self, connection: Any, **kwargs: Any) -> None:
        super().__init__(connection, **kwargs)
        if self.settle_on_ack is None:
            self.settle_on_ack = WORKER.acks_must_settle()
        # The connection's parts, shared by its channels (see transport.broker.Transport).
        self.manager = connection.manager
        self.poller = connection.poller
        self.mailboxes = connection.mailboxes
        self.routes = connection.routes
        self.publisher = connection.publisher
        self.claims = connection.claims
        self.settler = connection.settler
        self.heartbeat = connection.heartbeat
        self.queue_tasks = connection.queue_tasks
        self.groups = connection.groups
        self.owner_pid = os.getpid()
        self._held: dict[str, Held | _Local] = {}
        self._durable: list[str] = []
        self._no_ack: set[str] = set()
        #: Delivery tag -> why its body could not be decoded (see :class:`Message`).
        self._undecodable: dict[str, BaseException] = {}
        #: Publishes held until :meth:`flush_batch` while a batch is open (None: send each at once).
        self._batch: Batch | None = None

    # -- declaring ------------------------------------------------------------------------------

    def _new_queue(
        self,
        queue: str,
        durable: bool = True,
        exclusive: bool = False,
        auto_delete: bool = False,
        arguments: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if exclusive or auto_delete or not durable:
            self.mailboxes.declare(queue, arguments or {}, self.transient_queue_limit)
        else:
            self.publisher.declare_durable(queue, self.new_queue_options(queue))

    def new_queue_options(self, queue: str) -> dict[str, Any]:
        """``create_queue`` options of a queue this transport creates: its ``queue_options`` when
        given (zeke's schema tasks: the seed's policy), else the ``retry_policy``'s."""
        options: dict[str, Any] = {"heartbeat_seconds": self.heartbeat_seconds}
        if queue in self.queue_options:
            options.update(self.queue_options[queue])
        else:
            options.update(celery_options.queue_defaults(self.retry_policy))
        return options

    def _has_queue(self, queue: str, **kwargs: Any) -> bool:
        if queue in self.mailboxes:
            return True
        return self.manager.get_queue(queue) is not None

    def _size(self, queue: str) -> int:
        local = self.mailboxes.get(queue)
        if local is not None:
            return len(local)
        return self.manager.queue_size(queue)

    def _purge(self, queue: str) -> int:
        local = self.mailboxes.get(queue)
        if local is not None:
            return local.clear()
        return self.manager.purge(queue)

    def queue_delete(
        self, queue: str, if_unused: bool = False, if_empty: bool = False, **kwargs: Any
    ) -> None:
        # By name, not through this process's bindings: a queue declared elsewhere has none here.
        if if_empty and self._size(queue):
            return
        if queue in self.mailboxes:
            self.mailboxes.delete(queue)
        elif self.manager.get_queue(queue) is not None:
            self.manager.delete_queue(queue)
            self.publisher.forget_durable(queue)
        self.routes.bindings.remove_queue(queue)
        for exchange, _key, _args in list(self.state.queue_bindings(queue)):
            table = self.state.exchanges.get(exchange, {}).get("table", [])
            table[:] = [row for row in table if row[2] != queue]
        self.state.queue_bindings_delete(queue)

    def _queue_bind(self, exchange: str, routing_key: str, pattern: Any, queue: str) -> None:
        if queue in self.mailboxes:
            self.poller.consumers_changed()  # matched locally against the broadcast log
            return
        kind = self.typeof(exchange).type or "direct"
        self.routes.bindings.add(exchange, queue, routing_key, pattern or "", kind)
        self.routes.forget(exchange)

    def queue_unbind(
        self,
        queue: str,
        exchange: str | None = None,
        routing_key: str = "",
        arguments: Any = None,
        **kwargs: Any,
    ) -> None:
        super().queue_unbind(queue, exchange, routing_key, arguments, **kwargs)
        if exchange and queue not in self.mailboxes:
            self.routes.bindings.remove(exchange, queue, routing_key)
            self.routes.forget(exchange)

    def get_table(self, exchange: str) -> list[tuple[str, Any, str]]:
        return self.routes.table(exchange)

    # -- publishing -----------------------------------------------------------------------------

    def _inplace_augment_message(self, message: dict[str, Any], exchange: str, routing_key: str) -> None:
        # No delivery tag here: every delivery gets its own; bytes bodies are the envelope's business.
        props = message["properties"]
        props["delivery_info"].update(exchange=exchange, routing_key=routing_key)

    def basic_publish(self, message: dict[str, Any], exchange: str, routing_key: str, **kwargs: Any) -> None:
        self._inplace_augment_message(message, exchange, routing_key)
        if not exchange:
            return self._put(routing_key, message)
        for queue in self.routes.durable_targets(exchange, routing_key, self.typeof(exchange).type):
            self._put(queue, message)
        # Transient subscribers anywhere match it against their own bindings.
        self.mailboxes.broadcast(exchange, routing_key, message)
        return None

    def _put_fanout(self, exchange: str, message: dict[str, Any], routing_key: str, **kwargs: Any) -> None:
        self.mailboxes.broadcast(exchange, routing_key, message)

    def _put(self, queue: str, message: dict[str, Any], **kwargs: Any) -> None:
        local = self.mailboxes.get(queue)
        if local is not None:
            local.push(message)
            return
        job = envelope.to_job(message, native_eta=self.native_eta)
        if self._batch is not None:
            self._batch.add(queue, job, message)
        else:
            self.publisher.send_job(queue, job, message, self.new_queue_options)

    def begin_batch(self) -> None:
        """Hold this channel's publishes to pg-boss queues until :meth:`flush_batch` sends them
        together (transient queues still get theirs at once)."""
        if self._batch is None:
            self._batch = self.publisher.batch()

    def flush_batch(self) -> None:
        """Send the held publishes (one INSERT per queue, all committed together) and stop holding;
        raises when the send failed, as each publish would have (nothing of the batch is committed)."""
        batch, self._batch = self._batch, None
        if batch is not None:
            batch.send(self.new_queue_options)

    # -- consuming ------------------------------------------------------------------------------

    def basic_consume(self, queue: str, no_ack: bool, callback: Any, consumer_tag: str, **kwargs: Any) -> Any:
        result = super().basic_consume(queue, no_ack, callback, consumer_tag, **kwargs)
        if no_ack:
            self._no_ack.add(queue)
        if queue not in self.mailboxes and queue not in self._durable:
            self._durable.append(queue)
            self.poller.enable_notify(queue)
            self.poller.consumers_changed()
            self.poller.mark_dirty([queue])
        elif queue in self.mailboxes:
            self.poller.consumers_changed()
        return result

    def basic_cancel(self, consumer_tag: str) -> Any:
        queue = self._tag_to_queue.get(consumer_tag)
        result = super().basic_cancel(consumer_tag)
        if queue is not None and queue not in self._active_queues:
            self._no_ack.discard(queue)
            if queue in self._durable:
                self._durable.remove(queue)
            self.poller.consumers_changed()
        return result

    def basic_get(self, queue: str, no_ack: bool = False, **kwargs: Any) -> Any:
        local = self.mailboxes.get(queue)
        if local is not None:
            self.mailboxes.read()
            payload = local.pop()
            if payload is None:
                return None
            tag = payload["properties"]["delivery_tag"] = f"{queue}/{next(_tag_counter)}"
            if not no_ack:
                self._held[tag] = _Local(queue, payload)
            message = self.Message(payload, channel=self)
        else:
            jobs = self.claims.fetch([queue], 1)
            if not jobs:
                return None
            payload = self._prepare(jobs[0], no_ack)
            if payload is None:
                return None
            message = self.Message(payload, channel=self)
        if not no_ack:
            self.qos.append(message, message.delivery_tag)
        return message

    def _get(self, queue: str, timeout: float | None = None) -> dict[str, Any]:
        message = self.basic_get(queue, no_ack=True)
        if message is None:
            raise Empty()
        return message._raw

    def pump_durable(self, dirty: set[str]) -> int:
        """Fetch and deliver durable jobs if a consumed queue is dirty and the prefetch budget allows:
        at once when this worker holds nothing, else from the fetch thread (on an event loop)."""
        # Called on every tick of a busy loop: the cheapest reasons to wait come first.
        fetcher = self.poller.fetcher
        if fetcher is not None and fetcher.busy:
            return 0  # stay dirty: the fetch that is out is delivered first
        qos = self.qos
        if not qos.can_consume():
            return 0  # stay dirty: the tick after the next ack fetches
        budget = qos.can_consume_max_estimate()
        prefetch = qos.prefetch_count
        holding = len(qos._delivered) - len(qos._dirty)
        if budget and prefetch and holding > 0:
            if budget < max(1, int(prefetch * self.refill_fraction)):
                return 0  # busy and well stocked: refill in fewer, larger fetches (stay dirty)
        queues = [q for q in self._durable if q in self.connection._callbacks]
        if not queues or dirty.isdisjoint(queues):
            return 0
        limit = min(budget or self.fetch_batch_size, self.fetch_batch_size)
        limits = {q: n for q, n in self.concurrency_limits.items() if q in queues}
        self.poller.fetch_started(queues)
        if fetcher is not None and holding > 0:
            # Clean from now on, not once the jobs are delivered: a job announced while the fetch
            # is out (after its statement looked) makes the queue dirty again, and is fetched next.
            dirty.difference_update(queues)
            fetcher.submit(self, queues, limit, limits)  # the loop keeps feeding the pool meanwhile
            return 0
        try:
            jobs = self.claims.fetch(queues, limit, limits)
        except BaseException:
            self.poller.fetch_ended(None)
            raise
        self.poller.fetch_ended(len(jobs))
        if len(jobs) < limit:
            dirty.difference_update(queues)
        return self.deliver_jobs(jobs)

    def deliver_jobs(self, jobs: list[Any]) -> int:
        """Deliver what a fetch returned."""
        delivered = 0
        for job in jobs:
            payload = self._prepare(job, job.name in self._no_ack)
            if payload is None:
                continue
            tag = payload["properties"]["delivery_tag"]
            if job.name not in self.connection._callbacks:
                self._restore_tags([tag])  # consumer went away meanwhile
                continue
            try:
                self.connection._deliver(payload, job.name)
            except self.connection.connection_errors:
                raise
            except Exception as exc:
                # The consumer (Celery's strategy) choked on the message: raised out of here it
                # would restart the consumer, hand the job back and meet it again, for ever.
                self._refused(tag, job, exc)
                continue
            delivered += 1
        return delivered

    def _refused(self, tag: str, job: Any, exc: BaseException) -> None:
        """A message its consumer raised on: forget it here and fail its job for good."""
        self._held.pop(tag, None)
        self.heartbeat.discard(job.id)
        if tag in self.qos._delivered:
            self.qos._quick_ack(tag)
        self.poison(job.name, job.id, job.retry_count, exc)

    def pump_transient(self) -> int:
        delivered = 0
        for queue in list(self._active_queues):
            local = self.mailboxes.get(queue)
            if local is None or queue not in self.connection._callbacks:
                continue
            no_ack = queue in self._no_ack
            while local and (no_ack or self.qos.can_consume()):
                payload = local.pop()
                if payload is None:
                    break
                tag = payload["properties"]["delivery_tag"] = f"{queue}/{next(_tag_counter)}"
                if not no_ack:
                    self._held[tag] = _Local(queue, payload)
                self.connection._deliver(payload, queue)
                delivered += 1
        return delivered

    def _payload(self, job: Any, task_name: str | None) -> dict[str, Any]:
        """A checked job's Kombu payload, with a delivery tag of its own."""
        return envelope.to_message(
            job.id,
            job.name,
            job.data,
            priority=job.priority,
            attempt=job.retry_count,
            delivery_tag=f"{job.id}/{next(_tag_counter)}",
            task_name=task_name,
            native_eta=self.native_eta,
            expire_seconds=job.expire_seconds,
            task_limits=WORKER.time_limits(task_name or _envelope_task(job.data)),
            checked=True,
            body_value=True,
        )

    def _prepare(self, job: Any, no_ack: bool) -> dict[str, Any] | None:
        """The Kombu payload for a fetched job, with the bookkeeping to settle it; None if unroutable
        or malformed (the job is failed then)."""
        task_name = None
        try:
            wellformed.check(job.data)  # MalformedJob naming what Celery would choke on
            if envelope.is_foreign(job.data):
                task_name = self.queue_tasks.task_for(job.name)
                if task_name is None:
                    poison.unroutable(self.manager, job)
                    return None
            payload = self._payload(job, task_name)
        except self.connection.connection_errors:
            raise
        except Exception as exc:  # MalformedJob, or whatever else this row makes the envelope raise
            self.poison(job.name, job.id, job.retry_count, exc)
            return None
        held = Held.of(job)
        if no_ack:
            self.settler.complete(held)
        else:
            self._held[payload["properties"]["delivery_tag"]] = held
            self.heartbeat.add(job.id, job.name, job.heartbeat_seconds)
        return payload

    # -- settling (called by QoS) -----------------------------------------------------------------

    def _on_ack(self, tag: str) -> None:
        held = self._held.pop(tag, None)
        undecodable = self._undecodable.pop(tag, None)
        if isinstance(held, Held) and undecodable is not None:
            # Celery acks a body it cannot decode (on_decode_error): nothing ran, nothing will.
            self.heartbeat.discard(held.id)
            self.poison(held.queue, held.id, held.attempt, undecodable)
            self._freed(held)
        elif isinstance(held, Held):
            if self.settle_on_ack:
                self.settler.complete(held)
            # A failure that scheduled a retry announces it itself (fail_jobs NOTIFYs), to every worker.
            self._freed(held)

    def _freed(self, held: Held) -> None:
        """A job of a capped queue is done here: its slot is free, so fetch that queue again now
        rather than at the next safety poll (a fetch at the cap left the queue clean), and so do
        the other workers the cap held back, once the job's end is committed: written by the settle
        that this ack queued, or already by the result backend."""
        if held.queue in self.concurrency_limits or held.queue in self.groups.limits:
            self.poller.mark_dirty([held.queue])
            if self.settle_on_ack:
                self.settler.wake_after(held.queue)
                return
            try:
                self.poller.wake(held.queue)
            except self.connection.connection_errors as exc:  # they find it at their safety poll
                logger.warning("could not wake the consumers of %r after a slot freed: %r", held.queue, exc)

    def _on_reject(self, tag: str, requeue: bool) -> None:
        held = self._held.pop(tag, None)
        self._undecodable.pop(tag, None)
        if isinstance(held, _Local):
            if requeue:
                local = self.mailboxes.get(held.queue)
                if local is not None:
                    local.push_front(held.payload)
        elif isinstance(held, Held):
            if requeue:
                self.heartbeat.discard(held.id)
                self.settler.requeue(held)
            elif self.settle_on_ack:
                self.settler.fail(held)
            else:
                # Celery let the message go for good: Reject(requeue=False), content it cannot decode
                # or does not accept, or a failure the result backend wrote already. No retry can
                # mend it: the job fails for good, fenced on its attempt (a written end is kept).
                # Celery sends task_rejected right after rejecting a message it refuses, and that
                # failure says why (worker_hooks.on_celery_refusal): on the event loop, the reject
                # waits for it.
                self.heartbeat.discard(held.id)
                self.poller.soon(lambda: self.settler.reject(held))
            self._freed(held)

    def _restore_tags(self, tags: Iterable[str]) -> None:
        restored = 0
        # A job whose task runs right now (the connection was lost, not the worker) is left to the
        # result backend, still heartbeated: handed back, it would run a second time beside this run.
        running = WORKER.running_tasks() if not self.settle_on_ack else frozenset()
        for tag in tags:
            held = self._held.pop(tag, None)
            self._undecodable.pop(tag, None)
            if isinstance(held, Held) and held.id in running:
                continue
            if isinstance(held, Held):
                self.heartbeat.discard(held.id)
                self.settler.restore(held)
                restored += 1
            elif isinstance(held, _Local):
                local = self.mailboxes.get(held.queue)
                if local is not None:
                    local.push_front(held.payload)
        if restored:
            try:
                self.settler.flush()
            except self.connection.connection_errors as exc:
                logger.warning(
                    "could not hand %d job(s) back (%r); pg-boss will retry them once their heartbeat "
                    "or expiry runs out",
                    restored,
                    exc,
                )

    def poison(self, queue: str, job_id: str, attempt: int, exc: BaseException) -> None:
        """Fail a job this channel cannot deliver, at once and for good (:mod:`transport.poison`)."""
        poison.poison(self.manager, queue, job_id, attempt, exc)

    def close(self) -> None:
        if not self.closed:
            super().close()
            self._held.clear()
            self._undecodable.clear()


def _envelope_task(data: Any) -> str | None:
    env = data.get(envelope.RESERVED_KEY) if isinstance(data, dict) else None
    return env.get("task") if isinstance(env, dict) else None
