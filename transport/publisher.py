"""Publishing to pg-boss queues: a Kombu message becomes a job as Node's ``send()`` makes one, a
group one INSERT per queue, and what follows a send (a timer notice for a later start, a retry or
a replaced task taken up in the id's existing row) happens here too."""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from transport import envelope
from transport.exceptions import QueueNotFound
from transport.fanout import BroadcastLog
from transport.hub import Hub
from transport.manager import EncodedJob, JobManager
from transport.names import TIMER_NOTICE
from transport.sessions import Sessions

logger = logging.getLogger(__name__)

QueueOptions = Callable[[str], Mapping[str, Any]]


class Pending(NamedTuple):
    """A message of a batch as the batch holds it: checked and serialised (see :class:`Batch`)."""

    queue: str
    encoded: EncodedJob
    id: str | None
    #: The send's ``start_after`` option (a later start gets a timer notice).
    start_after: Any
    #: What :meth:`Publisher._sent` reads of a message whose id was refused.
    job_start_after: dt.datetime | None
    attempt: int | None
    #: The Kombu message, kept only for a queue this process had not declared (another process's
    #: transient queue gets it as a broadcast).
    message: dict[str, Any] | None

    def job(self) -> envelope.Job:
        """The job again, for the rare paths after the insert (a refused id, a queue to declare)."""
        data = json.loads(self.encoded.text).get("data")
        return envelope.Job(
            data=data, id=self.id, priority=0, start_after=self.job_start_after, keep_until=None,
            retries=0, attempt=self.attempt,
        )  # fmt: skip


class Batch:
    """The publishes a channel holds while a producer is out (:mod:`transport.batch_publish`).

    The first is kept as it came: alone (one ``delay()``) it takes the one-job statement. From the
    second on, each message is checked and serialised as it arrives (the first one then too), so a
    long group holds one string per message rather than its dicts, which Python's garbage collector
    would walk again and again while Celery builds the rest. A message that fails the check is kept
    as its error, raised when the batch is sent: a group with one bad member commits nothing.
    """

    def __init__(self, publisher: Publisher) -> None:
        self.publisher = publisher
        self.first: tuple[str, envelope.Job, dict[str, Any]] | None = None
        self.held: list[Pending] = []
        self.error: Exception | None = None

    def add(self, queue: str, job: envelope.Job, message: dict[str, Any]) -> None:
        if self.error is not None:
            return
        if self.first is None and not self.held:
            self.first = (queue, job, message)
            return
        try:
            if self.first is not None:
                first, self.first = self.first, None
                self.held.append(self.publisher.hold(*first))
            self.held.append(self.publisher.hold(queue, job, message))
        except Exception as exc:  # raised by send(), once Celery is done adding
            self.error = exc

    def send(self, queue_options: QueueOptions) -> None:
        """Insert what is held (one INSERT per queue, all committed together); raises when the send
        failed, as each publish would have, and then nothing of the batch is committed."""
        if self.error is not None:
            raise self.error
        if self.first is not None:
            self.publisher.send_job(*self.first, queue_options)
        elif self.held:
            self.publisher.send_held(self.held, queue_options)


@dataclass
class BatchOutcome:
    """What a batch's inserts leave to do once it is committed (see :meth:`Publisher.after_batch`);
    the messages inserted as they are need nothing more, and are not kept."""

    #: Queues that got a job starting later: each hears one timer notice.
    timers: set[str] = field(default_factory=set)
    #: Messages whose id was not inserted (a retry, a replaced task, a duplicate).
    refused: list[Pending] = field(default_factory=list)
    #: Messages to queues pg-boss does not have, by queue.
    unknown: dict[str, list[Pending]] = field(default_factory=dict)


