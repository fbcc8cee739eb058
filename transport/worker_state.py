"""What the process hosting a consumer tells the transport: one plain object, filled by the Celery
worker's hooks (:mod:`transport.worker_hooks`) and read by the transport.

The transport imports nothing of Celery's worker: used by plain Kombu (no Celery, or Celery with
no worker) every field keeps its default, and the transport behaves as a Kombu consumer should.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass


def _none_running() -> Collection[str]:
    return frozenset()


def _no_limits(task_name: str | None) -> tuple[float | None, float | None]:
    return None, None


@dataclass
class WorkerState:
    #: Ids of the tasks this process runs right now (a worker's accepted requests).
    running_tasks: Callable[[], Collection[str]] = _none_running
    #: Raises the host's shutdown when it was told to stop (called while waiting for the database).
    shutdown_check: Callable[[], None] | None = None
    #: Whether the host's result backend writes each job's end itself (pg-boss's does); None: no
    #: host said, so acks settle their jobs (nothing else would).
    backend_records_ends: bool | None = None
    #: ``(hard, soft)`` time limits of a task by name.
    time_limits: Callable[[str | None], tuple[float | None, float | None]] = _no_limits

    def acks_must_settle(self) -> bool:
        """Whether a consumer's acks must complete its jobs: yes, unless the host's result backend
        records them. With no result backend (or Redis's, or a plain Kombu consumer) nothing else
        ever writes a job's end: it stayed ``active``, heartbeated, and ran again after its expiry."""
        return not self.backend_records_ends

    def check_shutdown(self) -> None:
        if self.shutdown_check is not None:
            self.shutdown_check()


#: This process's host.
WORKER = WorkerState()
