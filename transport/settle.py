"""What a consumer's ack, reject and restore do to job rows, batched per event-loop tick.

By the contract, the result backend settles a job run by Celery, so an ack is bookkeeping only. The
writes kept here are:

* ``restore`` (warm shutdown, channel close): the job goes back to ``created`` untouched, fenced on
  the attempt that was fetched, as if never fetched;
* ``requeue`` (``reject(requeue=True)``, e.g. ``Reject(requeue=True)``, ``reject_on_worker_lost``):
  the same as a restore. As in AMQP, a requeue is no failed attempt: ``retry_count`` stays;
* ``reject`` (``reject(requeue=False)`` while the result backend is pg-boss's: Celery's ``Reject``, a
  message it cannot decode or does not accept): the job fails for good, retries left or not
  (its dead letter still applies), fenced on its attempt, so a failure the backend wrote is kept;
* with ``settle_on_ack`` (a result backend that is not pg-boss): ack completes the job (or cancels
  it when Celery revoked the task), ``reject(requeue=False)`` fails it.

In a worker, writes pile up from any thread and a settle thread writes them in one statement per
queue and kind, so the event loop never waits for them; a batch gathers for a short window after its
first write arrives, so a busy worker settles many acks per statement (a drain's acks come about
1 ms apart: without the window nearly every ack was a statement of its own). Without an event loop
every write happens at once. A failed write is kept and retried. Restored and
requeued queues are NOTIFYed so other workers fetch them without waiting for their safety poll.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import threading
import time
from collections import OrderedDict, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from transport.manager import FetchedJob, JobManager
from transport.outage import Backoff
from transport.service import Service
from transport.sessions import Sessions

logger = logging.getLogger(__name__)

#: Outputs of failures the transport itself decides.
REJECTED = {"value": {"message": "rejected by the consumer"}}
#: A message Celery rejected without requeue while the pg-boss backend records results: an error in
#: Node's shape, so every job failed without running reads the same way (see transport.wellformed).
REFUSED = {
    "name": "Rejected",
    "message": "Celery rejected the message without requeue (Reject, a task this worker does not know, "
    "or a message it cannot run); the worker's log says which",
    "stack": "",
}
#: Seconds a settle batch gathers writes after the first one arrives: a job's end is committed at
#: most this much later, and a drain writes several acks per statement instead of one each.
SETTLE_WINDOW = 0.002


@dataclass(frozen=True, slots=True)
class Held:
    """A job this process fetched and has not settled: enough to settle it later."""

    queue: str
    id: str
    attempt: int
    retry_limit: int
    start_after: dt.datetime
    data: Any

    @classmethod
    def of(cls, job: FetchedJob) -> Held:
        """A fetched job, held in the attempt it was fetched with."""
        return cls(job.name, job.id, job.retry_count, job.retry_limit, job.start_after, job.data)


class Revoked:
    """Task ids Celery revoked in this process (``task_revoked``), so an ack cancels instead of completing."""

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, task_id: str) -> None:
        with self._lock:
            self._ids[task_id] = None
            while len(self._ids) > self.size:
                self._ids.popitem(last=False)

    def pop(self, task_id: str) -> bool:
        """Whether ``task_id`` was revoked (forgetting it)."""
        with self._lock:
            if task_id not in self._ids:
                return False
            del self._ids[task_id]
            return True


class Settler(Service):
    """Writes what acks, rejects and restores do to job rows. Started (:meth:`start`), it writes from
    its thread: what piles up while one batch is written goes in the next, so a busy worker settles
    many acks per statement and its event loop never waits for them; stopped, every call writes."""

    thread_name = "pgboss-settle"

    def __init__(
        self,
        manager: JobManager,
        *,
        wake: Callable[[str], None],
        revoked: Revoked | None = None,
        session: Sessions | None = None,
        window: float = SETTLE_WINDOW,
    ) -> None:
        super().__init__(logger, "pg-boss settle", backoff=Backoff(first=0.5, cap=10.0), error_pause=1.0)
        self.manager = manager
        #: Seconds the settle thread gathers a batch (see :data:`SETTLE_WINDOW`).
        self.window = window
        #: Autocommit connections for the one-statement writes (None: the manager's pool).
        self.session = session
        #: Called with a queue name once a freed slot of it is committed (see :meth:`wake_after`);
        #: the statements that make jobs runnable (retry, restore) announce them themselves.
        self.wake = wake
        self.revoked = revoked or Revoked()
        self._complete: list[Held] = []
        self._fail: list[Held] = []
        self._reject: list[Held] = []
        self._restore: list[Held] = []
        #: Queues to wake once the writes pending now are committed (capped queues' freed slots).
        self._wake_after: list[str] = []

    # -- modes ----------------------------------------------------------------------------------

    @property
    def batching(self) -> bool:
        """True while a settle thread writes in the background (else every call writes at once)."""
        return self.running

    def stop(self, timeout: float | None = 10.0, *, join: bool = True) -> None:
        was_running = self.running
        super().stop(timeout, join=join)
        if was_running:
            self.flush()  # whatever came in after the thread's last batch

    def run(self) -> None:
        while self.wait_until(lambda: self.pending):
            deadline = time.monotonic() + self.window
            while (remaining := deadline - time.monotonic()) > 0:
                if not self.wait_until(lambda: False, remaining):  # only stop() ends the window early
                    return
            self.attempt(self.flush)

    # -- writes ---------------------------------------------------------------------------------

    def complete(self, held: Held) -> None:
        self._add(self._complete, held)

    def fail(self, held: Held) -> None:
        self._add(self._fail, held)

    def requeue(self, held: Held) -> None:
        self._add(self._restore, held)  # not a failed attempt: back as if never fetched

    def reject(self, held: Held) -> None:
        """Fail for good: Celery rejected the message without requeue."""
        self._add(self._reject, held)

    def restore(self, held: Held) -> None:
        self._add(self._restore, held)

    def wake_after(self, queue: str) -> None:
        """Wake ``queue``'s consumers everywhere once what is pending now is written: a job of a
        capped queue ended, so a slot is free for whichever worker the cap held back."""
        self._add(self._wake_after, queue)

    @property
    def pending(self) -> bool:
        return bool(self._complete or self._fail or self._reject or self._restore or self._wake_after)

    def _add(self, bucket: list[Any], item: Any) -> None:
        with self.lock:
            first = not self.pending
            bucket.append(item)
            if first:  # the thread waits for a batch's first write, then for its window to pass
                self.lock.notify_all()
        if not self.batching:
            self.flush()

    def flush(self) -> None:
        """Write everything pending; on failure what is still unwritten is kept for the next flush."""
        with self.lock:
            complete, self._complete = self._complete, []
            fail, self._fail = self._fail, []
            reject, self._reject = self._reject, []
            restore, self._restore = self._restore, []
            wake_after, self._wake_after = self._wake_after, []
        if not (complete or fail or reject or restore or wake_after):
            return
        try:
            self._write(complete, fail, reject, restore)
        except BaseException:
            with self.lock:  # the lists hold only what no committed statement wrote (see _write)
                self._complete[:0], self._fail[:0] = complete, fail
                self._reject[:0], self._restore[:0] = reject, restore
                self._wake_after[:0] = wake_after
            raise
        for queue in dict.fromkeys(wake_after):
            self.wake(queue)

    def _write(self, complete: list[Held], fail: list[Held], reject: list[Held], restore: list[Held]) -> None:
        """Each statement commits as it ends, and what it wrote leaves its list then: a failure part
        way leaves the lists holding only the unwritten rest. Written twice, a hand-back could pull a
        job back to ``created`` from a worker that fetched it meanwhile (a restore clears
        ``started_on``, so the refetch keeps the ``retry_count`` that fences the restore)."""
        with self._connection() as conn:
            for queue, held in _by_queue(complete).items():
                self._complete_queue(queue, held, conn)
                _drop(complete, held)
            for queue, held in _by_queue(fail).items():
                attempts = {h.id: h.attempt for h in held}
                self.manager.fail(queue, list(attempts), REJECTED, attempts=attempts, conn=conn)
                _drop(fail, held)
            for queue, held in _by_queue(reject).items():
                attempts = {h.id: h.attempt for h in held}
                self.manager.fail(queue, list(attempts), REFUSED, attempts=attempts, retry=False, conn=conn)
                _drop(reject, held)
        by_attempt: dict[tuple[str, int], list[Held]] = defaultdict(list)
        for held in restore:
            by_attempt[held.queue, held.attempt].append(held)
        for (queue, attempt), held in by_attempt.items():
            self.manager.restore(queue, [h.id for h in held], retry_count=attempt)
            _drop(restore, held)

    def _connection(self) -> Any:
        if self.session is None:
            return contextlib.nullcontext(None)
        return self.session.connection()

    def _complete_queue(self, queue: str, held: list[Held], conn: Any) -> None:
        """Complete one queue's acked jobs; those Celery revoked are cancelled instead."""
        cancel = [h.id for h in held if self.revoked.pop(h.id)]
        try:
            if cancel:
                self.manager.cancel(queue, cancel, conn=conn)
        except BaseException:
            for task_id in cancel:  # still to do: the retry must cancel them too
                self.revoked.add(task_id)
            raise
        done = [(h.id, None, h.attempt) for h in held if h.id not in cancel]
        if done:
            self.manager.complete(queue, done, conn=conn)


def _drop(items: list[Held], written: list[Held]) -> None:
    """Take the ``written`` entries (these very objects) out of ``items``."""
    gone = {id(h) for h in written}
    items[:] = [h for h in items if id(h) not in gone]


def _by_queue(items: list[Held]) -> dict[str, list[Held]]:
    grouped: dict[str, list[Held]] = defaultdict(list)
    for held in items:
        grouped[held.queue].append(held)
    return grouped
