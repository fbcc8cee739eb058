"""The result backend's ``{aux}.result`` store (``sql/result.sql``) and the job results it reads."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from transport.executor import Executor


class ResultStore:
    def __init__(self, sql: Executor, schema: str) -> None:
        self.sql = sql
        self.schema = schema

    def install(self, conn: Any = None) -> None:
        """Create the store if absent, under the lock every creator of ``{aux}`` takes."""
        self.sql.locked(self.schema, "zeke-aux", "create_result_store", conn=conn)

    def task_results(
        self, ids: Sequence[str], keys: Sequence[str], extended: bool, conn: Any = None
    ) -> list[Any]:
        """Job rows (``source`` job) and stored values (``source`` store) of some tasks."""
        params = {"ids": list(ids), "keys": list(keys), "extended": extended}
        return self.sql.rows("get_task_results", params, conn=conn)

    def get(self, keys: Sequence[str], conn: Any = None) -> list[Any]:
        return self.sql.rows("get_results", {"keys": list(keys)}, conn=conn)

    def set(self, params: Mapping[str, Any], conn: Any = None) -> None:
        self.sql.rows("set_result", params, conn=conn)

    def delete(self, keys: Sequence[str], conn: Any = None) -> None:
        self.sql.rows("delete_results", {"keys": list(keys)}, conn=conn)

    def incr(self, key: str, expires: Any, conn: Any = None) -> list[Any]:
        return self.sql.rows("incr_result", {"key": key, "expires": expires}, conn=conn)

    def expire(self, key: str, expires: Any, conn: Any = None) -> None:
        self.sql.rows("expire_result", {"key": key, "expires": expires}, conn=conn)

    def set_chord_size(self, key: str, size: str, expires: Any, conn: Any = None) -> None:
        self.sql.rows("set_chord_size", {"key": key, "size": size, "expires": expires}, conn=conn)

    def count_chord_part(self, params: Mapping[str, Any], conn: Any = None) -> list[Any]:
        """Count a chord header task once: its (counter, value) row, none when counted already."""
        return self.sql.rows("count_chord_part", params, conn=conn)

    def delete_chord(self, group_id: str, key: str, conn: Any = None) -> None:
        self.sql.rows("delete_chord", {"group_id": group_id, "key": key}, conn=conn)

    def chord_part_ids(self, group_id: str, conn: Any = None) -> list[str]:
        return [r["task_id"] for r in self.sql.rows("chord_part_ids", {"group_id": group_id}, conn=conn)]

    def delete_expired(self, limit: int) -> int:
        """Delete up to ``limit`` expired values; how many went."""
        return self.sql.run("delete_expired_results", {"limit": limit})
