"""Send jobs to pg-boss queues and read them back: zeke's Python client (the original ``client.ts``).

A task's id is its pg-boss queue name, and a job's payload is the plain JSON object a Node
``boss.work`` handler (or the Celery task registered for that queue) receives as its data. The
client is generic: it validates the shape of what it sends, not any task's schema.

Decisions, so callers know what to expect:

* **Deduplication is not an error.** When a queue policy (short, stately, exclusive), a throttle
  (``singleton_seconds``) or an existing ``id`` keeps pg-boss from inserting the job, ``send_job``
  returns ``{"id": None, "status": "deduplicated", "taskId": ...}``, as pg-boss's ``send`` returns
  null.
* **An unknown job id reads as ``None``** (``get_job_status``, ``cancel_job``, ``retry_job``); the
  HTTP API answers 404. A malformed id raises :class:`~transport.exceptions.InvalidJobId`.
* **Queues are not created here.** Sending to a queue that does not exist raises
  :class:`~transport.exceptions.QueueNotFound`; queues belong to whoever defines the task (a schema
  task, Node's ``createQueue``, ``get_manager().create_queue``).
* Errors are the transport's: ``InvalidQueueName``, ``InvalidPayload`` (not a JSON object, or it uses
  the reserved ``"__celery"`` key), ``InvalidOption`` (unknown or out-of-range send option),
  ``QueueNotFound``, ``InvalidJobId``. All are ``ValueError``/``LookupError`` subclasses of
  ``PgBossError``.
* Timestamps in a job status are ISO 8601 strings (UTC offset included), so a status is JSON as is.

``send_job(..., conn=...)`` joins the caller's open transaction (a psycopg2 connection, or a
SQLAlchemy 2 ``Connection``/``Session`` on the psycopg2 driver): the job exists only if that
transaction commits, and is never committed by the client.

The module-level manager (:func:`get_manager`) is built on first use from
:func:`zeke.database.database_url` (``DATABASE_PRIMARY_URL``, else the embedded database) and the
pg-boss schema of the settings (``ZEKE_PGBOSS_SCHEMA``); :func:`set_manager` swaps it (tests,
embedding in another app).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from transport import names
from transport.exceptions import InvalidOption, InvalidPayload
from transport.hub import Hub, hub_for
from transport.manager import JobManager
from transport.times import iso
from zeke.database import database_url
from zeke.settings import get_settings

__all__ = [
    "CELERY_KEY",
    "cancel_job",
    "delete_job",
    "find_jobs",
    "get_hub",
    "get_job_status",
    "get_manager",
    "job_status",
    "publish",
    "retry_job",
    "send_flow",
    "send_job",
    "send_jobs",
    "set_manager",
    "subscribe",
    "unsubscribe",
    "update_job",
    "upsert_job",
]

#: The reserved key of job data holding Celery's envelope (docs/ARCHITECTURE.md).
CELERY_KEY = "__celery"

_manager: JobManager | None = None
#: The hub the client's own manager lives on (None while a manager set from outside is used).
_hub: Hub | None = None
_lock = threading.Lock()


def get_manager() -> JobManager:
    """The client's JobManager, built on first use on the process's hub for the database (the pool the
    broker, result backend and API share; fork-safe)."""
    global _manager, _hub
    with _lock:
        if _manager is None:
            _hub = hub_for(database_url(), application_name="zeke-client")
            _manager = _hub.manager(get_settings().pgboss_schema)
        return _manager


def get_hub() -> Hub | None:
    """The process's hub behind :func:`get_manager` (its pool and LISTEN connection), or None when a
    manager set with :func:`set_manager` is in use."""
    get_manager()
    with _lock:
        return _hub


def set_manager(manager: JobManager | None) -> JobManager | None:
    """Use ``manager`` from now on (``None``: build one from the environment on next use).

    Returns the manager used until now, so a caller can put it back.
    """
    global _manager, _hub
    with _lock:
        previous, _manager, _hub = _manager, manager, None
        return previous


# -- sending --------------------------------------------------------------------------------------


def send_job(task_id: str, payload: Mapping[str, Any], *, conn: Any = None, **options: Any) -> dict[str, Any]:
    """Queue one job for ``task_id`` with ``payload`` as its data.

    ``options`` are pg-boss send options in snake_case: ``priority``, ``start_after`` (datetime, ISO
    string or seconds), ``singleton_key``, ``singleton_seconds``, ``retry_limit``, ``retry_delay``,
    ``retry_backoff``, ``retry_delay_max``, ``expire_in_seconds``, ``retention_seconds``,
    ``delete_after_seconds``, ``dead_letter``, ``heartbeat_seconds``, ``id``; anything unset comes
    from the queue. Returns ``{"id", "status": "created" | "deduplicated", "taskId"}``.
    """
    if "data" in options:
        raise InvalidOption("the payload is the job's data; 'data' is not a send option")
    names.validate_queue_name(task_id)  # pg-boss's own __pgboss__ queues are not tasks
    data = _payload(payload)
    job_id = get_manager().send(task_id, data, conn=_connection(conn), **options)
    return _sent(job_id, task_id)


def send_jobs(
    task_id: str, payloads: Iterable[Mapping[str, Any]], *, conn: Any = None, **options: Any
) -> list[dict[str, Any]]:
    """Queue many jobs for one task in one statement (all or none), with the same ``options``.

    Returns one ``send_job``-shaped result per payload, in order; deduplicated ones have id None.
    """
    if "id" in options or "data" in options:
        raise InvalidOption("send_jobs options apply to every job: 'id' and 'data' are not among them")
    names.validate_queue_name(task_id)
    items = [_payload(p) for p in payloads]
    ids = _new_ids(len(items))
    jobs = [{"data": data, "id": job_id, **options} for data, job_id in zip(items, ids, strict=True)]
    inserted = set(get_manager().send_many(task_id, jobs, conn=_connection(conn)))
    return [_sent(job_id if job_id in inserted else None, task_id) for job_id in ids]


def _new_ids(count: int) -> list[str]:
    """``count`` random (version 4) UUIDs as strings: ``str(uuid.uuid4())`` in bulk, about 3× faster."""
    raw = bytearray(os.urandom(16 * count))
    raw[6::16] = bytes(b & 0x0F | 0x40 for b in raw[6::16])  # version 4
    raw[8::16] = bytes(b & 0x3F | 0x80 for b in raw[8::16])  # RFC 4122 variant
    h = raw.hex()
    return [
        f"{h[i : i + 8]}-{h[i + 8 : i + 12]}-{h[i + 12 : i + 16]}-{h[i + 16 : i + 20]}-{h[i + 20 : i + 32]}"
        for i in range(0, 32 * count, 32)
    ]


def _connection(conn: Any) -> Any:
    """A SQLAlchemy Session as the Connection of its current transaction (begun if need be); other
    connections (psycopg2, SQLAlchemy Connection) as they are."""
    if conn is not None and callable(getattr(conn, "connection", None)) and hasattr(conn, "get_bind"):
        return conn.connection()
    return conn


def _payload(payload: Any) -> dict[str, Any]:
    if type(payload) is dict and CELERY_KEY not in payload and all(type(k) is str for k in payload):
        return dict(payload)  # the usual case, checked in one pass
    if not isinstance(payload, Mapping):
        raise InvalidPayload(f"a job payload must be a JSON object (dict), not {type(payload).__name__}")
    data = dict(payload)
    for key in data:
        if not isinstance(key, str):
            raise InvalidPayload(f"payload keys must be strings, not {key!r}")
    if CELERY_KEY in data:
        raise InvalidPayload(f"payload key {CELERY_KEY!r} is reserved for the Celery envelope")
    return data


def _sent(job_id: str | None, task_id: str) -> dict[str, Any]:
    if job_id is None:
        return {"id": None, "status": "deduplicated", "taskId": task_id}
    return {"id": job_id, "status": "created", "taskId": task_id}


# -- reading and acting on one job ----------------------------------------------------------------


def get_job_status(job_id: str, *, conn: Any = None) -> dict[str, Any] | None:
    """The job's status (see :func:`job_status`), or None when no job has that id."""
    row = get_manager().get_job(job_id, conn=_connection(conn))
    return job_status(row) if row is not None else None


