"""What the HTTP API does to jobs, in the shapes of the original ``client.ts`` (camelCase JSON).

Blocking (psycopg2) calls; the routes run them in the threadpool.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from transport.manager import JobManager
from zeke.registry import TaskRegistry

#: The reserved key in job data that holds Celery's envelope (docs/ARCHITECTURE.md).
CELERY_KEY = "__celery"


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def job_status(row: dict[str, Any]) -> dict[str, Any]:
    """A ``pgboss.job`` row as ``JobStatus``: id, status (the pg-boss state), taskId, data, output..."""
    data = row.get("data")
    if isinstance(data, dict) and CELERY_KEY in data:
        data = {k: v for k, v in data.items() if k != CELERY_KEY}
    return {
        "id": str(row["id"]),
        "status": str(row["state"]),
        "taskId": row["name"],
        "data": data,
        "output": row.get("output"),
        "createdOn": _iso(row.get("created_on")),
        "startedOn": _iso(row.get("started_on")),
        "completedOn": _iso(row.get("completed_on")),
        "retryCount": row.get("retry_count"),
        "retryLimit": row.get("retry_limit"),
    }


class Jobs:
    def __init__(self, manager: JobManager, registry: TaskRegistry) -> None:
        self.manager = manager
        self.registry = registry

    def send(self, task_id: str, payload: Any) -> dict[str, Any]:
        """Validate against the task's schema and send; raises UnknownTask / PayloadInvalid."""
        task = self.registry.get(task_id)
        job_id = task.trigger(payload)
        return {"id": job_id, "status": "created", "taskId": task_id}

    def get(self, job_id: str) -> dict[str, Any] | None:
        row = self.manager.get_job(job_id)
        return job_status(row) if row is not None else None

    def cancel(self, job_id: str) -> tuple[dict[str, Any] | None, bool]:
        """(status after, whether this call cancelled it)."""
        row = self.manager.get_job(job_id)
        if row is None:
            return None, False
        moved = bool(self.manager.cancel(row["name"], [job_id]))
        return self.get(job_id), moved

    def retry(self, job_id: str) -> tuple[dict[str, Any] | None, bool]:
        """(status after, whether this call re-queued it); only failed jobs can be retried."""
        row = self.manager.get_job(job_id)
        if row is None:
            return None, False
        moved = bool(self.manager.retry(row["name"], [job_id]))
        return self.get(job_id), moved
