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
  uses it), a group, chord header or ``chunks`` is one INSERT per queue
  (:meth:`transport.channel.Channel.begin_batch`).
* Push, not polling: a LISTEN socket on the worker's event loop (pg-boss's own NOTIFY channel, so
  Node inserts wake Python workers), a timer for the next ``start_after``, and a slow safety poll.
  A woken worker fetches up to its free prefetch budget in one statement: inline when it holds
  nothing, else on its fetch thread (:mod:`transport.fetcher`) while the loop feeds the pool.
* At-least-once across worker death: the worker's main process heartbeats every job it holds, and a
  supervisor (in every worker, sharing Node's claims) retries jobs whose heartbeat stopped.

Parts
=====
This module is the thin :class:`Transport`: options, connection (the process's hub), driver
information, and the connection's parts, built here and shared by its channels:
:mod:`transport.channel` (Channel and QoS: declaring, publishing, consuming, the jobs a consumer
holds), :mod:`transport.poller` (the pump, timers, notices and event-loop registration),
:mod:`transport.publisher` (sends), :mod:`transport.claims` (fetches), :mod:`transport.routes`
(named exchanges), :mod:`transport.mailboxes` (transient queues), :mod:`transport.settle` and
:mod:`transport.heartbeat`. What a Celery worker tells the transport arrives through
:mod:`transport.worker_hooks`; without one, :mod:`transport.worker_state`'s defaults hold.

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
* ``fetch_cooldown``: seconds (default 0.01) a queue's insert notices wait after a notice-driven
  fetch of it came back empty (another consumer took the job); notices meanwhile become one fetch
  when it ends. A fetch that finds jobs ends it, and a notice after a quiet spell fetches at once,
  so an idle worker's pickup never waits; 0 turns it off. Every consumer of a queue hears each
  insert's NOTIFY, and without it each would spend a fetch (a commit) on every job one of them takes.
* ``refill_fraction``: while it holds jobs, a consumer fetches again once this fraction of its
  prefetch count is free (default 0.5: fewer, larger fetches); an idle one fetches at once.
* ``synchronous_commit``: wait for WAL flush on fetch and ack-settlement (default False: a lost
  claim or completion only means the job runs again, which at-least-once allows anyway).
* ``durable_publish``: a publish returns once its job is on disk (default True): the insert commits
  asynchronously, so its NOTIFY wakes the workers at once, and the publish then waits for the WAL
  flush in an empty commit of its own. False skips that wait: faster enqueue, and a server crash may
  lose the last fraction of a second of sends, as Redis without AOF fsync does.
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

from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg2
from kombu.transport import virtual

from transport import outage
from transport.bindings import Bindings
from transport.channel import Channel, Message, QoS
from transport.claims import Claims
from transport.db import dsn_from_url
from transport.exceptions import PgBossError
from transport.fanout import BroadcastLog
from transport.groups import GroupFetcher, parse_group_limits
from transport.heartbeat import Heartbeat
from transport.hub import apply_defaults, hub_for
from transport.mailboxes import Mailboxes
from transport.poller import RECONNECTS, Poller
from transport.publisher import Publisher
from transport.queue_tasks import QueueTasks
from transport.redact import redact_url, split_password
from transport.routes import Routes
from transport.sessions import ASYNC_COMMIT, Sessions
from transport.settle import SETTLE_WINDOW, Settler
from transport.shared import DRIVER_TYPE, PREPARED_STATEMENTS, register_with_celery, revoked_ids
from transport.worker_state import WORKER

__all__ = ["Channel", "Message", "QoS", "Transport"]


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
    #: Seconds a queue's insert notices wait after a notice-driven fetch of it found nothing (another
    #: consumer took the job): the herd of consumers one NOTIFY wakes shrinks to those that find work.
    fetch_cooldown: float = 0.01
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
        "fetch_cooldown",
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
        # The connection's parts, which its channels and its poller share.
        self.log = BroadcastLog(self.manager)
        self.bindings = Bindings(self.manager)
        self.heartbeat = Heartbeat(
            self.manager,
            default_seconds=float(options.get("heartbeat_seconds") or Channel.heartbeat_seconds or 30),
            hub=self.hub,
        )
        self.revoked = revoked_ids()
        #: Autocommit checkouts: publishes (async commit, then the flush wait when durable), and
        #: fetches and settlements (async commit unless synchronous_commit).
        self.publishing = Sessions(self.manager.db, ASYNC_COMMIT, flush=self.durable_publish)
        self.consuming = Sessions(self.manager.db, None if self.synchronous_commit else ASYNC_COMMIT)
        self.queue_tasks = QueueTasks(self.task_for_queue)
        self.groups = GroupFetcher(self.manager, parse_group_limits(options.get("group_concurrency")))
        self.mailboxes = Mailboxes(self.log, self.state, gap_timeout=self.broadcast_gap_timeout)
        self.routes = Routes(self.bindings, self.state, self.mailboxes)
        self.publisher = Publisher(self.manager, self.hub, self.schema, self.publishing, self.log)
        self.claims = Claims(
            self.manager, self.consuming, self.groups, synchronous_commit=self.synchronous_commit
        )
        self.poller = Poller(self)
        self.settler = Settler(
            self.manager,
            wake=self.poller.wake,
            revoked=self.revoked,
            session=self.consuming,
            window=float(self.settle_window),
        )

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

    def establish_connection(self) -> Transport:
        self._wait_for_database()
        self.hub.ensure_installed(self.manager, PREPARED_STATEMENTS)
        return super().establish_connection()

    def _wait_for_database(self) -> None:
        """Once this process's consumer has lost the database, wait a backoff delay (growing, with
        jitter), then until the database answers, before connecting again: Celery restarts its
        consumer at once after every connection error, and a server out of connections was asked
        several times a second by every worker. One log line per outage (see transport.outage)."""
        if not RECONNECTS.troubled:
            return
        while True:
            outage.sleep(RECONNECTS.delay(), WORKER.check_shutdown)
            try:
                self.manager.now()
            except self.connection_errors as exc:
                RECONNECTS.lost(exc)
            else:
                return

    def close_connection(self, connection: Any) -> None:
        try:
            super().close_connection(connection)
        finally:
            self.poller.close()
            # Jobs whose tasks run on (the connection was lost, not the worker) stay heartbeated
            # until their tasks end: the result backend settles them (see Channel._restore_tags).
            self.heartbeat.retire(WORKER.running_tasks)
            if not self._released:
                self._released = True
                self.hub.release()

    # -- the loop, the poller's -------------------------------------------------------------------

    def drain_events(self, connection: Any, timeout: float | None = None) -> None:
        self.poller.drain_events(timeout)

    def register_with_event_loop(self, connection: Any, loop: Any) -> None:
        self.poller.register(loop)

    def unregister_from_event_loop(self, connection: Any, loop: Any) -> None:
        self.poller.unregister(loop)


register_with_celery()
