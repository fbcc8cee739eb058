"""pg-boss transport (``pgboss://``): Celery and Kombu on Node pg-boss's PostgreSQL tables.

A durable Kombu queue IS a pg-boss queue: publishing inserts a job the way Node's ``send()`` does,
consuming fetches jobs the way Node's ``fetch()`` does, and a Node ``boss.work()`` handler on the same
queue sees the task's kwargs as its payload (see :mod:`transport.envelope`). Transient queues
(remote-control mailboxes, replies, event receivers) never become pg-boss queues: they are served
from a broadcast log (:mod:`transport.fanout`).

Features
========
* Type: Virtual
* Supports Direct: Yes
* Supports Topic: Yes
* Supports Fanout: Yes (``celery inspect``/``control``, ``celery events``, Flower, Mingle, Gossip)
* Supports Priority: Yes. pg-boss's ``priority``, higher first; Celery's ``priority`` is stored as is
  (the AMQP meaning, the reverse of Celery's Redis emulation).
* Supports TTL: ``expires`` becomes the job's ``keep_until`` (pg-boss deletes it unstarted after
  that, and Celery revokes it on receipt); transient queues honour ``x-message-ttl``.
* Native ETA: ``eta``/``countdown``/``Task.retry()`` become ``start_after``; workers never hold
  ETA messages in memory (``inspect scheduled`` lists them from the database, :mod:`transport.control`),
  and ``Task.retry()`` moves the same job row back to ``retry``.
* pg-boss send options from Celery: ``apply_async(pgboss={...})``, ``signature.set(pgboss=...)``,
  ``@app.task(pgboss={...})``; one retry budget (``request.retries`` is the job's ``retry_count``);
  each attempt's time limits end it before its job expires (:mod:`transport.celery_options`).
* Batched publishing: with :class:`transport.batch_publish.AMQP` as the app's ``amqp`` (zeke's app
  uses it), a group, chord header or ``chunks`` is one INSERT per queue (:meth:`Channel.begin_batch`).
* Push, not polling: a LISTEN socket on the worker's event loop (pg-boss's own NOTIFY channel, so
  Node inserts wake Python workers), a timer for the next ``start_after``, and a slow safety poll.
  A woken worker fetches up to its free prefetch budget in one statement: inline when it holds
  nothing, else on its fetch thread (:mod:`transport.fetcher`) while the loop feeds the pool.
* At-least-once across worker death: the worker's main process heartbeats every job it holds, and a
  supervisor (in every worker, sharing Node's claims) retries jobs whose heartbeat stopped.

Connection String
=================
.. code-block::

    pgboss://USER:PASSWORD@HOST:PORT/DATABASE
    pgboss://USER@/DATABASE?host=/var/run/postgresql        # Unix socket
    pgboss://USER:PASSWORD@HOST/DATABASE?sslmode=require     # any libpq parameter

Transport Options
=================
* ``schema``: the pg-boss schema (default ``pgboss``); installed as pg-boss 12.38 would if absent.
* ``queue_options``: ``{queue: {create_queue kwargs}}`` for queues this transport creates.
* ``heartbeat_seconds``: ``heartbeat_seconds`` of queues this transport creates (default 30; None
  for none). The worker touches held jobs every third of it.
* ``concurrency_limits``: ``{queue: N}``: at most N active jobs of the queue across all workers.
* ``group_concurrency``: ``{queue: N | {"default": N, "tiers": {tier: M}}}``: pg-boss's
  ``groupConcurrency``, at most N active jobs per job group of the queue across all workers (see
  :mod:`transport.groups`).
* ``task_for_queue``: ``{queue: task name}`` or a callable, for jobs Node sends (see
  :mod:`transport.queue_tasks`).
* ``notify_queues``: turn pg-boss's ``notify`` on for the queues a worker consumes, as Node's
  ``updateQueue(name, {notify: true})`` would (default True), so jobs Node sends wake it; False
  leaves queues as they are, and Node's jobs then wait for the safety poll.
* ``settle_on_ack``: ack completes the job, ``reject(requeue=False)`` fails it, an ack of a revoked
  task cancels it. Default: on unless the Celery app's result backend is pg-boss's (which records
  each job's end itself); with another backend or none, nothing else would end the job. Use it with
  ``task_acks_late = True`` and ``task_acks_on_failure = False`` (so a failure rejects).
* ``retry_policy``: the retries of queues this transport creates without ``queue_options``:
  ``"celery"`` (default: ``retry_limit`` 0, a raise fails once) or ``"pgboss"`` (the seed's 3
  retries with backoff). A task that sets no retry option follows its queue; see
  :mod:`transport.celery_options`.
* ``native_eta``: ETA as ``start_after`` (default True). A delivery still carries the ``eta`` it
  was sent with (``request.eta``), never later than now.
* ``polling_interval``: seconds between safety polls (default 5); ``node_polling_interval`` (2) and
  ``node_cache_seconds`` (65): see below.
* ``fetch_batch_size``: most jobs per fetch (default 100; the prefetch budget is used when smaller).
* ``refill_fraction``: while it holds jobs, a consumer fetches again once this fraction of its
  prefetch count is free (default 0.5: fewer, larger fetches); an idle one fetches at once.
* ``synchronous_commit``: wait for WAL flush on fetch and ack-settlement (default False: a lost
  claim or completion only means the job runs again, which at-least-once allows anyway).
* ``durable_publish``: a publish returns once its job is on disk (default True). False commits
  publishes asynchronously (``synchronous_commit`` off for them): faster pickup and enqueue, and a
  server crash may lose the last fraction of a second of sends, as Redis without AOF fsync does.
* ``settle_batch``: in workers, settle acks from a background thread, many per statement
  (default True), gathered for ``settle_window`` seconds after the first (default 0.002).
* ``statement_timeout``, ``connect_timeout``: seconds (defaults 30 and 10).
* ``max_connections``: most connections the process's pool opens at once (default 8), and
  ``application_name`` (``zeke-broker``). The pool and the LISTEN connection are the process's one
  per database (:mod:`transport.hub`), shared with the result backend, beat, the API and the client;
  the first of them to connect names the connections.
* ``supervise``: run pg-boss's supervisor in workers (default True), with ``supervise_interval``
  (60), ``monitor_interval`` (60) and ``maintenance_interval`` (86400) in seconds.
* ``broadcast_retention``: seconds broadcasts stay in the log (default 60);
  ``broadcast_gap_timeout``: seconds a reader waits for an id committed out of order (5);
  ``transient_queue_limit``: messages a transient queue buffers (10 000).

Node's ``createQueue`` leaves ``notify`` off; a worker turns it on for the queues it consumes
(``notify_queues``), and a Node process sends with NOTIFY once it has refreshed its queue cache
(every 60 s by default). Until then (for 65 s after a worker turned it on), on schemas without
``notify`` (pg-boss 12.5.4's) and with ``notify_queues`` off, the safety poll runs at least every
2 s, Node's own default polling, so a Node job never waits longer for a Python worker than it would
for a Node one; a Node ``startAfter`` job waits for the safety poll too (Python ETAs announce
themselves and start on time). A task that runs longer than its job's
``expire_in_seconds`` is stopped by the time limits its delivery carries (prefork pool) before
pg-boss would expire it whatever its heartbeat, as in Node.
"""

from __future__ import annotations

import collections
import datetime as dt
import itertools
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from queue import Empty
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg2
from kombu.transport import virtual
from kombu.transport.virtual.exchange import STANDARD_EXCHANGE_TYPES

