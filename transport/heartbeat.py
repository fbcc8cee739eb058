"""Heartbeats from the worker's main process for every job it holds.

pg-boss fails an active job whose ``heartbeat_on`` is older than its ``heartbeat_seconds`` (the
supervisor's "job heartbeat timeout"), and that is how a job held by a worker that died as a whole
(SIGKILL, OOM, lost host) comes back. So the process that fetched a job refreshes it while the job
stays active: prefetched, running in a pool child, or waiting for the result backend. A job is
forgotten once a touch shows it is no longer active (completed, failed, retried, cancelled or
restored), so the set tracks exactly what is still ours.

A transport that closes while tasks of its jobs still run (the connection was lost, not the worker)
leaves those jobs to the result backend: its heartbeat is retired, not stopped, and keeps touching
them for as long as their tasks run, so that pg-boss does not retry a job whose task is running.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections import defaultdict
from collections.abc import Callable, Collection

from transport.db import CONNECTION_ERRORS
from transport.manager import JobManager
from transport.outage import Outage

logger = logging.getLogger(__name__)

#: Every heartbeat of this process (and, after a fork, the parent's: told apart by ``pid``).
_instances: weakref.WeakSet[Heartbeat] = weakref.WeakSet()


def release(job_id: str) -> bool:
    """Stop heartbeating a job this process holds, so pg-boss retries it once its heartbeat runs out.

    For a job whose end could not be recorded (the result backend lost the database): left
    heartbeated, it would stay ``active`` until its expiry (an hour by default). Returns whether a
    heartbeat of this process held it.
    """
    held = False
    for heartbeat in list(_instances):
        if heartbeat.pid == os.getpid() and job_id in heartbeat._jobs:
            heartbeat.discard(job_id)
            held = True
    return held


def hand_back(job_id: str, queue: str, attempt: int | None) -> bool:
    """Put a job this process holds back in its queue untouched (``restore``: no attempt used),
    through the connections of the transport that fetched it (kept open, unlike a result backend's
    in the main process, which may find none to open when connections run short), and stop
    heartbeating it. False when no heartbeat here holds it or it was no longer active."""
    for heartbeat in list(_instances):
        if heartbeat.pid == os.getpid() and job_id in heartbeat._jobs:
            handed = heartbeat.manager.restore(queue, [job_id], retry_count=attempt)
            heartbeat.discard(job_id)
            return bool(handed)
    return False


def holds(job_id: str) -> bool:
    """Whether a heartbeat of this process holds the job (the worker's main process, not a child)."""
    return any(hb.pid == os.getpid() and job_id in hb._jobs for hb in list(_instances))


class Heartbeat:
    """The jobs one process holds, touched from a thread of their own: off the event loop, so that
    ``-P solo`` (where a task blocks the loop) and a busy loop still heartbeat on time."""

    def __init__(self, manager: JobManager, *, default_seconds: float = 30.0) -> None:
        self.manager = manager
        #: ``heartbeat_seconds`` assumed for jobs whose queue has none.
        self.default_seconds = default_seconds
        self._jobs: dict[str, tuple[str, int | None]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: Once retired: the ids of the jobs whose tasks still run (the only ones still touched).
        self._running: Callable[[], Collection[str]] | None = None
        self.pid = os.getpid()
        self._outage = Outage(logger, "pg-boss heartbeat")
        _instances.add(self)

    def start(self) -> None:
        if self._thread is None:
            self._running = None
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="pgboss-heartbeat", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread = None

    def retire(self, running: Callable[[], Collection[str]]) -> None:
        """Its transport closed: touch only the jobs whose ids ``running()`` still names (tasks that
        outlived their connection, whose end the result backend writes), and stop once none is left.
        Every other job is let go: pg-boss retries it once its heartbeat runs out."""
        if self._thread is None or self._stop.is_set():
            return
        self._running = running
        self._keep_running()
        if not len(self):
            self.stop()

    def _keep_running(self) -> None:
        running = self._running
        if running is None:
            return
        ids = set(running())
        with self._lock:
            for job_id in [j for j in self._jobs if j not in ids]:
                del self._jobs[job_id]

    def _run(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(1.0):
            if self._running is not None:
                self._keep_running()
                if not len(self):
                    return  # retired, and every task it kept alive has ended
            interval = (self.shortest() or self.default_seconds) / 3.0
            if time.monotonic() - last < interval or not len(self):
                continue
            last = time.monotonic()
            try:
                self.touch()
            except CONNECTION_ERRORS as exc:  # the next beat retries; expiry is the backstop
                self._outage.failed(exc)
            except Exception as exc:
                logger.warning("pg-boss heartbeat failed: %r", exc)
            else:
                self._outage.succeeded()

    def __len__(self) -> int:
        return len(self._jobs)

    def add(self, job_id: str, queue: str, heartbeat_seconds: int | None) -> None:
        with self._lock:
            self._jobs[job_id] = (queue, heartbeat_seconds)

    def discard(self, job_id: str) -> None:
        with self._lock:
            self._jobs.pop(job_id, None)

    def shortest(self) -> int | None:
        """The smallest ``heartbeat_seconds`` among held jobs (None when none has one)."""
        with self._lock:
            seconds = [s for _, s in self._jobs.values() if s]
        return min(seconds) if seconds else None

    def touch(self) -> int:
        """Refresh every held job; forget those no longer active. Returns how many are still held."""
        with self._lock:
            by_queue: dict[str, list[str]] = defaultdict(list)
            for job_id, (queue, _) in self._jobs.items():
                by_queue[queue].append(job_id)
        for queue, ids in by_queue.items():
            alive = set(self.manager.touch(queue, ids))
            with self._lock:
                for job_id in ids:
                    if job_id not in alive:
                        self._jobs.pop(job_id, None)
        return len(self._jobs)
