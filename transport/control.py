"""Worker remote control on pg-boss: ``celery inspect scheduled`` also lists ETA jobs the database holds.

With native ETA (the default) a countdown or ``eta`` task waits as a ``created``/``retry`` row with a
later ``start_after`` instead of in the worker's timer, so Celery's own ``scheduled`` command would
list nothing. The command registered here answers with the timer's entries (ETA messages of other
transports' habits, ``native_eta=False``) plus the database's waiting jobs of the queues this worker
consumes, in Celery's shape (``{"eta", "priority", "request": {...}}``).
"""

from __future__ import annotations

import logging
from typing import Any

from transport import envelope

logger = logging.getLogger(__name__)

#: Most database-held ETA jobs one ``inspect scheduled`` reply lists.
SCHEDULED_LIMIT = 1000


def register() -> None:
    """Replace Celery's ``scheduled`` inspect command (alias ``dump_schedule``) with :func:`scheduled`."""
    try:
        from celery.worker import control as celery_control
    except ImportError:  # plain Kombu
        return
    if getattr(celery_control.Panel.data.get("scheduled"), "__module__", None) == __name__:
        return
    celery_control.inspect_command(name="scheduled", alias="dump_schedule")(scheduled)


def scheduled(state: Any, **kwargs: Any) -> list[dict[str, Any]]:
    """List of currently scheduled ETA/countdown tasks (the worker's timer and the database's)."""
    from celery.worker import control as celery_control

    entries = list(celery_control._iter_schedule_requests(state.consumer.timer))
    return entries + database_scheduled(state.consumer, getattr(state, "hostname", None))


def database_scheduled(consumer: Any, hostname: str | None = None) -> list[dict[str, Any]]:
    """ETA jobs waiting in the database for the durable queues ``consumer`` consumes."""
    try:
        transport = consumer.connection.transport
        manager = transport.manager
        queues = [q.name for q in consumer.task_consumer.queues if q.name not in transport.mailboxes]
    except AttributeError:  # another transport, or not consuming yet
        return []
    try:
        rows = manager.list_scheduled(queues, SCHEDULED_LIMIT)
    except transport.connection_errors as exc:
        logger.warning("inspect scheduled: could not read ETA jobs from the database: %r", exc)
        return []
    return [_entry(row, hostname, transport) for row in rows]


def _entry(row: dict[str, Any], hostname: str | None, transport: Any) -> dict[str, Any]:
    data = row.get("data")
    env = data.get(envelope.RESERVED_KEY) if isinstance(data, dict) else None
    if isinstance(env, dict) and "task" in env:
        headers = env.get("headers") or {}
        name = env["task"]
        task_id = headers.get("id", row["id"])
        args = env.get("args") or []
        kwargs = {k: v for k, v in data.items() if k != envelope.RESERVED_KEY}
    else:  # sent by Node or SQL: delivered to the task registered for its queue
        name = transport.queue_tasks.task_for(row["name"])
        task_id = row["id"]
        args, kwargs = ([], data) if isinstance(data, dict) else ([] if data is None else [data], {})
    eta = row["start_after"].isoformat() if row.get("start_after") else None
    return {
        "eta": eta,
        "priority": row.get("priority"),
        "request": {
            "id": task_id,
            "name": name,
            "args": args,
            "kwargs": kwargs,
            "type": name,
            "hostname": hostname,
            "time_start": None,
            "acknowledged": False,
            "delivery_info": {
                "exchange": "",
                "routing_key": row["name"],
                "priority": row.get("priority"),
                "redelivered": bool(row.get("retry_count")),
            },
            "worker_pid": None,
            "eta": eta,
            "retries": row.get("retry_count"),
        },
    }
