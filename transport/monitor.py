"""Read-only monitoring views over a pg-boss schema (``sql/monitor.sql``): recent and failed jobs,
counts by state, schedules. Used by ``zeke jobs`` and ``zeke schedules``."""

from __future__ import annotations

from typing import Any

from transport.manager import JobManager, _job_row


class Monitor:
    def __init__(self, manager: JobManager) -> None:
        self.manager = manager

    def _rows(self, statement: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        with self.manager.db.cursor() as cur:
            cur.execute(self.manager.queries[statement], params)
            return [_job_row(r) for r in cur.fetchall()]

    def recent_jobs(self, *, name: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        return self._rows("monitor_recent_jobs", {"name": name, "limit": limit})

    def failed_jobs(self, *, name: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        return self._rows("monitor_failed_jobs", {"name": name, "limit": limit})

    def state_counts(self, *, name: str | None = None) -> list[dict[str, Any]]:
        return self._rows("monitor_state_counts", {"name": name})

    def schedules(self) -> list[dict[str, Any]]:
        rows = self._rows("monitor_schedules", {})
        for row in rows:
            if row.get("last_job_id") is not None:
                row["last_job_id"] = str(row["last_job_id"])
        return rows