class Publisher:
    def __init__(
        self, manager: JobManager, hub: Hub, schema: str, session: Sessions, log: BroadcastLog
    ) -> None:
        self.manager = manager
        self.hub = hub
        self.schema = schema
        #: One-round-trip checkouts for sends (durable or async commit, as the transport says).
        self.session = session
        #: Where a message to another process's transient queue goes.
        self.log = log

    # -- queues this process declared -------------------------------------------------------------

    def declare_durable(self, queue: str, options: Mapping[str, Any]) -> None:
        declared = self.hub.declared(self.schema)
        if queue in declared:
            return
        self.manager.create_queue(queue, **{k: v for k, v in options.items() if v is not None})
        declared.add(queue)

    def forget_durable(self, queue: str) -> None:
        self.hub.declared(self.schema).discard(queue)

    # -- sends ------------------------------------------------------------------------------------

    def send_job(
        self, queue: str, job: envelope.Job, message: dict[str, Any], queue_options: QueueOptions
    ) -> None:
        options = send_options(job)
        try:
            with self.session.connection() as conn:
                ids = self.manager.send(queue, job.data, conn=conn, **options)
                self.session.durable(conn)
        except QueueNotFound:
            if not self._declare_for_send(queue, message, queue_options):
                return
            ids = self.manager.send(queue, job.data, **options)
        self._sent(queue, job, options, inserted=bool(ids))

    def batch(self) -> Batch:
        return Batch(self)

    def hold(self, queue: str, job: envelope.Job, message: dict[str, Any]) -> Pending:
        """A message of a batch, checked and serialised now (:class:`Batch`)."""
        options = send_options(job)
        keep = None if queue in self.hub.declared(self.schema) else message
        return Pending(
            queue, self.manager.encode_job({"data": job.data, **options}), job.id,
            options.get("start_after"), job.start_after, job.attempt, keep,
        )  # fmt: skip

    def send_held(self, held: Sequence[Pending], queue_options: QueueOptions) -> None:
        """Publish a batch with one INSERT per queue, all committed together before this returns;
        each message then gets what :meth:`send_job` gives one (a retry in place, a replaced id
        renewed, a timer)."""
        outcome = BatchOutcome()
        if len({item.queue for item in held}) == 1:
            with self.session.connection() as conn:  # autocommit: the one INSERT commits as it ends
                self.insert(conn, held, outcome)
                self.session.durable(conn)
        else:
            with self.session.transaction() as conn:  # a group over several queues: all or nothing
                self.insert(conn, held, outcome)
                self.session.durable(conn)
                conn.commit()
        self.after_batch(outcome, queue_options)

    def insert(self, conn: Any, held: Sequence[Pending], outcome: BatchOutcome) -> None:
        """Insert a batch on ``conn``, one statement per queue, noting in ``outcome`` what is left to
        do once it is committed (:meth:`after_batch`). Commits nothing."""
        by_queue: dict[str, list[Pending]] = {}
        for item in held:
            by_queue.setdefault(item.queue, []).append(item)
        for queue, items in by_queue.items():
            try:
                inserted = set(self.manager.send_encoded(queue, [item.encoded for item in items], conn=conn))
            except QueueNotFound as exc:
                if exc.queue not in (None, queue):  # a dead letter queue: the batch fails
                    raise
                outcome.unknown[queue] = items  # nothing inserted, no error: the transaction goes on
                continue
            for item in items:
                if item.id is None or item.id not in inserted:
                    outcome.refused.append(item)
                elif queue not in outcome.timers and starts_later(item.start_after):
                    outcome.timers.add(queue)

    def after_batch(self, outcome: BatchOutcome, queue_options: QueueOptions) -> None:
        """Once a batch is committed: its messages to queues pg-boss did not have, a timer notice for
        each queue that got a job starting later, and what follows a message whose id was refused."""
        for queue, items in outcome.unknown.items():
            if any(item.message is None for item in items):  # declared here when held: ours, deleted since
                self.forget_durable(queue)
                self.declare_durable(queue, queue_options(queue))
            elif not self._declare_for_send(queue, items[0].message, queue_options):
                for item in items[1:]:  # another process's transient queue: the first was broadcast
                    self.log.publish("", queue, item.message)
                continue
            for item in items:
                ids = self.manager.send_encoded(queue, [item.encoded])
                self._sent(queue, item.job(), {"start_after": item.start_after}, inserted=bool(ids))
        for queue in outcome.timers:  # the notice is the same for every job of the queue
            self.notify_timer(queue)
        for item in outcome.refused:
            self._sent(item.queue, item.job(), {}, inserted=False)

    def _declare_for_send(self, queue: str, message: dict[str, Any], queue_options: QueueOptions) -> bool:
        """After a send met no pg-boss queue: declare it when this process declared it to Kombu (it
        was deleted meanwhile) and say so; otherwise it is another process's transient queue (an RPC
        reply queue...), which gets the message as a broadcast."""
        if queue not in self.hub.declared(self.schema):
            self.log.publish("", queue, message)
            return False
        self.hub.declared(self.schema).discard(queue)
        self.declare_durable(queue, queue_options(queue))
        return True

    def _sent(self, queue: str, job: envelope.Job, options: Mapping[str, Any], *, inserted: bool) -> None:
        """What follows a send: a timer for a later start, or, when no row was inserted, the id's
        existing row taken up again (a retry, a replaced task) or the deduplication logged."""
        if inserted:
            if starts_later(options.get("start_after")):
                self.notify_timer(queue)
            return
        # The id exists: Celery's Task.retry() republishes the same task id -> same row, back to retry.
        start_after = job.start_after or utcnow()
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

    # -- notices ----------------------------------------------------------------------------------

    def announce(self, queue: str) -> None:
        """Tell every consumer (Node's too) that jobs of ``queue`` are runnable."""
        self._notify(self.manager.channel, queue)

    def notify_timer(self, queue: str) -> None:
        """Tell Python consumers that a job of ``queue`` becomes runnable later (an ETA)."""
        self._notify(self.log.channel, TIMER_NOTICE + queue)

    def _notify(self, channel: str, payload: str) -> None:
        self.manager.exchanges.wake(channel, payload)


def send_options(job: envelope.Job) -> dict[str, Any]:
    """The manager's send options for a job made from a Kombu message."""
    options: dict[str, Any] = {"id": job.id, "priority": job.priority, "start_after": job.start_after}
    if job.keep_until is not None:
        options["keep_until"] = job.keep_until
    options.update(job.options)  # the pgboss namespace: validated by the manager's send
    return options


def starts_later(start_after: Any) -> bool:
    """Whether a send's ``start_after`` (datetime, ISO text or seconds) is in the future."""
    if isinstance(start_after, int | float) and not isinstance(start_after, bool):
        return start_after > 0
    when = envelope.parse_time(start_after)
    return when is not None and when > utcnow()


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
