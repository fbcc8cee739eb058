"""The supervisor's upkeep of a pg-boss schema beyond job sweeps (SQL in ``sql/supervise.sql``).

What a Node pg-boss supervisor of the schema's version keeps, kept the same way so Node's
``getQueues()``, ``getQueueStats()`` and dashboard read the same numbers whoever supervised:

* the queue statistics of each claimed queue (deferred/queued/active/total and, where the schema has
  them, ready/failed/blocked, the ready-count history, ``monitor_on``), counted under pg-boss's
  ``queue-stats`` try-lock, so two supervisors never count at once; on schema 46 the total is the live
  jobs plus the retained count a full deletion pass sets;
* the vacuum-safety backoff (schema 40+): counting that held its snapshot longer than a tenth of
  ``autovacuum_naptime`` defers the next counting, and a deferral set by anyone is honoured;
* backlog warnings for queues holding more queued jobs than their ``warning_queued`` (else 10 000);
* ``job_dependency`` rows whose job is gone, and the Node instance registry's 7-day retention.

Not kept: the throughput deltas, latency histograms and ``queue_stats`` history, which Node writes
only with ``persistQueueStats`` on (its default is off), Node's warning table (``persistWarnings``),
and its index-bloat rebuilds and vacuum diagnostics.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from transport.manager import JobManager

logger = logging.getLogger(__name__)

#: Queues counted per statement, as Node chunks them.
CHUNK = 100
#: pg-boss's backlog threshold when a queue sets none (``warningQueueSize``).
DEFAULT_WARNING_QUEUE_SIZE = 10_000


def _chunks(names: Sequence[str]) -> Iterable[list[str]]:
    for start in range(0, len(names), CHUNK):
        yield list(names[start : start + CHUNK])


class Upkeep:
    def __init__(self, manager: JobManager, *, warning_queue_size: int = DEFAULT_WARNING_QUEUE_SIZE) -> None:
        self.manager = manager
        self.warning_queue_size = warning_queue_size

    def has(self, feature: str) -> bool:
        return self.manager.info.has(feature)

    # -- queue statistics ---------------------------------------------------------------------

    def backoff_active(self) -> bool:
        return self.manager.supervision.backoff_active()

    def refresh_stats(self, names: Sequence[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Count ``names`` into their queue rows. Returns (rows written, backlog warnings); nothing
        when the backoff is in force or another supervisor held the lock."""
        if not names or self.backoff_active():
            return [], []
        written: list[dict[str, Any]] = []
        pinned = 0.0  # seconds the counting held its snapshot, summed over the statements
        for chunk in _chunks(names):
            rows = self.manager.supervision.cache_queue_stats(chunk)
            pinned += max((float(r["pin_seconds"] or 0) for r in rows), default=0.0)
            written += rows
        backoff = self.manager.supervision.set_monitor_backoff(pinned) if written else []
        if backoff:
            logger.warning(
                "pg-boss queue statistics held a snapshot for %.1f s (over a tenth of autovacuum_naptime "
                "%.0f s): the next counting waits %.0f s so autovacuum can clean the job table",
                pinned,
                backoff[0]["naptime_seconds"],
                backoff[0]["backoff_seconds"],
            )
        return written, self.backlog_warnings(written)

    def backlog_warnings(self, rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        warnings = []
        for row in rows:
            threshold = int(row["warning_queued"] or 0) or self.warning_queue_size
            queued = int(row["queued_count"])
            if queued > threshold:
                warnings.append(
                    {
                        "kind": "queue_backlog",
                        "queue": row["name"],
                        "queued": queued,
                        "threshold": threshold,
                        "message": f'large queue backlog: queue "{row["name"]}" has {queued} jobs waiting '
                        f"(created or retry), over its warning threshold of {threshold}",
                    }
                )
        return warnings

    # -- after a deletion pass ----------------------------------------------------------------

    def after_deletion(self, names: Sequence[str]) -> int:
        """What follows a deletion pass of ``names``: the retained count (schema 46) and the
        dependency rows of deleted jobs. Returns how many dependency rows went."""
        removed = 0
        for name in names:
            if self.has("retained"):
                self.manager.supervision.set_retained_count(name)
        if self.has("dependencies"):
            for table, queues in self.manager._queues_by_table(names).items():
                for name in queues:
                    removed += self.manager.supervision.cleanup_dependencies(table, name)
        return removed

    # -- the Node instance registry -----------------------------------------------------------

    def node_supervisors(self) -> int:
        """Node instances registered as supervising, alive and not stopped (0 where there is no registry)."""
        return self.manager.supervision.live_node_supervisors()

    def prune_instances(self) -> int:
        return self.manager.supervision.prune_instances()
