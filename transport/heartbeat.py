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

Every heartbeat that may hold jobs is known to its :class:`~transport.hub.Hub`, which the result
backend asks to release or hand back a job whose end it could not write.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Collection
from typing import Protocol

from transport.manager import JobManager
from transport.service import Service


class HeartbeatOwner(Protocol):
    """What a heartbeat tells its owner (the process's :class:`~transport.hub.Hub`)."""

    def add_heartbeat(self, heartbeat: Heartbeat) -> None: ...

    def remove_heartbeat(self, heartbeat: Heartbeat) -> None: ...


logger = logging.getLogger(__name__)


class Heartbeat(Service):
    """The jobs one process holds, touched from a thread of their own: off the event loop, so that
    ``-P solo`` (where a task blocks the loop) and a busy loop still heartbeat on time."""

    thread_name = "pgboss-heartbeat"

    def __init__(
        self, manager: JobManager, *, default_seconds: float = 30.0, hub: HeartbeatOwner | None = None
    ) -> None:
        super().__init__(logger, "pg-boss heartbeat")
        self.manager = manager
        self.hub = hub
        #: ``heartbeat_seconds`` assumed for jobs whose queue has none.
        self.default_seconds = default_seconds
        self._jobs: dict[str, tuple[str, int | None]] = {}
        self._jobs_lock = threading.Lock()
        #: Once retired: the ids of the jobs whose tasks still run (the only ones still touched).
        self._running: Callable[[], Collection[str]] | None = None
        self.pid = os.getpid()

    def _reset(self) -> None:
        super()._reset()
        #: Orders a start against a stop: each changes the thread and the hub's registration
        #: together, so a heartbeat that runs is always known to its hub. New after a fork, with the
        #: service's own lock (the parent's may have been held).
        self._life = threading.Lock()

    def start(self) -> None:
        """Start touching, known to the hub. Called on every pass of the worker's loop that delivered:
        once started, it reads one attribute and returns (a stop racing it ends what it started)."""
        if self.running:
            return
        self._check_pid()
        with self._life:
            if self.hub is not None:
                self.hub.add_heartbeat(self)
            if not self.running:
                self._running = None
            super().start()

    def stop(self, timeout: float | None = None, *, join: bool = False) -> None:
        """Stop touching (the thread ends within a second; not waited for: a touch may hang in an
        outage, and closing must not)."""
        self._check_pid()
        with self._life:  # not held while joining: the thread itself may stop it
            thread = self._thread
            super().stop(join=False)
            if self.hub is not None:
                self.hub.remove_heartbeat(self)
        if join and thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def retire(self, running: Callable[[], Collection[str]]) -> None:
        """Its transport closed: touch only the jobs whose ids ``running()`` still names (tasks that
        outlived their connection, whose end the result backend writes), and stop once none is left.
        Every other job is let go: pg-boss retries it once its heartbeat runs out."""
        if not self.running:
            self.stop()
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
        with self._jobs_lock:
            for job_id in [j for j in self._jobs if j not in ids]:
                del self._jobs[job_id]

    def run(self) -> None:
        last = time.monotonic()
        while self.idle(1.0):
            if self._running is not None:
                self._keep_running()
                if not len(self):
                    self.stop()
                    return  # retired, and every task it kept alive has ended
            interval = (self.shortest() or self.default_seconds) / 3.0
            if time.monotonic() - last < interval or not len(self):
                continue
            last = time.monotonic()
            self.attempt(self.touch)  # a failed beat: the next one retries; expiry is the backstop

    def __len__(self) -> int:
        return len(self._jobs)

    def holds(self, job_id: str) -> bool:
        return self.pid == os.getpid() and job_id in self._jobs

    def add(self, job_id: str, queue: str, heartbeat_seconds: int | None) -> None:
        with self._jobs_lock:
            self._jobs[job_id] = (queue, heartbeat_seconds)

    def discard(self, job_id: str) -> None:
        with self._jobs_lock:
            self._jobs.pop(job_id, None)

    def shortest(self) -> int | None:
        """The smallest ``heartbeat_seconds`` among held jobs (None when none has one)."""
        with self._jobs_lock:
            seconds = [s for _, s in self._jobs.values() if s]
        return min(seconds) if seconds else None

    def touch(self) -> int:
        """Refresh every held job; forget those no longer active. Returns how many are still held."""
        with self._jobs_lock:
            by_queue: dict[str, list[str]] = defaultdict(list)
            for job_id, (queue, _) in self._jobs.items():
                by_queue[queue].append(job_id)
        for queue, ids in by_queue.items():
            alive = set(self.manager.touch(queue, ids))
            with self._jobs_lock:
                for job_id in ids:
                    if job_id not in alive:
                        self._jobs.pop(job_id, None)
        return len(self._jobs)