def cancel_job(job_id: str) -> dict[str, Any] | None:
    """Cancel a created, retry or active job. Returns its status afterwards plus ``"changed"``
    (whether this call cancelled it), or None when no job has that id."""
    return _act(job_id, lambda m, name: m.cancel(name, [job_id]))


def retry_job(job_id: str) -> dict[str, Any] | None:
    """Give a failed job one more attempt (pg-boss ``retry``: state retry, retry limit + 1). Returns
    its status afterwards plus ``"changed"``, or None when no job has that id."""
    return _act(job_id, lambda m, name: m.retry(name, [job_id]))


def delete_job(job_id: str) -> bool | None:
    """Delete a job in any state (pg-boss ``deleteJob``). True when this call deleted it, None when no
    job has that id."""
    manager = get_manager()
    row = manager.get_job(job_id)
    if row is None:
        return None
    return bool(manager.delete(row["name"], [job_id]))


def _act(job_id: str, action: Any) -> dict[str, Any] | None:
    manager = get_manager()
    row = manager.get_job(job_id)
    if row is None:
        return None
    changed = bool(action(manager, row["name"]))
    after = manager.get_job(job_id)
    if after is None:  # deleted meanwhile (maintenance)
        return None
    return {**job_status(after), "changed": changed}


def job_status(row: Mapping[str, Any]) -> dict[str, Any]:
    """A ``pgboss.job`` row (schema 26..46) as a JSON-ready status with Node's camelCase names.

    ``taskId`` is the task the job runs: the Celery task name when Celery sent it (its queue, often
    the shared ``celery`` queue, is ``queue``), else the queue name, which is the task id of jobs sent
    by the client, the API or Node.

    ``data`` is the payload without the reserved ``"__celery"`` envelope; ``output`` is as pg-boss
    stores it (an object as is, anything else as ``{"value": x}``, errors as ``{name, message,
    stack}``). Columns an older schema lacks read as None.
    """
    data = row.get("data")
    task_id = row["name"]
    if isinstance(data, dict) and CELERY_KEY in data:
        envelope = data[CELERY_KEY]
        if isinstance(envelope, dict) and isinstance(envelope.get("task"), str):
            task_id = envelope["task"]  # sent by Celery, maybe to a shared queue such as "celery"
        data = {k: v for k, v in data.items() if k != CELERY_KEY}
    return {
        "id": str(row["id"]),
        "status": str(row["state"]),
        "taskId": task_id,
        "queue": row["name"],
        "data": data,
        "output": row.get("output"),
        "priority": row.get("priority"),
        "policy": row.get("policy"),
        "retryCount": row.get("retry_count"),
        "retryLimit": row.get("retry_limit"),
        "retryDelay": row.get("retry_delay"),
        "retryBackoff": row.get("retry_backoff"),
        "retryDelayMax": row.get("retry_delay_max"),
        "expireInSeconds": row.get("expire_seconds"),
        "deleteAfterSeconds": row.get("deletion_seconds"),
        "heartbeatSeconds": row.get("heartbeat_seconds"),
        "singletonKey": row.get("singleton_key"),
        "singletonOn": iso(row.get("singleton_on")),
        "deadLetter": row.get("dead_letter"),
        "createdOn": iso(row.get("created_on")),
        "startAfter": iso(row.get("start_after")),
        "startedOn": iso(row.get("started_on")),
        "heartbeatOn": iso(row.get("heartbeat_on")),
        "completedOn": iso(row.get("completed_on")),
        "keepUntil": iso(row.get("keep_until")),
        "sourceName": row.get("source_name"),
        "sourceId": str(row["source_id"]) if row.get("source_id") is not None else None,
    }


