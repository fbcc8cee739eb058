"""Job rows as the transport hands them out: :class:`FetchedJob` (a claimed job) and plain-typed rows."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

#: Policies whose fetch needs no per-key check: their queues are fetched by ``fetch_plain_jobs``.
PLAIN_FETCH_POLICIES = frozenset({"standard", "short", "exclusive"})


@dataclass(frozen=True, slots=True)
class FetchedJob:
    """A job this process now holds in state ``active``."""

    id: str
    name: str
    data: Any
    priority: int
    retry_count: int
    retry_limit: int
    expire_seconds: int
    heartbeat_seconds: int | None
    created_on: dt.datetime
    start_after: dt.datetime
    keep_until: dt.datetime
    singleton_key: str | None


def _fetched_jobs(rows: Iterable[tuple[Any, ...]]) -> list[FetchedJob]:
    """The jobs of a fetch statement's rows, whose columns come in FetchedJob's order (job.sql)."""
    return [FetchedJob(str(row[0]), *row[1:]) for row in rows]


def _job_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A job row with plain Python types (uuid as str, state as str)."""
    out = dict(row)
    for key in ("id", "source_id", "source_root_id"):
        if out.get(key) is not None:
            out[key] = str(out[key])
    if out.get("state") is not None:
        out["state"] = str(out["state"])
    return out
