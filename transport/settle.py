"""What a consumer's ack, reject and restore do to job rows, batched per event-loop tick.

By the contract, the result backend settles a job run by Celery, so an ack is bookkeeping only. The
writes kept here are:

* ``restore`` (warm shutdown, channel close): the job goes back to ``created`` untouched, fenced on
  the attempt that was fetched, as if never fetched;
* ``requeue`` (``reject(requeue=True)``, e.g. ``reject_on_worker_lost``): the job goes back to
  ``retry`` runnable now, so the next fetch counts an attempt, and once ``retry_count`` has reached
  ``retry_limit`` it is failed instead (the poison-message cap);
* with ``settle_on_ack`` (a result backend that is not pg-boss): ack completes the job (or cancels
  it when Celery revoked the task), ``reject(requeue=False)`` fails it.

Writes pile up from any thread and are flushed in one statement per queue and kind by the event
loop's tick (or at once when nothing drives a loop). Restored and requeued queues are NOTIFYed so
other workers fetch them without waiting for their safety poll.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections import OrderedDict, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from transport.manager import JobManager

logger = logging.getLogger(__name__)

#: Outputs of failures the transport itself decides.
REJECTED = {"value": {"message": "rejected by the consumer"}}
REQUEUE_LIMIT = {"value": {"message": "requeued after its last attempt"}}


@dataclass(frozen=True, slots=True)
class Held:
    """A job this process fetched and has not settled: enough to settle it later."""

    queue: str
    id: str
    attempt: int
    retry_limit: int
    start_after: dt.datetime
    data: Any


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


class Settler:
    def __init__(
        self,
        manager: JobManager,
        *,
        wake: Callable[[str], None],
        revoked: Revoked | None = None,
        synchronous_commit: bool = False,
    ) -> None:
        self.manager = manager
        #: Called with a queue name after jobs of it became runnable again.
        self.wake = wake
        self.revoked = revoked or Revoked()
        self.synchronous_commit = synchronous_commit
        #: False: every call writes at once (no event loop will flush).
        self.batch = False
        self._lock = threading.Lock()
        self._complete: list[Held] = []
        self._fail: list[Held] = []
        self._requeue: list[Held] = []
        self._restore: list[Held] = []

    def complete(self, held: Held) -> None:
        self._add(self._complete, held)

    def fail(self, held: Held) -> None:
        self._add(self._fail, held)

    def requeue(self, held: Held) -> None:
        self._add(self._requeue, held)

    def restore(self, held: Held) -> None:
        self._add(self._restore, held)

    @property
    def pending(self) -> bool:
        return bool(self._complete or self._fail or self._requeue or self._restore)

    def _add(self, bucket: list[Held], held: Held) -> None:
        with self._lock:
            bucket.append(held)
        if not self.batch:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        with self._lock:
            complete, self._complete = self._complete, []
            fail, self._fail = self._fail, []
            requeue, self._requeue = self._requeue, []
            restore, self._restore = self._restore, []
        woken: set[str] = set()
        self._flush_complete(complete)
        for queue, items in _by_queue(fail).items():
            attempts = {h.id: h.attempt for h in items}
            self.manager.fail(queue, list(attempts), REJECTED, attempts=attempts)
        for held in requeue:
            if held.attempt >= held.retry_limit:
                self.manager.fail(held.queue, [held.id], REQUEUE_LIMIT, attempts={held.id: held.attempt})
            elif self.manager.retry_in_place(
                held.queue, held.id, start_after=held.start_after, data=held.data
            ):
                woken.add(held.queue)
        by_attempt: dict[tuple[str, int], list[str]] = defaultdict(list)
        for held in restore:
            by_attempt[held.queue, held.attempt].append(held.id)
        for (queue, attempt), ids in by_attempt.items():
            if self.manager.restore(queue, ids, retry_count=attempt):
                woken.add(queue)
        for queue in woken:
            self.wake(queue)

    def _flush_complete(self, items: list[Held]) -> None:
        for queue, held in _by_queue(items).items():
            cancel = [h.id for h in held if self.revoked.pop(h.id)]
            if cancel:
                self.manager.cancel(queue, cancel)
            done = [(h.id, None, h.attempt) for h in held if h.id not in cancel]
            if done:
                self.manager.complete(queue, done, synchronous_commit=self.synchronous_commit)


def _by_queue(items: list[Held]) -> dict[str, list[Held]]:
    grouped: dict[str, list[Held]] = defaultdict(list)
    for held in items:
        grouped[held.queue].append(held)
    return grouped
