"""A prefork worker's results, written by its main process many per statement.

Without it each pool child of ``celery worker`` commits every result on its own: one durable commit
per task per child. With it, a child hands a plain result (no chord part to count, no children to
keep, small enough for one datagram) to its main process over a Unix datagram socket made before
the pool forks, and goes on to its next task; the main process writes what arrives within a short
window as one ``complete`` statement per queue, durably committed and fenced on each job's attempt.

``get()`` reads a result only once it is committed, so what the backend promises holds. What moves
is the moment the child is free: a worker killed between a child's hand-off and the commit leaves the
job active, and pg-boss runs it again once its heartbeat runs out, as if the worker had died during
the task. A result too big for a datagram, a main process that is gone, or any other pool (solo,
threads) takes the direct path.
"""

from __future__ import annotations

import json
import logging
import os
import select
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from celery import signals

from transport import outputs
from transport.outage import Backoff, Outage

if TYPE_CHECKING:
    from transport.manager import JobManager

logger = logging.getLogger(__name__)

#: The largest hand-off; bigger results are written by the child itself. Linux's default socket
#: buffer (about 208 KiB) holds a few of these, so a child blocks only when the writer is behind.
MAX_DATAGRAM = 48 * 1024
#: Seconds a batch gathers after its first result arrives.
WINDOW = 0.002


@dataclass(slots=True)
class Handed:
    """One result a pool child handed over, as its datagram carries it, and when it arrived."""

    queue: str
    job_id: str
    attempt: int | None
    ignored: bool
    value: Any
    arrived: float


