"""What the HTTP API and the CLI do to jobs: :mod:`zeke.client`, plus the task registry for sending.

The client is generic (any queue, any JSON object); sending through here first validates the
payload with the task's schema (unknown task: :class:`~zeke.registry.UnknownTask`, bad payload:
:class:`~zeke.schema_task.PayloadInvalid`) and creates the task's queue with its options, which the
client leaves to whoever defines the task. The job is then sent as Node would send it: the validated
payload as data, which the worker runs as the task registered for the queue.

Blocking (psycopg2) calls; the API runs them in its threadpool.
"""

from __future__ import annotations

from typing import Any

from transport.exceptions import QueueNotFound
from transport.manager import JobManager
from zeke import client
from zeke.registry import TaskRegistry


class Jobs:
    def __init__(self, registry: TaskRegistry) -> None:
        self.registry = registry

    @property
    def manager(self) -> JobManager:
        return client.get_manager()

    def send(self, task_id: str, payload: Any) -> dict[str, Any]:
        """``{id, status: "created" | "deduplicated", taskId}``."""
        from zeke.app import ensure_queue

        task = self.registry.get(task_id)
        data = task.dump(payload)
        ensure_queue(task, self.manager)
        try:
            return client.send_job(task_id, data)
        except QueueNotFound:  # deleted since this process created it (an operator, a reinstall)
            ensure_queue(task, self.manager, again=True)
            return client.send_job(task_id, data)

    def get(self, job_id: str) -> dict[str, Any] | None:
        return client.get_job_status(job_id)

    def cancel(self, job_id: str) -> dict[str, Any] | None:
        """Status afterwards with ``changed`` (whether this call cancelled it), or None if unknown."""
        return client.cancel_job(job_id)

    def retry(self, job_id: str) -> dict[str, Any] | None:
        """Status afterwards with ``changed`` (only failed jobs retry), or None if unknown."""
        return client.retry_job(job_id)
