"""How a consumer claims jobs: one autocommit statement on the consuming session, a transaction
for queues with a concurrency limit (its advisory lock must last until the claim commits), and
group-limited queues each on their own (:mod:`transport.groups`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from transport.groups import GroupFetcher
from transport.manager import JobManager
from transport.sessions import Sessions


class Claims:
    def __init__(
        self, manager: JobManager, session: Sessions, groups: GroupFetcher, *, synchronous_commit: bool
    ) -> None:
        self.manager = manager
        #: Autocommit checkouts whose commit mode is the transport's (async unless synchronous_commit).
        self.session = session
        self.groups = groups
        self.synchronous_commit = synchronous_commit

    def fetch(self, queues: list[str], limit: int, limits: Mapping[str, int] | None = None) -> list[Any]:
        """Claim up to ``limit`` jobs of ``queues``."""
        grouped = [q for q in queues if self.groups.limited(q)] if self.groups.limits else []
        if grouped:
            return self._fetch_grouped(queues, grouped, limit, limits or {})
        if limits:
            return self.manager.fetch(
                queues, limit, concurrency_limits=limits, synchronous_commit=self.synchronous_commit
            )
        with self.session.connection() as conn:
            # The session already has the commit mode; synchronous_commit=True means "no SET LOCAL".
            return self.manager.fetch(queues, limit, conn=conn, synchronous_commit=True)

    def _fetch_grouped(
        self, queues: list[str], grouped: list[str], limit: int, limits: Mapping[str, int]
    ) -> list[Any]:
        """The queues without group limits in one fetch, then each group-limited one on its own."""
        others = [q for q in queues if q not in grouped]
        jobs = self.fetch(others, limit, limits) if others else []
        for queue in grouped:
            if len(jobs) >= limit:
                break
            jobs += self.groups.fetch(
                queue, limit - len(jobs), limits.get(queue), synchronous_commit=self.synchronous_commit
            )
        return jobs

    def open_session(self) -> None:
        """Check a consuming connection out and back in (a fetch thread's first, while the server
        takes new connections)."""
        with self.session.connection():
            pass
