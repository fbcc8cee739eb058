"""pg-boss's ``groupConcurrency`` in the Celery consumer: at most N active jobs per ``group.id``.

A pg-boss job may carry a group (``send(..., {group: {id, tier}})``, from Node or from Python with
``apply_async(pgboss={"group": {...}})``). A Node worker started with ``work(name,
{groupConcurrency})`` claims a job only while fewer than its group's limit are active, counted
across every worker from the job rows themselves; a tier may have a limit of its own. Jobs
without a group are not limited.

Celery workers do the same for the queues named in the transport option ``group_concurrency``::

    app.conf.broker_transport_options = {
        "group_concurrency": {"imports": 1, "reports": {"default": 2, "tiers": {"vip": 5}}},
    }

"Active" is pg-boss's state: a job a worker has fetched counts from its fetch (prefetched or
running) until it is settled. Python fetchers of such a queue serialise on the queue's advisory
lock, so two Python workers never both take a group's last slot; Node's workers take no such lock,
so between a Node and a Python worker (as between two Node workers) two fetches at the same
instant can each claim one job of a group. Groups need schema 27 (pg-boss 12.6) and a queue of
the standard, short or exclusive policy (the per-key policies fetch by rules of their own); other
queues are fetched without group limits, with a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from transport.flows import _group_limits
from transport.jobrows import PLAIN_FETCH_POLICIES, FetchedJob

if TYPE_CHECKING:
    from transport.manager import JobManager

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class GroupLimit:
    """One queue's limit: ``default`` active jobs per group, or its tier's."""

    default: int
    tiers: dict[str, int] = field(default_factory=dict)


def parse_group_limits(option: Mapping[str, Any] | None) -> dict[str, GroupLimit]:
    """The ``group_concurrency`` transport option, checked: queue -> limit. A limit is pg-boss's
    ``groupConcurrency``: a number, or ``{"default": n, "tiers": {tier: m}}``."""
    limits: dict[str, GroupLimit] = {}
    for queue, value in (option or {}).items():
        default, tiers = _group_limits(value)
        limits[str(queue)] = GroupLimit(default, tiers)
    return limits


class GroupFetcher:
    """Fetches for the group-limited queues of one transport."""

    def __init__(self, manager: JobManager, limits: Mapping[str, GroupLimit]) -> None:
        self.manager = manager
        self.limits = dict(limits)
        #: queue -> whether its groups can be served (schema and policy), read once.
        self._servable: dict[str, bool] = {}

    def limited(self, queue: str) -> bool:
        """Whether ``queue``'s jobs are fetched under group limits."""
        if queue not in self.limits:
            return False
        known = self._servable.get(queue)
        if known is None:
            known = self._check(queue)
            if known is not None:
                self._servable[queue] = known
        return bool(known)

    def fetch(
        self, queue: str, batch_size: int, cap: int | None = None, *, synchronous_commit: bool = False
    ) -> list[FetchedJob]:
        """Claim up to ``batch_size`` jobs of ``queue`` within its group limits (and ``cap``).

        One statement looks at the next ``batch_size`` runnable jobs of groups below their limit;
        when a group had more of them than it could take, another look finds the jobs behind them,
        until the budget is spent or a look finds nothing."""
        limit = self.limits[queue]
        fetched: list[FetchedJob] = []
        while len(fetched) < batch_size:
            jobs = self.manager.fetch_group_limited(
                queue,
                batch_size - len(fetched),
                limit.default,
                limit.tiers,
                cap=cap,
                synchronous_commit=synchronous_commit,
            )
            if not jobs:
                break
            fetched.extend(jobs)
        return fetched

    def _check(self, queue: str) -> bool | None:
        """Whether the groups of ``queue`` can be served; None while the queue does not exist."""
        info = self.manager.info
        if not info.has("group"):
            logger.warning(
                "group_concurrency for %r is ignored: pg-boss schema %s has no job groups (12.6+)",
                queue,
                info.version,
            )
            return False
        row = self.manager.get_queue(queue)
        if row is None:
            return None
        if row["policy"] not in PLAIN_FETCH_POLICIES:
            logger.warning(
                "group_concurrency for %r is ignored: its policy %r fetches by rules of its own "
                "(groups are served for standard, short and exclusive queues)",
                queue,
                row["policy"],
            )
        return row["policy"] in PLAIN_FETCH_POLICIES
