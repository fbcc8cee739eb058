"""The supervisor: pg-boss's monitor, maintenance and flow passes, run by Python workers too.

Every ``supervise_interval`` seconds it lists the schema's queues and

1. claims those whose monitor pass is due (``monitor_interval``; Node's ``monitor_claim_on``/
   ``monitor_on`` claim) and, for them, counts their queue statistics into the queue rows and warns of
   backlogs (``transport.upkeep``), then fails active jobs past ``expire_seconds`` ("job timed out")
   and jobs whose heartbeat is older than ``heartbeat_seconds`` ("job heartbeat timeout"), through
   pg-boss's retry/backoff/dead-letter path;
2. claims those whose deletion pass is due (``maintenance_interval``; ``maintain_on``), deletes
   finished jobs past ``deletion_seconds`` and queued jobs past ``keep_until``, then recounts what the
   queue retains (schema 46) and drops dependency rows of deleted jobs;
3. prunes Node's instance registry and sweeps the transport's broadcast log.

Every ``flow_interval`` seconds (pg-boss's ``flowIntervalSeconds``, 5) it claims the flow pass
(``version.flow_on``) and unblocks the children of completed flow parents, as Node's resolver does.

The claims and advisory-lock keys are Node's own, so Node and Python supervisors (and several
Python workers) share the work and never act twice. While a Node instance that supervises is
registered alive (schema 44+), Python steps back: it claims only what has been due for a whole
further interval, so Node's own timer, which tries once per interval, keeps its turn and Python
takes over only when Node stops. It runs in a daemon thread of the worker's main process, so its
statements never stall the event loop; a database outage is logged and retried on the next pass.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from transport import worker_events
from transport.fanout import BroadcastLog
from transport.manager import JobManager
from transport.service import Service
from transport.upkeep import Upkeep

logger = logging.getLogger(__name__)

#: The Celery event type a queue warning is sent as.
WARNING_EVENT = "pgboss-queue-warning"


def emit_warning(warning: dict[str, Any]) -> None:
    """A supervisor warning as a log record and, in a Celery worker sending task events (``-E``),
    as a ``pgboss-queue-warning`` event that ``celery events`` and Flower receive."""
    logger.warning("pg-boss warning: %s", warning["message"])
    worker_events.send(WARNING_EVENT, **warning)


class Supervisor(Service):
    thread_name = "pgboss-supervisor"
    #: Seconds between passes (pg-boss ``superviseIntervalSeconds``).
    supervise_interval: float = 60.0
    #: Seconds between expiry/heartbeat checks of one queue (pg-boss ``monitorIntervalSeconds``).
    monitor_interval: float = 60.0
    #: Seconds between deletion passes of one queue (pg-boss ``maintenanceIntervalSeconds``).
    maintenance_interval: float = 86400.0
    #: Seconds between flow-resolution passes (pg-boss ``flowIntervalSeconds``).
    flow_interval: float = 5.0
    #: Broadcast rows older than this are deleted.
    broadcast_retention: float = 60.0

    def __init__(
        self,
        manager: JobManager,
        *,
        supervise_interval: float | None = None,
        monitor_interval: float | None = None,
        maintenance_interval: float | None = None,
        flow_interval: float | None = None,
        broadcast_retention: float | None = None,
        on_jobs_moved: Callable[[], None] | None = None,
        on_warning: Callable[[dict[str, Any]], None] = emit_warning,
    ) -> None:
        super().__init__(logger, "pg-boss supervisor")
        self.manager = manager
        self.log = BroadcastLog(manager)
        self.upkeep = Upkeep(manager)
        #: Called with each backlog warning (a dict with kind, queue, queued, threshold, message).
        self.on_warning = on_warning
        if flow_interval is not None:
            self.flow_interval = flow_interval
        if supervise_interval is not None:
            self.supervise_interval = supervise_interval
        if monitor_interval is not None:
            self.monitor_interval = monitor_interval
        if maintenance_interval is not None:
            self.maintenance_interval = maintenance_interval
        if broadcast_retention is not None:
            self.broadcast_retention = broadcast_retention
        #: Called (from this thread) when a pass moved jobs back to retry: their start times changed.
        self.on_jobs_moved = on_jobs_moved

    def stop(self, timeout: float | None = 5.0, *, join: bool = True) -> None:
        super().stop(timeout, join=join)

    def run(self) -> None:
        next_pass = next_flow = time.monotonic()
        while not self.stopping:
            if time.monotonic() >= next_pass:
                self.attempt(self.run_once)
                next_pass = time.monotonic() + self.supervise_interval
            if time.monotonic() >= next_flow:
                self.attempt(self.resolve_flows)
                next_flow = time.monotonic() + self.flow_interval
            self.idle(max(0.0, min(next_pass, next_flow) - time.monotonic()))

    def _deference(self) -> float:
        """How many intervals a claim must be due for: 2 while a Node supervisor is alive, else 1."""
        return 2.0 if self.upkeep.node_supervisors() else 1.0

    def run_once(self) -> dict[str, int]:
        """One pass; returns how many jobs (and queue rows) each step moved."""
        names = [q["name"] for q in self.manager.list_queues()]
        moved = {"counted": 0, "expired": 0, "heartbeat": 0, "deleted": 0, "dependencies": 0, "broadcasts": 0}
        if names:
            deference = self._deference()
            due = self.manager.claim_for_monitor(names, self.monitor_interval * deference)
            if due:
                counted, warnings = self.upkeep.refresh_stats(due)
                moved["counted"] = len(counted)
                for warning in warnings:
                    self.on_warning(warning)
                moved["expired"] = self.manager.expire(due)
                moved["heartbeat"] = self.manager.fail_lost_heartbeats(due)
            maintain = self.manager.claim_for_deletion(names, self.maintenance_interval * deference)
            if maintain:
                moved["deleted"] = self.manager.delete_finished(maintain)
                moved["dependencies"] = self.upkeep.after_deletion(maintain)
        self.upkeep.prune_instances()
        moved["broadcasts"] = self.log.sweep(self.broadcast_retention)
        if (moved["expired"] or moved["heartbeat"]) and self.on_jobs_moved is not None:
            self.on_jobs_moved()
        if moved["expired"] or moved["heartbeat"] or moved["deleted"]:
            logger.info("pg-boss supervisor: %s", moved)
        return moved

    def resolve_flows(self) -> tuple[int, int]:
        """One flow pass when this process wins its claim: (parents resolved, children unblocked)."""
        if not self.manager.info.has("flows"):
            return 0, 0
        if not self.manager.claim_flow_pass(self.flow_interval * self._deference()):
            return 0, 0
        names = [q["name"] for q in self.manager.list_queues()]
        resolved = self.manager.resolve_flows(names) if names else (0, 0)
        if resolved[0]:
            logger.info("pg-boss flows: %d parents resolved, %d children unblocked", *resolved)
        return resolved