# -- the rest of pg-boss's job verbs (thin calls into JobManager; docs/PGBOSS_API.md) --------------


def update_job(task_id: str, payload: Mapping[str, Any] | None = None, **options: Any) -> dict[str, Any]:
    """pg-boss ``update``: edit jobs of ``task_id`` that have not started, by ``id=`` or
    ``singleton_key=`` (with ``match="newest" | "oldest" | "all"``). ``payload`` None keeps the data;
    other options as for :func:`send_job`. Returns ``{"jobs": [ids], "updated": n}``."""
    names.validate_queue_name(task_id)
    if payload is None:
        return dict(get_manager().update(task_id, **options))
    return dict(get_manager().update(task_id, _payload(payload), **options))


def upsert_job(task_id: str, payload: Mapping[str, Any], **options: Any) -> dict[str, Any]:
    """pg-boss ``upsert``: :func:`update_job`, or send the job when none is waiting with that
    ``id``/``singleton_key``. Returns ``{"jobs": [ids], "updated": n, "inserted": n}``."""
    names.validate_queue_name(task_id)
    return dict(get_manager().upsert(task_id, _payload(payload), **options))


def send_flow(jobs: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """pg-boss ``flow``: send jobs that wait for each other, all or none. Each job is
    ``{"ref", "task_id", "payload", "options"?, "depends_on"?: [refs]}``; returns ref -> job id."""
    flow = []
    for job in jobs:
        unknown = set(job) - {"ref", "task_id", "payload", "options", "depends_on"}
        if unknown:
            raise InvalidOption(f"unknown flow job key(s): {', '.join(sorted(unknown))}")
        names.validate_queue_name(job.get("task_id"))
        item = {"ref": job.get("ref"), "name": job["task_id"], "data": _payload(job.get("payload", {}))}
        for key in ("options", "depends_on"):
            if job.get(key) is not None:
                item[key] = job[key]
        flow.append(item)
    return get_manager().flow(flow)


def find_jobs(task_id: str, **filters: Any) -> list[dict[str, Any]]:
    """pg-boss ``findJobs``: statuses (see :func:`job_status`) of ``task_id``'s jobs matching
    ``id``, ``key``, ``data`` (contained in the job's data), ``queued``; paged by ``limit``/``after``."""
    names.validate_queue_name(task_id)
    return [job_status(row) for row in get_manager().find_jobs(task_id, **filters)]


def publish(event: str, payload: Mapping[str, Any], **options: Any) -> dict[str, str | None]:
    """pg-boss ``publish``: send the payload to every task subscribed to ``event``; returns
    task id -> job id (None where deduplicated)."""
    return get_manager().publish(event, _payload(payload), **options)


def subscribe(event: str, task_id: str) -> None:
    """pg-boss ``subscribe``: jobs published to ``event`` are sent to ``task_id`` too."""
    get_manager().subscribe(event, task_id)


def unsubscribe(event: str, task_id: str) -> None:
    """pg-boss ``unsubscribe``."""
    get_manager().unsubscribe(event, task_id)
