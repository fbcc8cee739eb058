"""Read-only monitoring views over a pg-boss schema (``sql/monitor.sql``, ``sql/dashboard.sql``):
recent and failed jobs, counts by state, schedules, the dashboard's pages. Used by ``zeke jobs``,
``zeke schedules`` and the dashboard; the statements run in :mod:`transport.repositories.views`."""

from __future__ import annotations

from transport.manager import JobManager
from transport.repositories.views import MonitorViews


class Monitor(MonitorViews):
    def __init__(self, manager: JobManager) -> None:
        super().__init__(manager.sql)
        self.manager = manager
