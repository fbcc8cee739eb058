"""The supervisor's writes outside job rows (``sql/supervise.sql``), for :mod:`transport.upkeep`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from transport.executor import Executor


class SupervisionStore:
    def __init__(self, sql: Executor, schema: str) -> None:
        self.sql = sql
        self.schema = schema

    def backoff_active(self) -> bool:
        return bool(self.sql.one("monitor_backoff_active", {})["active"])

    def cache_queue_stats(self, queue_names: Sequence[str]) -> list[Any]:
        """Count queues into their rows under pg-boss's ``queue-stats`` try-lock; the rows written."""
        params = {"names": list(queue_names), "schema": self.schema, "key": "queue-stats"}
        return self.sql.rows("cache_queue_stats", params)

    def set_monitor_backoff(self, pinned_seconds: float) -> list[Any]:
        return self.sql.rows("set_monitor_backoff", {"seconds": pinned_seconds})

    def set_retained_count(self, name: str) -> None:
        self.sql.rows("set_retained_count", {"name": name})

    def cleanup_dependencies(self, table: str, name: str) -> int:
        """Delete a queue's dependency rows whose job is gone, under Node's lock for its table."""
        key = table + "cleanupDependencies"
        return int(self.sql.locked(self.schema, key, "cleanup_dependencies", {"name": name})[0]["deleted"])

    def live_node_supervisors(self) -> int:
        return int(self.sql.one("live_node_supervisors", {})["n"])

    def prune_instances(self) -> int:
        return int(self.sql.one("delete_old_instances", {})["deleted"])
