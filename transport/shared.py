"""What the transports of one process share besides their hub (:mod:`transport.hub`): the statements
they prepare, the task ids Celery revoked here, and the registration of the transport with Celery's
Mingle and Gossip.
"""

from __future__ import annotations

import threading
from typing import Any

from transport import envelope
from transport.bindings import install
from transport.manager import JobManager
from transport.settle import Revoked

DRIVER_TYPE = "pgboss"
#: Statements on the publish, fetch and settle paths: planned once per connection, not per call.
#: Only statements whose generic plan stays right however the job table grows after planning (see
#: transport.prepared); the id lookups (fail, touch, restore, cancel, retry_in_place) are planned per
#: call: planned on an empty queue, their generic plans scanned every row of it.
PREPARED_STATEMENTS = (
    "send_job",
    "send_jobs",
    "fetch_jobs",
    "fetch_plain_jobs",
    "complete_jobs",
    "next_start_after",
    "broadcast_publish",
    "broadcast_read",
    "wake",
)

_lock = threading.Lock()
_revoked_ids: Revoked | None = None


def ensure_installed(manager: JobManager) -> None:
    """Install the transport's tables (and the pg-boss schema if absent) and prepare its hot
    statements from now on: what a transport does once per process through its hub."""
    install(manager)
    manager.sql.prepare(PREPARED_STATEMENTS)


def revoked_ids() -> Revoked:
    """Task ids Celery revoked in this process, from the ``task_revoked`` signal (settle_on_ack)."""
    global _revoked_ids
    with _lock:
        if _revoked_ids is None:
            _revoked_ids = Revoked()
            try:
                from celery.signals import task_revoked
            except ImportError:  # plain Kombu
                pass
            else:
                ids = _revoked_ids

                def on_revoked(sender: Any = None, request: Any = None, **kwargs: Any) -> None:
                    if request is not None and getattr(request, "id", None):
                        ids.add(envelope.job_id_for(request.id) or request.id)

                task_revoked.connect(on_revoked, weak=False)
        return _revoked_ids


def register_with_celery() -> None:
    """Let Mingle (revoked-id sync at start) and Gossip (worker events) run on this transport, stamp
    task messages with their pg-boss options, and answer ``inspect scheduled`` from the database."""
    try:
        from celery.worker.consumer.gossip import Gossip
        from celery.worker.consumer.mingle import Mingle
    except ImportError:  # plain Kombu
        return
    Mingle.compatible_transports = set(Mingle.compatible_transports) | {DRIVER_TYPE}
    Gossip.compatible_transports = set(Gossip.compatible_transports) | {DRIVER_TYPE}
    from transport import celery_options, control

    celery_options.connect()  # the pgboss option namespace and retry policy of task messages
    control.register()  # inspect scheduled: ETA jobs the database holds