class ResultRelay:
    """Created in a worker's main process before its pool forks; pool children :meth:`hand` results
    to it, its writer thread completes their jobs."""

    def __init__(
        self,
        manager: JobManager,
        *,
        window: float = WINDOW,
        retry_seconds: float = 300.0,
        give_up: Callable[[str, str, int | None, BaseException], None] | None = None,
    ) -> None:
        self.manager = manager
        self.window = window
        #: As the backend's ``result_retry_seconds``: how long a result waits through an outage
        #: before ``give_up(queue, id, attempt, error)`` (the backend hands the job back).
        self.retry_seconds = retry_seconds
        self.give_up = give_up
        self.owner_pid = os.getpid()
        self._reader, self._writer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._reader.setblocking(False)
        self._stopping = threading.Event()
        # The same lines as the backend's own writes: to an operator this is the result backend.
        self._outage = Outage(logger, "result backend")
        self._backoff = Backoff(first=0.2, cap=5.0)
        self._thread = threading.Thread(target=self._run, name="pgboss-result-relay", daemon=True)
        self._thread.start()

    # -- a pool child ---------------------------------------------------------------------------

    def hand(self, queue: str, job_id: str, attempt: int | None, value: Any, *, ignored: bool) -> bool:
        """Give one job's result (plain JSON) to the main process; False when this process must write
        it itself (it is the main process, the result is too big, the relay is closed)."""
        if os.getpid() == self.owner_pid or self._stopping.is_set():
            return False
        # Strict JSON, as the database takes it: a value it cannot store (a NUL character, NaN...)
        # raises here, in the task's own process, as the direct write would.
        data = outputs.to_json([queue, job_id, attempt, bool(ignored), value]).encode()
        if len(data) > MAX_DATAGRAM:
            return False
        try:
            self._writer.send(data)
        except OSError:  # the main process closed its end: write directly
            return False
        return True

    # -- the main process -----------------------------------------------------------------------

    def stop(self, timeout: float = 10.0) -> None:
        """Write what has arrived, then stop (at worker shutdown, once the pool has stopped)."""
        if os.getpid() != self.owner_pid:
            return
        self._stopping.set()
        self._thread.join(timeout)
        self._writer.close()
        self._reader.close()

    def _run(self) -> None:
        pending: list[Handed] = []  # results the database did not take yet (an outage)
        while True:
            stopping = self._stopping.is_set()
            try:
                pending += self._receive(0.0 if stopping or pending else 0.5)
                if pending:
                    pending = self._write(pending)
            except Exception:  # never let the writer die: every later result would wait on it
                logger.exception("result relay: unexpected error; %d results kept to try again", len(pending))
                self._stopping.wait(1.0)
            if stopping and not self._readable(0.0):
                if pending:
                    logger.error("result relay: %d results could not be written at shutdown", len(pending))
                return

    def _receive(self, wait: float) -> list[Handed]:
        """Wait up to ``wait`` seconds for a first result, then gather what arrives in the window."""
        got: list[Handed] = []
        if not self._readable(wait):
            return got
        now = time.monotonic()
        deadline = now + self.window
        recv, loads = self._reader.recv, json.loads
        while True:
            try:
                while True:  # what the socket holds now, stamped with one clock reading
                    got.append(Handed(*loads(recv(MAX_DATAGRAM)), arrived=now))
            except BlockingIOError:
                pass
            now = time.monotonic()
            if now >= deadline or not self._readable(deadline - now):
                return got
            now = time.monotonic()

    def _readable(self, wait: float) -> bool:
        return bool(select.select([self._reader], [], [], wait)[0])

    def _write(self, items: Sequence[Handed]) -> list[Handed]:
        """Complete the jobs, one statement per queue; what the database did not take (it is away)
        is returned to try again after a pause, until it has waited ``retry_seconds``."""
        groups: dict[tuple[str, bool], list[Handed]] = defaultdict(list)
        for item in items:
            groups[(item.queue, item.ignored)].append(item)
        left = [
            item
            for (queue, ignored), group in groups.items()
            for item in self._complete(queue, ignored, group)
        ]
        if left:
            self._stopping.wait(self._backoff.next())
        else:
            self._backoff.reset()
        return left

    def _complete(self, queue: str, ignored: bool, group: list[Handed]) -> list[Handed]:
        """One statement for the group; returns what must wait for the database to come back."""
        from transport.db import CONNECTION_ERRORS  # psycopg2 loads with the backend, not with `transport`

        results = [(item.job_id, item.value, item.attempt) for item in group]
        try:
            done = set(self.manager.complete(queue, results, ignored=ignored))
        except CONNECTION_ERRORS as exc:
            self._outage.failed(exc)
            return self._still_waiting(group, exc)
        except Exception:
            if len(group) == 1:
                self._unstorable(group[0])
                return []
            # One bad result must not cost the others theirs: each on its own.
            return [item for one in group for item in self._complete(queue, ignored, [one])]
        self._outage.succeeded()
        for item in group:
            if item.job_id not in done:
                logger.warning(
                    "result backend: job %s is no longer active in attempt %s; result dropped",
                    item.job_id,
                    item.attempt,
                )
        return []

    def _unstorable(self, item: Handed) -> None:
        """A result the database refused for what it is (not an outage): the job fails, fenced on its
        attempt, with an output that says so, rather than staying active."""
        logger.exception("result backend: the result of job %s could not be stored", item.job_id)
        output = {"name": "ResultNotStored", "message": "the task's result could not be stored", "stack": ""}
        attempts = {item.job_id: item.attempt} if item.attempt is not None else None
        self.manager.fail(item.queue, [item.job_id], output, attempts=attempts, retry=False)

    def _still_waiting(self, group: list[Handed], exc: BaseException) -> list[Handed]:
        """The results to try again; those that waited too long are given up (handed back)."""
        if self.give_up is None:
            return group
        deadline = time.monotonic() - self.retry_seconds
        for item in group:
            if item.arrived <= deadline:
                self.give_up(item.queue, item.job_id, item.attempt, exc)
        return [item for item in group if item.arrived > deadline]


#: Where a worker's pool children find their main process's relay: on the Celery app, which every
#: child inherits whichever thread forked it (a backend instance is per thread).
APP_ATTRIBUTE = "pgboss_result_relay"


def of_app(app: Any) -> ResultRelay | None:
    return getattr(app, APP_ATTRIBUTE, None)


def _start(sender: Any = None, **_: Any) -> None:
    """At ``worker_init`` (the main process, before its pool forks): a relay when the app's result
    backend is pg-boss's with ``result_relay`` on."""
    backend = sender.app.backend
    if getattr(backend, "relay_results", False):
        relay = ResultRelay(
            backend.manager, retry_seconds=backend.result_retry_seconds, give_up=backend.hand_back_job
        )
        setattr(sender.app, APP_ATTRIBUTE, relay)


def _stop(sender: Any = None, **_: Any) -> None:
    """At ``worker_shutdown``, once the pool has stopped: write what is left."""
    relay = of_app(sender.app) if sender is not None else None
    if relay is not None:
        relay.stop()
        setattr(sender.app, APP_ATTRIBUTE, None)


# Connected when ``transport`` is imported, which a worker does before ``worker_init`` (its app names
# the pgboss:// backend), while the backend module itself loads only when first used.
signals.worker_init.connect(_start, weak=False)
signals.worker_shutdown.connect(_stop, weak=False)