from transport import celery_options, envelope, outage, outputs, timer_sweep, wellformed
from transport.bindings import Bindings
from transport.db import dsn_from_url
from transport.exceptions import MalformedJob, PgBossError, QueueNotFound
from transport.fanout import BroadcastLog, Subscription
from transport.fetcher import Fetcher
from transport.groups import GroupFetcher, parse_group_limits
from transport.heartbeat import Heartbeat
from transport.hub import apply_defaults, hub_for
from transport.listener import Subscription as Listening
from transport.maintenance import Supervisor
from transport.names import EXCHANGE_NOTICE, TIMER_NOTICE
from transport.queue_tasks import QueueTasks
from transport.redact import redact_url, split_password
from transport.sessions import ASYNC_COMMIT, Sessions
from transport.settle import SETTLE_WINDOW, Held, Settler
from transport.shared import DRIVER_TYPE, PREPARED_STATEMENTS, register_with_celery, revoked_ids
from transport.transient import TransientQueue
from transport.waker import Waker

logger = logging.getLogger(__name__)

#: Unique delivery tags within a process: "<job id>/<n>".
_tag_counter = itertools.count(1)
#: Seconds a cached list of durable bindings is trusted.
BINDING_CACHE_SECONDS = 2.0
#: A start_after timer fires this much late, so the database clock surely agrees.
TIMER_SLACK = 0.005


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


def _running_tasks() -> frozenset[str]:
    """Ids of the tasks this Celery worker process is running (none outside a worker)."""
    try:
        from celery.worker import state
    except ImportError:  # Kombu without Celery
        return frozenset()
    requests = tuple(state.active_requests)  # one C-level copy: the heartbeat thread asks too
    return frozenset(str(request.id) for request in requests)


