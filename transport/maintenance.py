"""The supervisor: pg-boss's monitor and maintenance passes, run by Python workers too.

Every ``supervise_interval`` seconds it lists the schema's queues and

1. claims those whose monitor pass is due (``monitor_interval``; Node's ``monitor_claim_on``/
   ``monitor_on`` claim) and, for them, fails active jobs past ``expire_seconds`` ("job timed out")
   and jobs whose heartbeat is older than ``heartbeat_seconds`` ("job heartbeat timeout"), through
   pg-boss's retry/backoff/dead-letter path;
2. claims those whose deletion pass is due (``maintenance_interval``; ``maintain_on``) and deletes
   finished jobs past ``deletion_seconds`` and queued jobs past ``keep_until``;
3. sweeps the transport's broadcast log.

The claims and advisory-lock keys are Node's own, so Node and Python supervisors (and several
Python workers) share the work and never act twice. It runs in a daemon thread of the worker's main
process, so its statements never stall the event loop; a database outage is logged and retried on
the next pass.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from transport.db import CONNECTION_ERRORS
from transport.fanout import BroadcastLog
from transport.manager import JobManager
from transport.outage import Outage

logger = logging.getLogger(__name__)


class Supervisor:
    #: Seconds between passes (pg-boss ``superviseIntervalSeconds``).
    supervise_interval: float = 60.0
    #: Seconds between expiry/heartbeat checks of one queue (pg-boss ``monitorIntervalSeconds``).
    monitor_interval: float = 60.0
    #: Seconds between deletion passes of one queue (pg-boss ``maintenanceIntervalSeconds``).
    maintenance_interval: float = 86400.0
    #: Broadcast rows older than this are deleted.
    broadcast_retention: float = 60.0

    def __init__(
        self,
        manager: JobManager,
        *,
        supervise_interval: float | None = None,
        monitor_interval: float | None = None,
        maintenance_interval: float | None = None,
        broadcast_retention: float | None = None,
        on_jobs_moved: Callable[[], None] | None = None,
    ) -> None:
        self.manager = manager
        self.log = BroadcastLog(manager)
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
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._outage = Outage(logger, "pg-boss supervisor")

    def start(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="pgboss-supervisor", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except CONNECTION_ERRORS as exc:  # a DB outage must not kill the supervisor
                self._outage.failed(exc)
            except Exception as exc:
                logger.warning("pg-boss supervisor pass failed (will retry): %r", exc)
            else:
                self._outage.succeeded()
            self._stop.wait(self.supervise_interval)

    def run_once(self) -> dict[str, int]:
        """One pass; returns how many jobs each step moved."""
        names = [q["name"] for q in self.manager.list_queues()]
        moved = {"expired": 0, "heartbeat": 0, "deleted": 0, "broadcasts": 0}
        if names:
            due = self.manager.claim_for_monitor(names, self.monitor_interval)
            if due:
                moved["expired"] = self.manager.expire(due)
                moved["heartbeat"] = self.manager.fail_lost_heartbeats(due)
            maintain = self.manager.claim_for_deletion(names, self.maintenance_interval)
            if maintain:
                moved["deleted"] = self.manager.delete_finished(maintain)
        moved["broadcasts"] = self.log.sweep(self.broadcast_retention)
        if (moved["expired"] or moved["heartbeat"]) and self.on_jobs_moved is not None:
            self.on_jobs_moved()
        if moved["expired"] or moved["heartbeat"] or moved["deleted"]:
            logger.info("pg-boss supervisor: %s", moved)
        return moved
