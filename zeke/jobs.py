"""What the HTTP API and the CLI do to jobs: send, read, cancel, retry. No web framework here: each
front end maps this module's exceptions to its own answers (HTTP status codes; messages and exit
statuses).

Sending through here validates the payload with the task's schema first (unknown task:
:class:`~zeke.registry.UnknownTask`, bad payload: :class:`~zeke.schema_task.PayloadInvalid`) and
creates the task's queue with its options, which :mod:`zeke.client` leaves to whoever defines the
task. The job is then sent as Node would send it: the validated payload as data, which the worker
runs as the task registered for the queue.

Blocking calls (the API runs them in its threadpool).
"""

from __future__ import annotations

from typing import Any

from transport.exceptions import QueueNotFound
from transport.manager import JobManager
from zeke import client
from zeke.app import ensure_queue
from zeke.registry import TaskRegistry


class JobNotFound(LookupError):
    """No job has that id."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id} not found")
        self.job_id = job_id


class JobRefused(Exception):
    """The job's state does not allow the action; ``job`` is its status now."""

    def __init__(self, job_id: str, action: str, job: dict[str, Any], reason: str) -> None:
        super().__init__(f"job {job_id} is {job['status']}; {reason}")
        self.job_id, self.action, self.job, self.reason = job_id, action, job, reason

    @property
    def status(self) -> str:
        return str(self.job["status"])


CANNOT_CANCEL = "cannot cancel"
ONLY_FAILED_RETRY = "only failed jobs can be retried"


class Jobs:
    def __init__(self, registry: TaskRegistry) -> None:
        self.registry = registry

    @property
    def manager(self) -> JobManager:
        return client.get_manager()

    def send(self, task_id: str, payload: Any) -> dict[str, Any]:
        """``{id, status: "created" | "deduplicated", taskId}``."""
        task = self.registry.get(task_id)
        data = task.dump(payload)
        ensure_queue(task, self.manager)
        try:
            return client.send_job(task_id, data)
        except QueueNotFound:  # deleted since this process created it (an operator, a reinstall)
            ensure_queue(task, self.manager, again=True)
            return client.send_job(task_id, data)

    def get(self, job_id: str) -> dict[str, Any] | None:
        """The job's status, or None when no job has that id."""
        return client.get_job_status(job_id)

    def status(self, job_id: str) -> dict[str, Any]:
        """The job's status; :class:`JobNotFound` when no job has that id."""
        job = self.get(job_id)
        if job is None:
            raise JobNotFound(job_id)
        return job

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel a job that has not finished; its status afterwards. A job cancelled already is
        cancelled (no error); a finished one is :class:`JobRefused`."""
        job = _changed(job_id, client.cancel_job(job_id))
        if not job.pop("changed") and job["status"] != "cancelled":
            raise JobRefused(job_id, "cancel", job, CANNOT_CANCEL)
        return job

    def retry(self, job_id: str) -> dict[str, Any]:
        """Give a failed job another attempt; its status afterwards. Any other job is :class:`JobRefused`."""
        job = _changed(job_id, client.retry_job(job_id))
        if not job.pop("changed"):
            raise JobRefused(job_id, "retry", job, ONLY_FAILED_RETRY)
        return job


def _changed(job_id: str, job: dict[str, Any] | None) -> dict[str, Any]:
    if job is None:
        raise JobNotFound(job_id)
    return job
