"""Read-only views over a pg-boss schema (``sql/monitor.sql``, ``sql/dashboard.sql``): recent and
failed jobs, counts by state, schedules, and the dashboard's pages; through :mod:`transport.monitor`."""

from __future__ import annotations

from typing import Any

from transport.executor import Executor
from transport.jobrows import _job_row


class MonitorViews:
    def __init__(self, sql: Executor) -> None:
        self.sql = sql

    def _rows(self, statement: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        return [_job_row(r) for r in self.sql.rows(statement, params)]

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

    # -- the web dashboard (sql/dashboard.sql) ----------------------------------------------------

    #: Rows a count walks at most; the dashboard shows a count that reached it as "50,000+".
    COUNT_CAP = 50_000

    def queue_counts(self, *, name: str | None = None, cap: int = COUNT_CAP) -> dict[str, dict[str, Any]]:
        """``{queue: {"counts": {state: n}, "capped": {state: bool}}}`` for every state, read live.

        pg-boss caches counters in ``queue`` (queued_count, active_count...) but only a Node
        supervisor refreshes them, so they lag or stay zero under Celery-only deployments; these
        are ``count(*)`` instead, each bounded so the page stays cheap at millions of jobs. A
        pending or failed count walks at most ``cap`` rows of its queue and state (on schema 46
        through pg-boss's job_i14 index); completed and cancelled are counted together in one walk
        of at most ``cap`` finished rows (job_i16), since pg-boss has no index on those states: a
        walk cut short makes both lower bounds ("capped"). Schema 26 has neither index, so there
        the counts scan each queue's rows, still at most ``cap`` per count.
        """
        out: dict[str, dict[str, Any]] = {}
        for row in self._rows("dashboard_queue_counts", {"name": name, "cap": cap}):
            counts = {s: row[s] for s in ("created", "retry", "active", "completed", "cancelled", "failed")}
            finished_cut = row["finished_walked"] >= cap
            capped = {
                s: (finished_cut if s in ("completed", "cancelled") else n >= cap) for s, n in counts.items()
            }
            out[row["name"]] = {"policy": row["policy"], "counts": counts, "capped": capped}
        return out

    def queues(self) -> list[dict[str, Any]]:
        return self._rows("dashboard_queues", {})

    def jobs_page(
        self,
        *,
        name: str | None = None,
        state: str | None = None,
        since: Any = None,
        until: Any = None,
        text: str | None = None,
        before: tuple[Any, str] | None = None,
        limit: int = 50,
    ) -> list[dict[str, Any]]:
        """Jobs newest first, ``limit`` of them below the keyset cursor ``before`` = (created_on, id).

        Each queue is read through its (name, created_on) order and the queues merged, so a page
        costs about ``limit`` rows per queue however many jobs there are; only a ``text`` search
        (an id, a singleton key, or a substring of data or output) may scan further to fill a page.
        """
        text = (text or "").strip() or None
        pattern = None if text is None else "%" + _like_escape(text) + "%"
        params = {
            "name": name,
            "state": state,
            "since": since,
            "until": until,
            "text": text,
            "pattern": pattern,
            "before_on": before[0] if before else None,
            "before_id": before[1] if before else None,
            "limit": limit,
        }
        return self._rows("dashboard_jobs", params)

    def throughput(
        self, *, name: str | None = None, minutes: int = 60, bucket: int = 60
    ) -> list[dict[str, Any]]:
        """Finished jobs per queue and ``bucket`` seconds over the last ``minutes``, with mean wait and
        run times (through each queue's completed_on index on schema 46)."""
        return self._rows("dashboard_throughput", {"name": name, "minutes": minutes, "bucket": bucket})

    def jobs_by_id(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        if not ids:
            return {}
        return {r["id"]: r for r in self._rows("dashboard_schedule_last_jobs", {"ids": ids})}

    def node_instances(self) -> list[dict[str, Any]]:
        return self._rows("dashboard_node_instances", {})


def _like_escape(text: str) -> str:
    """``text`` matched literally by LIKE/ILIKE (backslash is PostgreSQL's default escape)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