class Message(virtual.Message):
    """A delivered job; a body its consumer cannot decode is remembered, so that the ack Celery
    gives such a message (``on_decode_error``) fails the job instead of leaving it active."""

    def _decode(self) -> Any:
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
    #: backend is pg-boss's, which writes each job's end itself (see :func:`_acks_must_settle`).
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

    connection: Transport

    def __init__(self, connection: Transport, **kwargs: Any) -> None:
        super().__init__(connection, **kwargs)
        if self.settle_on_ack is None:
            self.settle_on_ack = _acks_must_settle()
        self.manager = connection.manager
        self.owner_pid = os.getpid()
        self._held: dict[str, Held | _Local] = {}
        self._durable: list[str] = []
        self._no_ack: set[str] = set()
        #: Delivery tag -> why its body could not be decoded (see :class:`Message`).
        self._undecodable: dict[str, BaseException] = {}
        #: Publishes held until :meth:`flush_batch` while a batch is open (None: send each at once).
        self._batch: list[tuple[str, envelope.Job, dict[str, Any]]] | None = None

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
            self.connection.declare_transient(queue, arguments or {}, self.transient_queue_limit)
        else:
            self.connection.declare_durable(queue, self.new_queue_options(queue))

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
        if queue in self.connection.transient:
            return True
        return self.manager.get_queue(queue) is not None

    def _size(self, queue: str) -> int:
        local = self.connection.transient.get(queue)
        if local is not None:
            return len(local)
        return self.manager.queue_size(queue)

    def _purge(self, queue: str) -> int:
        local = self.connection.transient.get(queue)
        if local is not None:
            return local.clear()
        return self.manager.purge(queue)

    def queue_delete(
        self, queue: str, if_unused: bool = False, if_empty: bool = False, **kwargs: Any
    ) -> None:
        # By name, not through this process's bindings: a queue declared elsewhere has none here.
        if if_empty and self._size(queue):
            return
        if queue in self.connection.transient:
            self.connection.delete_transient(queue)
        elif self.manager.get_queue(queue) is not None:
            self.manager.delete_queue(queue)
            self.connection.forget_durable(queue)
        self.connection.bindings.remove_queue(queue)
        for exchange, _key, _args in list(self.state.queue_bindings(queue)):
            table = self.state.exchanges.get(exchange, {}).get("table", [])
            table[:] = [row for row in table if row[2] != queue]
        self.state.queue_bindings_delete(queue)

    def _queue_bind(self, exchange: str, routing_key: str, pattern: Any, queue: str) -> None:
        if queue in self.connection.transient:
            self.connection.consumers_changed()  # matched locally against the broadcast log
            return
        kind = self.typeof(exchange).type or "direct"
        self.connection.bindings.add(exchange, queue, routing_key, pattern or "", kind)
        self.connection.forget_binding_cache(exchange)

    def queue_unbind(
        self,
        queue: str,
        exchange: str | None = None,
        routing_key: str = "",
        arguments: Any = None,
        **kwargs: Any,
    ) -> None:
        super().queue_unbind(queue, exchange, routing_key, arguments, **kwargs)
        if exchange and queue not in self.connection.transient:
            self.connection.bindings.remove(exchange, queue, routing_key)
            self.connection.forget_binding_cache(exchange)

    def get_table(self, exchange: str) -> list[tuple[str, Any, str]]:
        local = list(self.state.exchanges.get(exchange, {}).get("table", []))
        _, durable = self.connection.durable_bindings(exchange)
        seen = {row[2] for row in local}
        return local + [row for row in durable if row[2] not in seen]

    # -- publishing -----------------------------------------------------------------------------

    def _inplace_augment_message(self, message: dict[str, Any], exchange: str, routing_key: str) -> None:
        # No delivery tag here: every delivery gets its own; bytes bodies are the envelope's business.
        props = message["properties"]
        props["delivery_info"].update(exchange=exchange, routing_key=routing_key)

    def basic_publish(self, message: dict[str, Any], exchange: str, routing_key: str, **kwargs: Any) -> None:
        self._inplace_augment_message(message, exchange, routing_key)
        if not exchange:
            return self._put(routing_key, message)
        for queue in self.connection.durable_targets(exchange, routing_key, self.typeof(exchange).type):
            self._put(queue, message)
        # Transient subscribers anywhere match it against their own bindings.
        self.connection.broadcast(exchange, routing_key, message)
        return None

    def _put_fanout(self, exchange: str, message: dict[str, Any], routing_key: str, **kwargs: Any) -> None:
        self.connection.broadcast(exchange, routing_key, message)

    def _put(self, queue: str, message: dict[str, Any], **kwargs: Any) -> None:
        local = self.connection.transient.get(queue)
        if local is not None:
            local.push(message)
            return
        job = envelope.to_job(message, native_eta=self.native_eta)
        if self._batch is not None:
            self._batch.append((queue, job, message))
        else:
            self.connection.send_job(queue, job, message, self.new_queue_options)

    def begin_batch(self) -> None:
        """Hold this channel's publishes to pg-boss queues until :meth:`flush_batch` sends them
        together (transient queues still get theirs at once)."""
        if self._batch is None:
            self._batch = []

    def flush_batch(self) -> None:
        """Send the held publishes (one INSERT per queue) and stop holding; raises when the send
        failed, as each publish would have."""
        batch, self._batch = self._batch, None
        if batch:
            self.connection.send_jobs(batch, self.new_queue_options)

    # -- consuming ------------------------------------------------------------------------------

    def basic_consume(self, queue: str, no_ack: bool, callback: Any, consumer_tag: str, **kwargs: Any) -> Any:
        result = super().basic_consume(queue, no_ack, callback, consumer_tag, **kwargs)
        if no_ack:
            self._no_ack.add(queue)
        if queue not in self.connection.transient and queue not in self._durable:
            self._durable.append(queue)
            self.connection.enable_notify(queue)
            self.connection.consumers_changed()
            self.connection.mark_dirty([queue])
        elif queue in self.connection.transient:
            self.connection.consumers_changed()
        return result

    def basic_cancel(self, consumer_tag: str) -> Any:
        queue = self._tag_to_queue.get(consumer_tag)
        result = super().basic_cancel(consumer_tag)
        if queue is not None and queue not in self._active_queues:
            self._no_ack.discard(queue)
            if queue in self._durable:
                self._durable.remove(queue)
            self.connection.consumers_changed()
        return result

    def basic_get(self, queue: str, no_ack: bool = False, **kwargs: Any) -> Any:
        local = self.connection.transient.get(queue)
        if local is not None:
            self.connection.read_broadcasts()
            payload = local.pop()
            if payload is None:
                return None
            tag = payload["properties"]["delivery_tag"] = f"{queue}/{next(_tag_counter)}"
            if not no_ack:
                self._held[tag] = _Local(queue, payload)
            message = self.Message(payload, channel=self)
        else:
            jobs = self.connection.fetch([queue], 1)
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
        fetcher = self.connection.fetcher
        if fetcher is not None and fetcher.busy:
            return 0  # stay dirty: the fetch that is out is delivered first
        queues = [q for q in self._durable if q in self.connection._callbacks]
        if not queues or dirty.isdisjoint(queues):
            return 0
        if not self.qos.can_consume():
            return 0  # stay dirty: the tick after the next ack fetches
        budget = self.qos.can_consume_max_estimate()
        prefetch = self.qos.prefetch_count
        holding = len(self.qos._delivered) - len(self.qos._dirty)
        if budget and prefetch and holding > 0:
            if budget < max(1, int(prefetch * self.refill_fraction)):
                return 0  # busy and well stocked: refill in fewer, larger fetches (stay dirty)
        limit = min(budget or self.fetch_batch_size, self.fetch_batch_size)
        limits = {q: n for q, n in self.concurrency_limits.items() if q in queues}
        if fetcher is not None and holding > 0:
            # Clean from now on, not once the jobs are delivered: a job announced while the fetch
            # is out (after its statement looked) makes the queue dirty again, and is fetched next.
            dirty.difference_update(queues)
            fetcher.submit(self, queues, limit, limits)  # the loop keeps feeding the pool meanwhile
            return 0
        jobs = self.connection.fetch(queues, limit, limits)
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
        self.connection.heartbeat.discard(job.id)
        if tag in self.qos._delivered:
            self.qos._quick_ack(tag)
        self.connection.poison(job.name, job.id, job.retry_count, exc)

    def pump_transient(self) -> int:
        delivered = 0
        for queue in list(self._active_queues):
            local = self.connection.transient.get(queue)
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

    def _prepare(self, job: Any, no_ack: bool) -> dict[str, Any] | None:
        """The Kombu payload for a fetched job, with the bookkeeping to settle it; None if unroutable
        or malformed (the job is failed then)."""
        task_name = None
        tag = f"{job.id}/{next(_tag_counter)}"
        try:
            wellformed.check(job.data)
            if envelope.is_foreign(job.data):
                task_name = self.connection.queue_tasks.task_for(job.name)
                if task_name is None:
                    self.connection.unroutable(job)
                    return None
            payload = envelope.to_message(
                job.id,
                job.name,
                job.data,
                priority=job.priority,
                attempt=job.retry_count,
                delivery_tag=tag,
                task_name=task_name,
                native_eta=self.native_eta,
                expire_seconds=job.expire_seconds,
                task_limits=_task_time_limits(task_name or _envelope_task(job.data)),
            )
        except self.connection.connection_errors:
            raise
        except Exception as exc:  # MalformedJob, or whatever else this row makes the envelope raise
            self.connection.poison(job.name, job.id, job.retry_count, exc)
            return None
        held = Held.of(job)
        if no_ack:
            self.connection.settler.complete(held)
        else:
            self._held[tag] = held
            self.connection.heartbeat.add(job.id, job.name, job.heartbeat_seconds)
        return payload

    # -- settling (called by QoS) -----------------------------------------------------------------

    def _on_ack(self, tag: str) -> None:
        held = self._held.pop(tag, None)
        undecodable = self._undecodable.pop(tag, None)
        if isinstance(held, Held) and undecodable is not None:
            # Celery acks a body it cannot decode (on_decode_error): nothing ran, nothing will.
            self.connection.heartbeat.discard(held.id)
            self.connection.poison(held.queue, held.id, held.attempt, undecodable)
            self._freed(held)
        elif isinstance(held, Held):
            if self.settle_on_ack:
                self.connection.settler.complete(held)
            # A failure that scheduled a retry announces it itself (fail_jobs NOTIFYs), to every worker.
            self._freed(held)

    def _freed(self, held: Held) -> None:
        """A job of a capped queue is done here: its slot is free, so fetch that queue again now
        rather than at the next safety poll (a fetch at the cap left the queue clean), and so do
        the other workers the cap held back, once the job's end is committed: written by the settle
        that this ack queued, or already by the result backend."""
        if held.queue in self.concurrency_limits or held.queue in self.connection.groups.limits:
            self.connection.mark_dirty([held.queue])
            if self.settle_on_ack:
                self.connection.settler.wake_after(held.queue)
                return
            try:
                self.connection.wake(held.queue)
            except self.connection.connection_errors as exc:  # they find it at their safety poll
                logger.warning("could not wake the consumers of %r after a slot freed: %r", held.queue, exc)

    def _on_reject(self, tag: str, requeue: bool) -> None:
        held = self._held.pop(tag, None)
        self._undecodable.pop(tag, None)
        if isinstance(held, _Local):
            if requeue:
                local = self.connection.transient.get(held.queue)
                if local is not None:
                    local.push_front(held.payload)
        elif isinstance(held, Held):
            if requeue:
                self.connection.heartbeat.discard(held.id)
                self.connection.settler.requeue(held)
            elif self.settle_on_ack:
                self.connection.settler.fail(held)
            else:
                # Celery let the message go for good: Reject(requeue=False), content it cannot decode
                # or does not accept, or a failure the result backend wrote already. No retry can
                # mend it: the job fails for good, fenced on its attempt (a written end is kept).
                # Celery sends task_rejected right after rejecting a message it refuses, and that
                # failure says why (_on_celery_refusal): on the event loop, the reject waits for it.
                self.connection.heartbeat.discard(held.id)
                self.connection.soon(lambda: self.connection.settler.reject(held))
            self._freed(held)

    def _restore_tags(self, tags: Iterable[str]) -> None:
        restored = 0
        # A job whose task runs right now (the connection was lost, not the worker) is left to the
        # result backend, still heartbeated: handed back, it would run a second time beside this run.
        running = _running_tasks() if not self.settle_on_ack else frozenset()
        for tag in tags:
            held = self._held.pop(tag, None)
            self._undecodable.pop(tag, None)
            if isinstance(held, Held) and held.id in running:
                continue
            if isinstance(held, Held):
                self.connection.heartbeat.discard(held.id)
                self.connection.settler.restore(held)
                restored += 1
            elif isinstance(held, _Local):
                local = self.connection.transient.get(held.queue)
                if local is not None:
                    local.push_front(held.payload)
        if restored:
            try:
                self.connection.settler.flush()
            except self.connection.connection_errors as exc:
                logger.warning(
                    "could not hand %d job(s) back (%r); pg-boss will retry them once their heartbeat "
                    "or expiry runs out",
                    restored,
                    exc,
                )

    def close(self) -> None:
        if not self.closed:
            super().close()
            self._held.clear()
            self._undecodable.clear()


