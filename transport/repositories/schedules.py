"""Schedules: pg-boss's ``schedule`` table and cron claim (what :mod:`transport.cron` keeps as Node's
timekeeper does) and the run state of Celery ``beat_schedule`` entries (:mod:`transport.beat`);
``sql/schedule.sql``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from transport.executor import Executor


class ScheduleStore:
    def __init__(self, sql: Executor, schema: str) -> None:
        self.sql = sql
        self.schema = schema

    # -- pg-boss's schedule table ----------------------------------------------------------------

    def claim_cron_time(self, interval_seconds: float) -> Any:
        """Try to own this cron pass (``version.cron_on``): its row (``claimed``, ``now``, ...)."""
        return self.sql.one("try_set_cron_time", {"seconds": interval_seconds})

    def all(self) -> list[Any]:
        return self.sql.rows("get_schedules", {})

    def get(self, name: str, key: str) -> Any:
        return self.sql.one("get_schedule", {"name": name, "key": key})

    def upsert(self, params: Mapping[str, Any], conn: Any = None) -> bool:
        """Write a schedule row; False when ``only_if_changed`` found it unchanged."""
        return bool(self.sql.rows("upsert_schedule", params, conn=conn))

    def delete(self, name: str, key: str) -> bool:
        return bool(self.sql.rows("delete_schedule", {"name": name, "key": key}))

    def set_last_job_id(self, name: str, key: str, job_id: str, conn: Any) -> None:
        self.sql.rows("set_schedule_last_job_id", {"name": name, "key": key, "job_id": job_id}, conn=conn)

    def savepoint(self, conn: Any) -> None:
        """Mark where one forwarded send-it job starts in the caller's transaction."""
        self.sql.rows("send_it_savepoint", {}, conn=conn)

    def rollback_to_savepoint(self, conn: Any) -> None:
        self.sql.rows("send_it_rollback", {}, conn=conn)

    # -- Celery beat_schedule entries --------------------------------------------------------------

    def install_beat_store(self) -> None:
        """Create the entries' table if absent, under the lock every creator of ``{aux}`` takes."""
        self.sql.locked(self.schema, "zeke-aux", "create_beat_store")

    def load_beat_entries(self, entries_json: str) -> list[Any]:
        """Create rows for new entries; every entry's shared run state."""
        return self.sql.rows("load_beat_entries", {"entries": entries_json})

    def claim_beat_entry(self, name: str, expected: int, now: str) -> Any:
        """Claim one run of an entry: its row (``claimed``, ``total_run_count``, ...), None when the
        row is gone."""
        return self.sql.one("claim_beat_entry", {"name": name, "expected": expected, "now": now})
