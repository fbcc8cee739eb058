"""Publishing to pg-boss queues: a Kombu message becomes a job as Node's ``send()`` makes one, a
group one INSERT per queue, and what follows a send (a timer notice for a later start, a retry or
a replaced task taken up in the id's existing row) happens here too."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from transport import envelope
from transport.exceptions import QueueNotFound
from transport.fanout import BroadcastLog
from transport.hub import Hub
from transport.manager import JobManager
from transport.names import TIMER_NOTICE
from transport.sessions import Sessions

logger = logging.getLogger(__name__)

QueueOptions = Callable[[str], Mapping[str, Any]]
#: A message of a batch: its job, the Kombu message, the job's send options.
Sent = tuple[envelope.Job, dict[str, Any], dict[str, Any]]
#: One queue's messages of a batch and their statement (:meth:`Publisher.prepare`).


@dataclass
class BatchOutcome:
    """What a batch's inserts leave to do once it is committed (see :meth:`Publisher.after_batch`);
    the messages inserted as they are need nothing more, and are not kept."""

    #: Queues that got a job starting later: each hears one timer notice.
    timers: set[str] = field(default_factory=set)
    #: Messages whose id was not inserted (a retry, a replaced task, a duplicate), with their queue.
    refused: list[tuple[str, Sent]] = field(default_factory=list)
    #: Messages to queues pg-boss does not have.
    unknown: dict[str, list[Sent]] = field(default_factory=dict)


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
        except QueueNotFound:
            if not self._declare_for_send(queue, message, queue_options):
                return
            ids = self.manager.send(queue, job.data, **options)
        self._sent(queue, job, options, inserted=bool(ids))

    def send_jobs(
        self, batch: Sequence[tuple[str, envelope.Job, dict[str, Any]]], queue_options: QueueOptions
    ) -> None:
        """Publish many messages with one INSERT per queue, all committed together before this
        returns (a Celery group sent through :class:`transport.batch_publish.BatchingProducerPool`);
        each message then gets what :meth:`send_job` gives one (a retry in place, a replaced id
        renewed, a timer)."""
        if len(batch) == 1:
            self.send_job(*batch[0], queue_options)
            return
        outcome = BatchOutcome()
        if len({queue for queue, _job, _message in batch}) == 1:
            with self.session.connection() as conn:  # autocommit: the one INSERT commits as it ends
                self.insert(conn, batch, outcome)
        else:
            with self.session.transaction() as conn:  # a group over several queues: all or nothing
                self.insert(conn, batch, outcome)
                conn.commit()
        self.after_batch(outcome, queue_options)

    def insert(
        self, conn: Any, batch: Sequence[tuple[str, envelope.Job, dict[str, Any]]], outcome: BatchOutcome
    ) -> None:
        """Insert a batch on ``conn``, one statement per queue, noting in ``outcome`` what is left to
        do once it is committed (:meth:`after_batch`). Commits nothing."""
        by_queue: dict[str, list[Sent]] = {}
        for queue, job, message in batch:
            by_queue.setdefault(queue, []).append((job, message, send_options(job)))
        for queue, items in by_queue.items():
            jobs = [{"data": job.data, **options} for job, _message, options in items]
            try:
                inserted = set(self.manager.send_many(queue, jobs, conn=conn))
            except QueueNotFound as exc:
                if exc.queue not in (None, queue):  # a dead letter queue: the batch fails
                    raise
                outcome.unknown[queue] = items  # nothing inserted, no error: the transaction goes on
                continue
            for item in items:
                job, _message, options = item
                if job.id is None or job.id not in inserted:
                    outcome.refused.append((queue, item))
                elif queue not in outcome.timers and starts_later(options.get("start_after")):
                    outcome.timers.add(queue)

    def after_batch(self, outcome: BatchOutcome, queue_options: QueueOptions) -> None:
        """Once a batch is committed: its messages to queues pg-boss did not have, a timer notice for
        each queue that got a job starting later, and what follows a message whose id was refused."""
        for queue, items in outcome.unknown.items():  # declared (or broadcast), then sent one by one
            if self._declare_for_send(queue, items[0][1], queue_options):
                for job, _message, options in items:
                    ids = self.manager.send(queue, job.data, **options)
                    self._sent(queue, job, options, inserted=bool(ids))
            else:  # another process's transient queue: _declare_for_send broadcast the first
                for _job, message, _options in items[1:]:
                    self.log.publish("", queue, message)
        for queue in outcome.timers:  # the notice is the same for every job of the queue
            self.notify_timer(queue)
        for queue, (job, _message, options) in outcome.refused:
            self._sent(queue, job, options, inserted=False)

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