class Transport(virtual.Transport):
    Channel = Channel

    driver_type = DRIVER_TYPE
    driver_name = "psycopg2"
    default_port = 5432
    #: The URL is handed to libpq as is (``?host=/socket/dir`` and friends).
    can_parse_url = True
    connection_errors = virtual.Transport.connection_errors + (
        psycopg2.OperationalError,
        psycopg2.InterfaceError,
    )
    channel_errors = virtual.Transport.channel_errors + (PgBossError,)
    #: A lost database is retried (publish retry policy, reconnects); a refused send (an invalid
    #: option or payload) is not: it reaches the caller as the transport raised it.
    recoverable_connection_errors = connection_errors
    recoverable_channel_errors: tuple[type[BaseException], ...] = ()
    implements = virtual.Transport.implements.extend(
        asynchronous=True,
        exchange_type=frozenset({"direct", "topic", "fanout"}),
        heartbeats=False,
    )

    #: The pg-boss schema.
    schema: str = "pgboss"
    #: Seconds between safety polls (lost NOTIFYs, Node ``startAfter`` jobs, pg-boss backoff retries).
    polling_interval: float = 5.0
    #: The safety poll's interval at most while Node may send to a consumed queue without NOTIFY
    #: (Node's default ``pollingIntervalSeconds``), and how long after notify is turned on that lasts
    #: (Node's default ``queueCacheIntervalSeconds``, plus a margin).
    node_polling_interval: float = 2.0
    node_cache_seconds: float = 65.0
    #: Wait for WAL flush on fetch and ack-settlement.
    synchronous_commit: bool = False
    #: Wait for WAL flush on publish (False: Redis-class durability, opt-in).
    durable_publish: bool = True
    #: Settle acks from a background thread, many per statement, instead of one statement per ack
    #: on the event loop.
    settle_batch: bool = True
    #: Seconds the settle thread gathers acks before writing them in one statement.
    settle_window: float = SETTLE_WINDOW
    #: Per-statement limit, seconds (a stalled database must not freeze the worker's loop forever).
    statement_timeout: float = 30.0
    #: Seconds to wait for a connection.
    connect_timeout: float = 10.0
    #: Connections per process.
    max_connections: int = 8
    #: ``application_name`` of the transport's connections (``pg_stat_activity``).
    application_name: str = "zeke-broker"
    #: ``{queue: task name}`` or ``queue -> task name``, for jobs without an envelope.
    task_for_queue: Any = None
    #: Turn pg-boss's ``notify`` on for queues this process consumes (so Node's sends wake it).
    notify_queues: bool = True
    #: Run pg-boss's supervisor (expiry, heartbeats, deletion) in workers.
    supervise: bool = True
    supervise_interval: float = 60.0
    monitor_interval: float = 60.0
    maintenance_interval: float = 86400.0
    #: Seconds broadcasts stay in the log (late readers re-read gaps within this window).
    broadcast_retention: float = 60.0
    #: Seconds a missing broadcast id is waited for.
    broadcast_gap_timeout: float = 5.0

    from_transport_options = (
        "schema",
        "polling_interval",
        "node_polling_interval",
        "node_cache_seconds",
        "synchronous_commit",
        "durable_publish",
        "settle_batch",
        "settle_window",
        "statement_timeout",
        "connect_timeout",
        "max_connections",
        "application_name",
        "task_for_queue",
        "notify_queues",
        "supervise",
        "supervise_interval",
        "monitor_interval",
        "maintenance_interval",
        "broadcast_retention",
        "broadcast_gap_timeout",
    )

    def __init__(self, client: Any, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        options = client.transport_options
        for name in self.from_transport_options:
            if name in options:
                setattr(self, name, options[name])
        # kombu hands a pgboss:// URL over whole as the hostname (can_parse_url), and reports the
        # hostname in `inspect stats`, Flower and clones; the password moves to the Connection's own
        # field, which Celery leaves out of what it reports.
        client.hostname, password = split_password(client.hostname or "")
        client.password = password or client.password
        self.url = self._url()
        #: The process's pool and LISTEN connection for this database (shared with the result
        #: backend, beat, the API and the client).
        self.hub = hub_for(
            self.url,
            statement_timeout=self.statement_timeout,
            connect_timeout=self.connect_timeout,
            application_name=self.application_name,
            max_connections=self.max_connections,
        )
        self.hub.acquire()
        self.manager = self.hub.manager(self.schema)
        self._released = False
        self.log = BroadcastLog(self.manager)
        self.bindings = Bindings(self.manager)
        self.heartbeat = Heartbeat(
            self.manager,
            default_seconds=float(options.get("heartbeat_seconds") or Channel.heartbeat_seconds or 30),
            hub=self.hub,
        )
        self.revoked = revoked_ids()
        #: One-round-trip checkouts: durable publishes; fetches and settlements (async commit).
        self.publishing = Sessions(self.manager.db, None if self.durable_publish else ASYNC_COMMIT)
        self.consuming = Sessions(self.manager.db, None if self.synchronous_commit else ASYNC_COMMIT)
        self.settler = Settler(
            self.manager,
            wake=self.wake,
            revoked=self.revoked,
            session=self.consuming,
            window=float(self.settle_window),
        )
        self.queue_tasks = QueueTasks(self.task_for_queue)
        self.groups = GroupFetcher(self.manager, parse_group_limits(options.get("group_concurrency")))
        self.transient: dict[str, TransientQueue] = {}
        self.timers_stale = True
        self._dirty: set[str] = set()
        self._consumed: set[str] | None = None
        self._wanted: set[str] | None = None
        self._broadcast_dirty = False
        self._subscription: Subscription | None = None
        #: This transport's channels on the hub's LISTEN connection, and what arrived on them (the
        #: listener thread appends; the event loop or a blocking drain takes).
        self._listener: Listening | None = None
        self._notices: collections.deque[tuple[str, str]] = collections.deque()
        self._listen_lost: BaseException | None = None
        self._notified = threading.Event()
        #: A busy worker's fetches, off its event loop (None outside an event loop).
        self.fetcher: Fetcher | None = None
        self._binding_cache: dict[str, tuple[float, str | None, list[tuple[str, Any, str]]]] = {}
        self._exchange_types = {name: cls(None) for name, cls in STANDARD_EXCHANGE_TYPES.items()}
        self._loop: Any = None
        self._loop_entries: list[Any] = []
        self._start_timer: Any = None
        self._next_start: float | None = None
        self._next_safety = 0.0
        self._skew = 0.0
        self._supervisor: Supervisor | None = None
        self._waker: Waker | None = None
        self._pid = os.getpid()
        self._notify_checked: set[str] = set()
        #: Until when (monotonic) Node may insert into a consumed queue without NOTIFY.
        self._unheard_until = 0.0

    # -- connection -----------------------------------------------------------------------------

    def _url(self) -> str:
        client = self.client
        hostname = client.hostname or "localhost"
        if "://" in hostname:
            base = dsn_from_url(hostname)
        else:
            auth = ""
            if client.userid:
                auth = quote(client.userid, safe="")
                if client.password:
                    auth += ":" + quote(client.password, safe="")
                auth += "@"
            port = f":{client.port}" if client.port else ""
            vhost = (client.virtual_host or "").lstrip("/")
            base = f"postgresql://{auth}{hostname}{port}/{vhost}"
        parts = urlsplit(base)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        if "://" in hostname and client.password:
            query["password"] = client.password
        apply_defaults(query, statement_timeout=self.statement_timeout, connect_timeout=self.connect_timeout)
        return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))

    def as_uri(self, uri: str, include_password: bool = False, mask: str = "**") -> str:
        uri = self.url if include_password or "://" not in uri else uri
        return "pgboss://" + (uri if include_password else redact_url(uri, mask)).split("://", 1)[1]

    def driver_version(self) -> str:
        return psycopg2.__version__.split()[0]

    def fetch(self, queues: list[str], limit: int, limits: Mapping[str, int] | None = None) -> list[Any]:
        """Claim up to ``limit`` jobs of ``queues``: one autocommit statement (a transaction when a
        queue has a concurrency limit, whose advisory lock must last until the claim commits)."""
        grouped = [q for q in queues if self.groups.limited(q)] if self.groups.limits else []
        if grouped:
            return self._fetch_grouped(queues, grouped, limit, limits or {})
        if limits:
            return self.manager.fetch(
                queues, limit, concurrency_limits=limits, synchronous_commit=self.synchronous_commit
            )
        with self.consuming.connection() as conn:
            # The session already has the commit mode; synchronous_commit=True means "no SET LOCAL".
            return self.manager.fetch(queues, limit, conn=conn, synchronous_commit=True)

    def _fetch_grouped(
        self, queues: list[str], grouped: list[str], limit: int, limits: Mapping[str, int]
    ) -> list[Any]:
        """The queues without group limits in one fetch, then each group-limited one on its own."""
        others = [q for q in queues if q not in grouped]
        jobs = self.fetch(others, limit, limits) if others else []
        for queue in grouped:
            if len(jobs) >= limit:
                break
            jobs += self.groups.fetch(
                queue, limit - len(jobs), limits.get(queue), synchronous_commit=self.synchronous_commit
            )
        return jobs

    def establish_connection(self) -> Transport:
        self._wait_for_database()
        self.hub.ensure_installed(self.manager, PREPARED_STATEMENTS)
        return super().establish_connection()

    def _wait_for_database(self) -> None:
        """Once this process's consumer has lost the database, wait a backoff delay (growing, with
        jitter), then until the database answers, before connecting again: Celery restarts its
        consumer at once after every connection error, and a server out of connections was asked
        several times a second by every worker. One log line per outage (see transport.outage)."""
        if not _RECONNECTS.troubled:
            return
        while True:
            outage.sleep(_RECONNECTS.delay(), _shutdown_check)
            try:
                self.manager.now()
            except self.connection_errors as exc:
                _RECONNECTS.lost(exc)
            else:
                return

    def close_connection(self, connection: Any) -> None:
        try:
            super().close_connection(connection)
        finally:
            if self._loop is not None:
                self.unregister_from_event_loop(connection, self._loop)
            if self._supervisor is not None:
                self._supervisor.stop()
                self._supervisor = None
            # Jobs whose tasks run on (the connection was lost, not the worker) stay heartbeated
            # until their tasks end: the result backend settles them (see Channel._restore_tags).
            self.heartbeat.retire(_running_tasks)
            if self._listener is not None:
                self._listener.close()  # pid-guarded
                self._listener = None
            if self._waker is not None:
                self._waker.close()  # pid-guarded
                self._waker = None
            if not self._released:
                self._released = True
                self.hub.release()

    # -- durable queues -------------------------------------------------------------------------

    def declare_durable(self, queue: str, options: Mapping[str, Any]) -> None:
        declared = self.hub.declared(self.schema)
        if queue in declared:
            return
        self.manager.create_queue(queue, **{k: v for k, v in options.items() if v is not None})
        declared.add(queue)

    def enable_notify(self, queue: str) -> None:
        """Make a queue this process consumes NOTIFY on every insert, Node's too. Node's
        ``createQueue`` leaves pg-boss's ``notify`` off, and then its sends would wake no one: they
        would wait for the safety poll."""
        if queue in self._notify_checked:
            return
        if not self.notify_queues or not self.manager.info.has("notify"):
            self._unheard_until = math.inf  # Node's sends never wake us: poll as often as Node does
        elif self.manager.enable_notify(queue):
            logger.info("pg-boss notify turned on for queue %r: jobs Node sends now wake this worker", queue)
            # Node processes already running see it at their next queue-cache refresh.
            self._unheard_until = max(self._unheard_until, time.monotonic() + self.node_cache_seconds)
        self._notify_checked.add(queue)

    def forget_durable(self, queue: str) -> None:
        self.hub.declared(self.schema).discard(queue)

    def send_job(
        self,
        queue: str,
        job: envelope.Job,
        message: dict[str, Any],
        queue_options: Callable[[str], Mapping[str, Any]],
    ) -> None:
        options = _send_options(job)
        try:
            with self.publishing.connection() as conn:
                ids = self.manager.send(queue, job.data, conn=conn, **options)
        except QueueNotFound:
            if not self._declare_for_send(queue, message, queue_options):
                return
            ids = self.manager.send(queue, job.data, **options)
        self._sent(queue, job, options, inserted=bool(ids))

    def send_jobs(
        self,
        batch: Sequence[tuple[str, envelope.Job, dict[str, Any]]],
        queue_options: Callable[[str], Mapping[str, Any]],
    ) -> None:
        """Publish many messages with one INSERT per queue, each committed before this returns (a
        Celery group sent through :class:`transport.batch_publish.BatchingProducerPool`); each message
        then gets what :meth:`send_job` gives one (a retry in place, a replaced id renewed, a timer)."""
        if len(batch) == 1:
            self.send_job(*batch[0], queue_options)
            return
        by_queue: dict[str, list[tuple[envelope.Job, dict[str, Any], dict[str, Any]]]] = {}
        for queue, job, message in batch:
            by_queue.setdefault(queue, []).append((job, message, _send_options(job)))
        inserted: set[str] = set()
        unknown: list[str] = []
        with self.publishing.connection() as conn:  # autocommit: each queue's INSERT commits as it ends
            for queue, items in by_queue.items():
                rows = [{"data": job.data, **options} for job, _message, options in items]
                try:
                    inserted.update(self.manager.send_many(queue, rows, conn=conn))
                except QueueNotFound:
                    unknown.append(queue)
        for queue in unknown:  # not pg-boss queues yet: declared (or broadcast), then sent one by one
            items = by_queue.pop(queue)
            if self._declare_for_send(queue, items[0][1], queue_options):
                for job, _message, options in items:
                    ids = self.manager.send(queue, job.data, **options)
                    self._sent(queue, job, options, inserted=bool(ids))
            else:  # another process's transient queue: _declare_for_send broadcast the first
                for _job, message, _options in items[1:]:
                    self.broadcast("", queue, message)
        for queue, items in by_queue.items():
            for job, _message, options in items:
                self._sent(queue, job, options, inserted=job.id is not None and job.id in inserted)

    def _declare_for_send(
        self, queue: str, message: dict[str, Any], queue_options: Callable[[str], Mapping[str, Any]]
    ) -> bool:
        """After a send met no pg-boss queue: declare it when this process declared it to Kombu (it
        was deleted meanwhile) and say so; otherwise it is another process's transient queue (an RPC
        reply queue...), which gets the message as a broadcast."""
        if queue not in self.hub.declared(self.schema):
            self.broadcast("", queue, message)
            return False
        self.hub.declared(self.schema).discard(queue)
        self.declare_durable(queue, queue_options(queue))
        return True

    def _sent(self, queue: str, job: envelope.Job, options: Mapping[str, Any], *, inserted: bool) -> None:
        """What follows a send: a timer for a later start, or, when no row was inserted, the id's
        existing row taken up again (a retry, a replaced task) or the deduplication logged."""
        if inserted:
            if _starts_later(options.get("start_after")):
                self.notify_timer(queue)
            return
        # The id exists: Celery's Task.retry() republishes the same task id -> same row, back to retry.
        start_after = job.start_after or _utcnow()
        if job.id and self.manager.retry_in_place(
            queue, job.id, start_after=start_after, data=job.data, retry_count=job.attempt
        ):
            return  # the statement announced the retry (now or later) to the queue's consumers
        # Task.replace(): the replacement's final task inherits the id of the replaced task,
        # whose row already completed as replaced.
        if job.id and self.manager.renew_replaced(queue, job.id, start_after=start_after, data=job.data):
            return
        if job.id is None or (job.attempt is None and self.manager.get_job(job.id) is None):
            # AsyncResult of such a task id reads PENDING: there is no job behind it.
            logger.info(
                "message %s to pg-boss queue %r deduplicated by the queue's policy or a singleton option",
                job.id or "",
                queue,
            )
        else:
            logger.warning(
                "job %s already exists in pg-boss queue %r and is not active%s; dropped",
                job.id,
                queue,
                "" if job.attempt is None else f" in attempt {job.attempt}",
            )

    def poison(self, queue: str, job_id: str, attempt: int, exc: BaseException) -> None:
        """Fail a job whose data cannot be delivered, at once and for good (retrying would meet the
        same data), fenced on the attempt that fetched it; its output says what is wrong."""
        if isinstance(exc, MalformedJob):
            output = {"name": type(exc).__name__, "message": f"malformed job: {exc}", "stack": ""}
            logger.error("job %s of queue %r failed without retries: malformed: %s", job_id, queue, exc)
        else:
            output = outputs.error_output(exc)
            output["message"] = f"the consumer could not take this job: {output['message']}"
            logger.error(
                "job %s of queue %r failed without retries: the consumer could not take it",
                job_id,
                queue,
                exc_info=(type(exc), exc, exc.__traceback__),
            )
        output = {k: _storable(v) for k, v in output.items() if isinstance(v, str)}
        self.manager.fail(queue, [job_id], output, attempts={job_id: attempt}, retry=False)

    def unroutable(self, job: Any) -> None:
        output = {
            "name": "NotRegistered",
            "message": f"no Celery task is registered for pg-boss queue {job.name!r} "
            "(name a task like the queue, route one to it, or set the transport option task_for_queue)",
        }
        logger.error("job %s: %s", job.id, output["message"])
        self.manager.fail(job.name, [job.id], output, attempts={job.id: job.retry_count})

    # -- routing to named exchanges -------------------------------------------------------------

    def durable_bindings(self, exchange: str) -> tuple[str | None, list[tuple[str, Any, str]]]:
        cached = self._binding_cache.get(exchange)
        now = time.monotonic()
        if cached is not None and cached[0] > now:
            return cached[1], cached[2]
        kind, rows = self.bindings.table(exchange)
        self._binding_cache[exchange] = (now + BINDING_CACHE_SECONDS, kind, rows)
        return kind, rows

    def forget_binding_cache(self, exchange: str) -> None:
        self._binding_cache.pop(exchange, None)

    def durable_targets(self, exchange: str, routing_key: str, local_type: str | None) -> set[str]:
        kind, rows = self.durable_bindings(exchange)
        local = self.state.exchanges.get(exchange)
        table = [row for row in (local or {}).get("table", []) if row[2] not in self.transient]
        table += [row for row in rows if row not in table]
        if not table:
            return set()
        exchange_type = (local or {}).get("type") or kind or local_type or "direct"
        return set(self._exchange_types[exchange_type].lookup(table, exchange, routing_key, None))

    # -- transient queues and the broadcast log ---------------------------------------------------

    def declare_transient(self, queue: str, arguments: Mapping[str, Any], limit: int) -> None:
        self._wanted = None
        if queue not in self.transient:
            ttl = arguments.get("x-message-ttl")
            self.transient[queue] = TransientQueue(queue, ttl=ttl / 1000.0 if ttl else None, limit=limit)
        if self._subscription is None:
            # Start reading the log now: what is published after this declare is ours.
            self._subscription = Subscription(self.log, gap_timeout=self.broadcast_gap_timeout)

    def delete_transient(self, queue: str) -> None:
        self.transient.pop(queue, None)
        self._wanted = None

    def broadcast(self, exchange: str, routing_key: str, message: dict[str, Any]) -> None:
        self.log.publish(exchange, routing_key, message)

    def _wanted_exchanges(self) -> set[str]:
        if self._wanted is None:
            wanted = {""}
            for name, exchange in self.state.exchanges.items():
                if any(row[2] in self.transient for row in exchange.get("table", [])):
                    wanted.add(name)
            self._wanted = wanted
        return self._wanted

    def read_broadcasts(self) -> int:
        """Route new broadcasts to this connection's transient queues; returns how many were queued."""
        subscription = self._subscription
        if subscription is None or not self.transient:
            return 0
        self._broadcast_dirty = False
        queued = 0
        for item in subscription.read(self._wanted_exchanges()):
            for queue in self._transient_targets(item.exchange, item.routing_key):
                local = self.transient.get(queue)
                if local is not None and local.accepts(item.age):
                    local.push(item.message)
                    queued += 1
        return queued

    def _transient_targets(self, exchange: str, routing_key: str) -> set[str]:
        if not exchange:
            return {routing_key} if routing_key in self.transient else set()
        local = self.state.exchanges.get(exchange)
        if local is None:
            return set()
        table = [row for row in local.get("table", []) if row[2] in self.transient]
        return set(
            self._exchange_types[local.get("type") or "direct"].lookup(table, exchange, routing_key, None)
        )

    # -- wake-ups -------------------------------------------------------------------------------

    def wake(self, queue: str) -> None:
        """Tell every consumer (Node's too) that jobs of ``queue`` are runnable."""
        self._notify(self.manager.channel, queue)
        self.mark_dirty([queue])

    def notify_timer(self, queue: str) -> None:
        """Tell Python consumers that a job of ``queue`` becomes runnable later (an ETA)."""
        self._notify(self.log.channel, TIMER_NOTICE + queue)

    def _notify(self, channel: str, payload: str) -> None:
        with self.manager.db.cursor() as cur:
            cur.execute(self.manager.queries["wake"], {"channel": channel, "payload": payload})

    def mark_dirty(self, queues: Iterable[str]) -> None:
        consumed = self._consumed_durable()
        self._dirty.update(q for q in queues if q in consumed)
        self.timers_stale = True

    def consumers_changed(self) -> None:
        self._consumed = None
        self._wanted = None

    def _consumed_durable(self) -> set[str]:
        if self._consumed is None:
            self._consumed = {q for channel in self.channels for q in channel._durable}
        return self._consumed

    def _mark_all_dirty(self) -> None:
        self._dirty.update(self._consumed_durable())
        self._broadcast_dirty = True
        self.timers_stale = True

    def _on_notices(self, notices: Iterable[tuple[str, str]]) -> None:
        for channel, payload in notices:
            if channel == self.manager.channel:
                if payload in self._consumed_durable():
                    self._dirty.add(payload)
            elif payload.startswith(EXCHANGE_NOTICE):
                if self.transient and payload[len(EXCHANGE_NOTICE) :] in self._wanted_exchanges():
                    self._broadcast_dirty = True
            elif payload.startswith(TIMER_NOTICE):
                if payload[len(TIMER_NOTICE) :] in self._consumed_durable():
                    self.timers_stale = True

    def _ensure_listener(self) -> Listening:
        """This transport's channels on the hub's LISTEN connection, listened on before it returns
        (raises a connection error when the database cannot be reached)."""
        if self._pid != os.getpid():  # inherited across fork: start afresh, never touch the parent's
            self._listener, self._pid = None, os.getpid()
        if self._listener is None or self._listener.closed:
            self.hub.ensure_installed(self.manager, PREPARED_STATEMENTS)
            self._listen_lost = None
            listening = self.hub.listener.subscribe(
                (self.manager.channel, self.log.channel), self._on_notice, on_lost=self._on_listen_lost
            )
            try:
                listening.wait(self.connect_timeout)
            except BaseException:
                listening.close()
                raise
            self._listener = listening
            self._skew = (self.manager.now() - _utcnow()).total_seconds()
            self._mark_all_dirty()  # whatever was NOTIFYed while not listening is lost
        return self._listener

    # Called on the listener thread: queue and wake, nothing more.

    def _on_notice(self, channel: str, payload: str) -> None:
        self._notices.append((channel, payload))
        self._signal()

    def _on_listen_lost(self, exc: BaseException) -> None:
        self._listen_lost = exc
        self._signal()

    def _signal(self) -> None:
        self._notified.set()
        waker = self._waker
        if waker is not None:
            waker.wake()

    # -- one pass: what both the event loop and blocking drain_events run --------------------------

    def _pump(self) -> int:
        if self.settler.pending and not self.settler.batching:
            self.settler.flush()  # a write that failed earlier
        delivered = 0
        if self.fetcher is not None and self.fetcher.done:
            delivered += self._deliver_fetched()
        if self._broadcast_dirty or (self._subscription is not None and self._subscription.due):
            self.read_broadcasts()
        if self.transient:
            for channel in self.channels:
                delivered += channel.pump_transient()
        if self._dirty:
            for channel in list(self.channels):
                delivered += channel.pump_durable(self._dirty)
        if self.timers_stale and not self._dirty:
            self._schedule_next_start()
        if delivered and len(self.heartbeat):
            self.heartbeat.start()
        return delivered

    def _deliver_fetched(self) -> int:
        assert self.fetcher is not None
        fetched = self.fetcher.collect()
        if fetched is None:
            return 0
        if fetched.error is not None:
            self._dirty.update(fetched.queues)  # marked clean when the fetch was asked for
            raise fetched.error
        if len(fetched.jobs) >= fetched.limit:
            self._dirty.update(fetched.queues)  # a full fetch may have left more
        if fetched.channel.closed:
            self._hand_back(fetched.jobs)
            return 0
        return fetched.channel.deliver_jobs(fetched.jobs)

    def _hand_back(self, jobs: Iterable[Any]) -> None:
        """Jobs fetched for a consumer that is gone: back to ``created``, fenced on their attempt."""
        for job in jobs:
            self.settler.restore(Held.of(job))

    def _open_consuming(self) -> None:
        with self.consuming.connection():
            pass

    def soon(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` in the event loop's next round (at once without an event loop)."""
        if self._loop is not None:
            self._loop.call_soon(callback)
        else:
            callback()

    def _wake_loop(self) -> None:
        if self._waker is not None:
            self._waker.wake()

    def _schedule_next_start(self) -> None:
        self.timers_stale = False
        queues = self._consumed_durable()
        if not queues:
            return
        at = self.manager.next_start_after(sorted(queues))
        if at is None:
            self._set_start_timer(None)
            return
        delay = (at - _utcnow()).total_seconds() - self._skew + TIMER_SLACK
        self._set_start_timer(max(delay, 0.0))

    def _set_start_timer(self, delay: float | None) -> None:
        if self._loop is not None:
            if self._start_timer is not None:
                self._start_timer.cancel()
                self._start_timer = None
            if delay is not None:
                self._start_timer = self._loop.call_later(delay, self._on_start_due)
                # The hub chose this iteration's poll timeout before the tick added the timer.
                if self._waker is not None:
                    self._waker.wake()
        else:
            self._next_start = None if delay is None else time.monotonic() + delay

    def _on_start_due(self) -> None:
        self._start_timer = None
        self._next_start = None
        self._dirty.update(self._consumed_durable())
        self.timers_stale = True

    def _safety_interval(self) -> float:
        # Nothing announces a group slot that a Node worker frees: look as often as Node's workers.
        if time.monotonic() < self._unheard_until or not self.groups.limits.keys().isdisjoint(
            self._consumed_durable()
        ):
            return min(self.polling_interval, self.node_polling_interval)
        return self.polling_interval

    def _safety_poll(self) -> None:
        self._next_safety = time.monotonic() + self._safety_interval()
        self._mark_all_dirty()

    def _safety_tick(self) -> None:
        if time.monotonic() >= self._next_safety:
            self._safety_poll()

    # -- blocking consumers (celery inspect, Flower's event thread, SimpleQueue) -------------------

    def drain_events(self, connection: Any, timeout: float | None = None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        self._ensure_listener()
        while True:
            self._on_notices(self._poll_listener())
            now = time.monotonic()
            if now >= self._next_safety:
                self._safety_poll()
            if self._next_start is not None and now >= self._next_start:
                self._on_start_due()
            if self._pump():
                return
            wait = self._next_safety - time.monotonic()
            if self._next_start is not None:
                wait = min(wait, self._next_start - time.monotonic())
            if self._subscription is not None and self._subscription.waiting:
                wait = min(wait, 0.05)
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError()
                wait = min(wait, remaining)
            self._notified.wait(max(wait, 0.0))

    # -- the worker's event loop ----------------------------------------------------------------

    def register_with_event_loop(self, connection: Any, loop: Any) -> None:
        if self._loop is not None:
            self.unregister_from_event_loop(connection, self._loop)
        if self._waker is None or not self._waker.owned:
            self._waker = Waker()
        try:
            self._ensure_listener()
        except self.connection_errors as exc:
            _RECONNECTS.lost(exc)
            raise
        self._loop = loop
        if self.settle_batch:
            self.settler.start()
        # The listener thread wakes the loop through the waker when a notification arrives.
        loop.add_reader(self._waker.fileno(), self._on_wake)
        self.fetcher = Fetcher(self.fetch, self._wake_loop, prepare=self._open_consuming)
        self.fetcher.start()
        loop.on_tick.add(self._on_tick)
        # A tick finer than either interval, so each poll comes within a quarter of its due time.
        tick = min(self.polling_interval, self.node_polling_interval) / 4
        self._loop_entries = [loop.call_repeatedly(tick, self._safety_tick), timer_sweep.sweep_every(loop)]
        if self.supervise and self._supervisor is None:
            self._supervisor = Supervisor(
                self.manager,
                supervise_interval=self.supervise_interval,
                monitor_interval=self.monitor_interval,
                maintenance_interval=self.maintenance_interval,
                broadcast_retention=self.broadcast_retention,
                on_jobs_moved=lambda: loop.call_soon(self._mark_all_dirty),
            )
            self._supervisor.start()

    def unregister_from_event_loop(self, connection: Any, loop: Any) -> None:
        if self._waker is not None and self._waker.owned:
            try:
                loop.remove_reader(self._waker.fileno())
            except (KeyError, ValueError, OSError):
                pass
        loop.on_tick.discard(self._on_tick)
        for entry in self._loop_entries:
            entry.cancel()
        self._loop_entries = []
        if self._start_timer is not None:
            self._start_timer.cancel()
            self._start_timer = None
        if self.fetcher is not None:
            fetcher, self.fetcher = self.fetcher, None
            leftover = fetcher.stop()
            if leftover is not None:
                self._hand_back(leftover.jobs)  # written by the settler's stop below
        try:
            self.settler.stop()
        except Exception as exc:  # the database is unreachable: the rest of closing must still run
            logger.warning(
                "pg-boss: acks and hand-backs not written on close (%r); their jobs are retried "
                "once their heartbeat or expiry runs out",
                exc,
            )
        self._loop = None

    def _on_wake(self) -> None:
        assert self._waker is not None
        self._waker.drain()
        if self._notices or self._listen_lost is not None:
            self._on_readable()

    def _on_readable(self) -> None:
        try:
            self._on_notices(self._poll_listener())
            # Fetch right here rather than in the next tick: what is delivered from a reader callback
            # reaches the pool in the very next loop iteration.
            self._pump()
        except self.connection_errors as exc:
            _RECONNECTS.lost(exc)  # Celery reconnects; the next connection waits a backoff delay
            raise

    def _poll_listener(self) -> list[tuple[str, str]]:
        """New notices; once the LISTEN connection was lost, drop the pool's idle connections and
        raise, so Celery reconnects (listening again, all queues dirty) instead of failing once per
        dead pooled connection."""
        lost = self._listen_lost
        if lost is not None:
            if self._listener is not None:
                self._listener.close()
            self.manager.db.close()  # idle ones only; the pool reopens on next use
            raise psycopg2.OperationalError(f"the LISTEN connection was lost: {lost}")
        self._notified.clear()
        notices = []
        while self._notices:
            notices.append(self._notices.popleft())
        return notices

    def _on_tick(self) -> None:
        try:
            if self._notices or self._listen_lost is not None:
                self._on_notices(self._poll_listener())
            delivered = self._pump()
        except self.connection_errors as exc:
            _RECONNECTS.lost(exc)  # Celery reconnects; the next connection waits a backoff delay
            raise
        _RECONNECTS.working()
        if delivered and self._waker is not None:
            # Other tick callbacks (the prefork pool's, which writes tasks to its children) may have
            # run before ours in this iteration: make the loop go round again instead of sleeping.
            self._waker.wake()


#: This process's consumer connections across Celery's restarts (backoff and one log line per outage).
_RECONNECTS = outage.Reconnects(logger, "pg-boss consumer")


def _shutdown_check() -> None:
    """Raise Celery's shutdown when the worker was told to stop while waiting for the database."""
    try:
        from celery.worker.state import maybe_shutdown
    except ImportError:  # plain Kombu
        return
    maybe_shutdown()


def _acks_must_settle() -> bool:
    """Whether a consumer's acks must complete its jobs: yes, unless the current Celery app's result
    backend is pg-boss's. With no result backend (or Redis's, or a plain Kombu consumer) nothing else
    ever writes a job's end: it stayed ``active``, heartbeated, and ran again after its expiry."""
    from celery import current_app

    from transport.backend import PgBossBackend

    try:
        return not isinstance(current_app.backend, PgBossBackend)
    except Exception:  # an app whose backend cannot be built: nothing will settle for us
        logger.warning("could not tell the result backend; acks settle jobs", exc_info=True)
        return True


#: Longest error message stored for a job failed on delivery (the rest is in the worker's log).
MESSAGE_MAX = 2000


def _storable(text: str) -> str:
    """Text PostgreSQL's jsonb can hold (no NUL, no lone surrogate), at most MESSAGE_MAX long."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")
    return text if len(text) <= MESSAGE_MAX else text[:MESSAGE_MAX] + "…"


def _envelope_task(data: Any) -> str | None:
    env = data.get(envelope.RESERVED_KEY) if isinstance(data, dict) else None
    return env.get("task") if isinstance(env, dict) else None


def _task_time_limits(name: str | None) -> tuple[float | None, float | None]:
    """``(hard, soft)`` time limits of the current Celery app's task ``name`` (its own, else the
    app's ``task_time_limit``/``task_soft_time_limit``); ``(None, None)`` outside Celery."""
    if name is None:
        return None, None
    try:
        from celery import current_app
    except ImportError:  # plain Kombu
        return None, None
    task = current_app.tasks.get(name)
    if task is None:
        return current_app.conf.task_time_limit, current_app.conf.task_soft_time_limit
    return task.time_limit, task.soft_time_limit


def _send_options(job: envelope.Job) -> dict[str, Any]:
    """The manager's send options for a job made from a Kombu message."""
    options: dict[str, Any] = {"id": job.id, "priority": job.priority, "start_after": job.start_after}
    if job.keep_until is not None:
        options["keep_until"] = job.keep_until
    options.update(job.options)  # the pgboss namespace: validated by the manager's send
    return options


def _starts_later(start_after: Any) -> bool:
    """Whether a send's ``start_after`` (datetime, ISO text or seconds) is in the future."""
    if isinstance(start_after, int | float) and not isinstance(start_after, bool):
        return start_after > 0
    when = envelope.parse_time(start_after)
    return when is not None and when > _utcnow()


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _on_celery_refusal(sender: Any = None, message: Any = None, exc: Any = None, **kwargs: Any) -> None:
    """Celery refused a delivered job (``task_rejected``: not a task message, or an invalid one;
    ``task_unknown``: no such task here) and rejected its message, which only lets go of it, so
    pg-boss would run it again after its heartbeat timeout and meet the same refusal: fail it now,
    for good, saying why."""
    channel = getattr(message, "channel", None)
    info = getattr(message, "delivery_info", None) or {}
    attempt, queue = info.get(envelope.ATTEMPT_HEADER), info.get("routing_key")
    if not isinstance(channel, Channel) or not isinstance(attempt, int) or not queue:
        return  # not a pg-boss job (a transient queue's message, another transport)
    if "name" in kwargs:
        reason = MalformedJob(f"no task named {kwargs['name']!r} is registered in this worker")
    elif exc is None:
        reason = MalformedJob("not a Celery task message (no task header); Celery cannot run it")
    else:
        reason = MalformedJob(f"Celery refused it ({type(exc).__name__}: {exc})")
    job_id = str(message.delivery_tag).partition("/")[0]
    try:
        channel.connection.poison(queue, job_id, attempt, reason)
    except Exception as error:  # the job comes back after its heartbeat timeout and is refused again
        logger.warning("could not fail refused job %s: %r", job_id, error)


def _connect_celery_signals() -> None:
    try:
        from celery import signals
    except ImportError:  # plain Kombu
        return
    signals.task_rejected.connect(_on_celery_refusal, weak=False, dispatch_uid="pgboss-refused")
    signals.task_unknown.connect(_on_celery_refusal, weak=False, dispatch_uid="pgboss-unknown")


register_with_celery()
_connect_celery_signals()
