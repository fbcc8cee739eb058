"""Kombu messages ⇄ pg-boss jobs: what a Celery publish stores in ``job.data`` and how a job is delivered.

A job's ``data`` is the plain payload a Node ``boss.work`` handler reads, plus one reserved key,
``"__celery"``, holding everything else Kombu needs to rebuild the exact message::

    {"story_id": "x",                        # the task's kwargs, at the top level
     "__celery": {
        "v": 1,
        "task": "tasks.analyze",             # Celery protocol 2 only
        "args": [1, 2],                      # positional arguments (omitted when empty)
        "embed": {"callbacks": [...], ...},  # link/link_error/chain/chord (omitted when all null)
        "headers": {...},                    # every other header (omitted when Celery's default)
        "properties": {...},                 # reply_to, expiration, custom properties
        "content_type": "...", "content_encoding": "...",   # only when not JSON/utf-8
        "json": <value>,                     # a JSON body that is not an object (plain Kombu)
        "body": "<base64>"}}                 # a body that is not JSON (pickle, msgpack, compressed)

The job row itself carries the rest: ``id`` = the task id, ``priority`` = the message priority,
``start_after`` = the ``eta`` header, ``keep_until`` = the ``expires`` header. A Celery task id that
is not a UUID maps to a stable ``uuid5`` job id (:func:`job_id_for`); the original id stays in the
stored headers.

Three message kinds are stored:

* **Celery protocol 2** (a ``task`` header and a JSON ``[args, kwargs, embed]`` body): kwargs at the
  top level, the rest under ``"__celery"``.
* **Other JSON objects** (plain Kombu ``SimpleQueue.put({...})``): the object at the top level.
* **Anything else**: ``{"__celery": {..., "body": base64}}``; Node sees no payload.

A job **without** ``"__celery"`` was sent by Node or SQL. It is delivered as a Celery protocol-2
message for the task registered for its queue, with ``data`` as kwargs (``None`` as no arguments,
any other non-object value as the one positional argument) and the job id as task id.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from transport import wellformed
from transport.exceptions import InvalidOption, InvalidPayload
from transport.names import CANONICAL_UUID

RESERVED_KEY = "__celery"
VERSION = 1
JSON = "application/json"
#: Header (of task messages) and ``delivery_info`` key (of every message) carrying the pg-boss
#: attempt (``retry_count``) a delivery was fetched with.
ATTEMPT_HEADER = "pgboss_attempt"
#: Message property/header carrying pg-boss send options (see :mod:`transport.celery_options`).
OPTIONS_KEY = "pgboss"
#: Header set when a delivery's hard time limit comes from the job's expire_seconds.
EXPIRY_LIMIT_HEADER = "pgboss_expiry_limit"
#: Seconds (at most) the hard time limit ends an attempt before its job expires, and the soft one
#: before the hard one (see expiry_time_limits).
EXPIRY_MARGIN = 1.0
SOFT_MARGIN = 5.0
#: Namespace of the job ids derived from Celery task ids that are not UUIDs.
TASK_ID_NAMESPACE = uuid.UUID("6f1a6b0e-0c1d-5d1e-9a55-7a656b650001")

#: Celery protocol-2 headers and the values ``as_task_v2`` gives them by default; stored only
#: when different. ``root_id`` defaults to the task id (see :func:`to_message`).
DEFAULT_HEADERS: dict[str, Any] = {
    "lang": "py",
    "shadow": None,
    "eta": None,
    "expires": None,
    "group": None,
    "group_index": None,
    "retries": 0,
    "timelimit": [None, None],
    "parent_id": None,
    "ignore_result": False,
    "replaced_task_nesting": 0,
    "stamped_headers": None,
    "stamps": {},
}
_EMPTY_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
#: The key of a delivered message that carries its task body's value (see :func:`to_message`).
BODY_VALUE = "pgboss_body_value"
#: Properties every delivery gets again, so they are not stored.
_DERIVED_PROPERTIES = frozenset({"delivery_tag", "delivery_info", "body_encoding", "priority"})


@dataclass(frozen=True, slots=True)
class Job:
    """What ``manager.send`` needs for one published message."""

    data: dict[str, Any]
    id: str | None
    priority: int
    start_after: dt.datetime | None
    keep_until: dt.datetime | None
    #: The ``retries`` header of a Celery message (a republish with retries > 0 is a Task.retry()).
    retries: int
    #: The pg-boss attempt (``retry_count``) of the delivery a republish comes from (Task.retry()
    #: copies the request's headers), or None for a fresh message.
    attempt: int | None = None
    #: pg-boss send options of the ``pgboss`` namespace (see :mod:`transport.celery_options`).
    options: Mapping[str, Any] = field(default_factory=dict)


def request_attempt(request: Any) -> int | None:
    """The attempt (:data:`ATTEMPT_HEADER`) a task's request was delivered with, or None.

    Celery copies message headers into the request dict, so it is an attribute of the task's
    ``Context`` (worker child) and of the parent's ``Request._context``; custom headers also
    show up in ``request.headers`` for protocol-2 messages.
    """
    if request is None:
        return None
    value = getattr(request, ATTEMPT_HEADER, None)
    if value is None:
        headers = getattr(request, "headers", None) or {}
        value = headers.get(ATTEMPT_HEADER) if isinstance(headers, dict) else None
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def job_id_for(task_id: Any) -> str | None:
    """The pg-boss job id of a Celery task id: the id itself when it is a UUID, else a stable uuid5."""
    if task_id is None or task_id == "":
        return None
    if type(task_id) is str and CANONICAL_UUID.match(task_id):  # Celery's own ids: already canonical
        return task_id
    try:
        return str(uuid.UUID(str(task_id)))
    except ValueError:
        return str(uuid.uuid5(TASK_ID_NAMESPACE, str(task_id)))


def parse_time(value: Any) -> dt.datetime | None:
    """An ``eta``/``expires`` header (ISO 8601; naive means UTC) as an aware datetime."""
    if value in (None, ""):
        return None
    if isinstance(value, dt.datetime):
        parsed = value
    elif isinstance(value, int | float):
        return dt.datetime.fromtimestamp(value, dt.UTC)
    else:
        try:
            parsed = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def to_job(message: Mapping[str, Any], *, native_eta: bool = True) -> Job:
    """The job for a Kombu message as ``Channel.basic_publish`` hands it to ``_put``."""
    headers = dict(message.get("headers") or {})
    # A republish (Task.retry) copies it: the attempt asking; each delivery stamps its own.
    attempt = headers.pop(ATTEMPT_HEADER, None)
    properties = dict(message.get("properties") or {})
    options = _send_options(properties.pop(OPTIONS_KEY, None), headers.pop(OPTIONS_KEY, None))
    content_type = message.get("content-type")
    content_encoding = message.get("content-encoding")
    body = message.get("body")
    if properties.get("body_encoding") == "base64" and isinstance(body, str | bytes):
        body = base64.b64decode(body)

    envelope: dict[str, Any] = {"v": VERSION}
    data: dict[str, Any]
    task_id = headers.pop("id", None) if "task" in headers else None
    job_id = job_id_for(task_id)
    if task_id is not None and job_id != str(task_id):
        headers["id"] = task_id  # a non-UUID task id: keep the original
    parsed = _json_body(body, content_type, content_encoding, headers)

    if "task" in headers and _is_protocol2(parsed):
        args, kwargs, embed = parsed
        if RESERVED_KEY in kwargs:
            raise InvalidPayload(
                f"task keyword argument {RESERVED_KEY!r} is reserved by the pg-boss transport"
            )
        envelope["task"] = headers.pop("task")
        if args:
            envelope["args"] = args
        if embed and any(v is not None for v in embed.values()):
            envelope["embed"] = embed
        if headers.get("root_id") == task_id:
            del headers["root_id"]
        data = dict(kwargs)
    elif isinstance(parsed, dict) and RESERVED_KEY not in parsed:
        data = dict(parsed)
    elif parsed is not _NOT_JSON and not isinstance(parsed, dict):
        envelope["json"] = parsed
        data = {}
    else:
        envelope["body"] = base64.b64encode(_as_bytes(body, content_encoding)).decode("ascii")
        envelope["content_type"] = content_type
        envelope["content_encoding"] = content_encoding
        data = {}
    if parsed is not _NOT_JSON and (content_type, content_encoding) != (JSON, "utf-8"):
        envelope["content_type"] = content_type
        envelope["content_encoding"] = content_encoding

    eta = parse_time(headers.get("eta")) if native_eta else None
    expires = parse_time(headers.get("expires"))
    retries = headers.get("retries") or 0
    stored = {k: v for k, v in headers.items() if k not in DEFAULT_HEADERS or DEFAULT_HEADERS[k] != v}
    if stored:
        envelope["headers"] = stored
    props = {k: v for k, v in properties.items() if k not in _DERIVED_PROPERTIES}
    if task_id is not None and props.get("correlation_id") == task_id:
        del props["correlation_id"]
    if "reply_to" in props and props["reply_to"] == "":
        del props["reply_to"]
    if props.get("delivery_mode") == 2:
        del props["delivery_mode"]
    if props:
        envelope["properties"] = props
    data[RESERVED_KEY] = envelope
    return Job(
        data=data,
        id=job_id,
        priority=_priority(properties.get("priority")),
        start_after=eta,
        keep_until=expires,
        retries=retries if isinstance(retries, int) else 0,
        attempt=attempt if isinstance(attempt, int) and not isinstance(attempt, bool) else None,
        options=options,
    )


def _send_options(*given: Any) -> dict[str, Any]:
    """The ``pgboss`` send options of a message: a plain Kombu publish's property, overridden by
    what the Celery sender merged into the header."""
    options: dict[str, Any] = {}
    for value in given:
        if value is None:
            continue
        if not isinstance(value, Mapping):
            raise InvalidOption(f"{OPTIONS_KEY} options must be a dict, not {type(value).__name__}")
        if "__invalid__" in value:  # the sender's check failed (a signal handler cannot raise)
            raise InvalidOption(str(value["__invalid__"]))
        options.update(value)
    refused = {"id", "data"} & set(options)
    if refused:
        raise InvalidOption(
            f"{OPTIONS_KEY} option(s) {', '.join(sorted(refused))} are not send options here: the "
            "task id is the job id and the message body its data"
        )
    return options


def to_message(
    job_id: str,
    queue: str,
    data: Any,
    *,
    priority: int,
    attempt: int,
    delivery_tag: str,
    task_name: str | None = None,
    native_eta: bool = True,
    expire_seconds: float | None = None,
    task_limits: tuple[float | None, float | None] = (None, None),
    checked: bool = False,
    body_value: bool = False,
) -> dict[str, Any]:
    """The Kombu payload (``body``/``headers``/``properties``) delivering a fetched job, or
    :class:`~transport.exceptions.MalformedJob` saying why its data cannot be one.

    ``expire_seconds`` (the job's) bounds the attempt: the ``timelimit`` header becomes the tighter of
    the message's (else ``task_limits``, the worker's task's ``(hard, soft)``) and
    :func:`expiry_time_limits`, so the pool stops the attempt before pg-boss's supervisor expires
    and retries the job, and two attempts of one job never run at once.

    ``task_name`` is the task a job without ``"__celery"`` runs as (see :func:`is_foreign`).
    With ``native_eta`` the ``eta`` header is the one sent (``request.eta``), capped at now: the job
    became runnable at its ``start_after``, so the worker runs it at once instead of holding it.
    ``retries`` is the job's ``retry_count`` (``attempt``): Celery and pg-boss count one budget.

    ``checked``: the caller ran :func:`transport.wellformed.check` on ``data`` already. With
    ``body_value``, a task message also carries (under :data:`BODY_VALUE`) the value its JSON body
    encodes, so the consumer need not parse the text it was just made from (see
    :class:`transport.channel.Message`).
    """
    if not checked:
        wellformed.check(data)  # MalformedJob naming what Celery would choke on
    envelope = data.get(RESERVED_KEY) if isinstance(data, dict) else None
    delivery_info = {"exchange": "", "routing_key": queue, ATTEMPT_HEADER: attempt}
    if attempt > 0:
        delivery_info["redelivered"] = True
    properties: dict[str, Any] = {
        "delivery_mode": 2,
        "priority": priority,
        "delivery_tag": delivery_tag,
        "delivery_info": delivery_info,
    }
    if envelope is None:
        message = _foreign_message(job_id, data, task_name, attempt, properties)
        _bound_by_expiry(message["headers"], expire_seconds, task_limits)
        return message

    headers: dict[str, Any] = {}
    # Stored properties never override what each delivery sets itself (its tag, its attempt).
    stored_properties = envelope.get("properties") or {}
    properties.update((k, v) for k, v in stored_properties.items() if k not in _DERIVED_PROPERTIES)
    content_type = envelope.get("content_type", JSON)
    content_encoding = envelope.get("content_encoding", "utf-8")
    stored_headers = envelope.get("headers") or {}
    if "task" in envelope:
        task_id = stored_headers.get("id", job_id)
        headers.update(DEFAULT_HEADERS)
        headers.update(task=envelope["task"], id=task_id, root_id=task_id)
        headers.update(stored_headers)
        properties.setdefault("correlation_id", task_id)
        properties.setdefault("reply_to", "")
        kwargs = {k: v for k, v in data.items() if k != RESERVED_KEY}
        embed = envelope.get("embed") or dict(_EMPTY_EMBED)
        value = [envelope.get("args") or [], kwargs, embed]
        body: Any = json.dumps(value)
    else:
        headers.update(stored_headers)
        if "body" in envelope:
            body = envelope["body"]
            properties["body_encoding"] = "base64"
        elif "json" in envelope:
            body = json.dumps(envelope["json"])
        else:
            body = json.dumps({k: v for k, v in data.items() if k != RESERVED_KEY})
    if "task" in envelope:
        headers[ATTEMPT_HEADER] = attempt  # plain Kombu messages keep their headers exactly
        # One retry budget: Celery's request.retries is the job's retry_count.
        headers["retries"] = attempt
        if native_eta:
            headers["eta"] = _due_eta(headers.get("eta"))
        _bound_by_expiry(headers, expire_seconds, task_limits)
    message = {
        "body": body,
        "content-type": content_type,
        "content-encoding": content_encoding,
        "headers": headers,
        "properties": properties,
    }
    if body_value and "task" in envelope:
        message[BODY_VALUE] = value
    return message


def expiry_time_limits(expire_seconds: float) -> tuple[float, float]:
    """``(hard, soft)`` time limits (seconds) of an attempt of a job that expires after
    ``expire_seconds`` active: the hard limit a quarter of the expiry (at most one second) before it,
    for the clocks of worker and database and the delivery; the soft limit a tenth of the hard one
    (at most five seconds) before that, so the task may clean up."""
    hard = expire_seconds - min(EXPIRY_MARGIN, expire_seconds / 4)
    return hard, hard - min(SOFT_MARGIN, hard / 10)


def _bound_by_expiry(
    headers: dict[str, Any], expire_seconds: float | None, task_limits: tuple[float | None, float | None]
) -> None:
    """Make the ``timelimit`` header ``[hard, soft]`` end the attempt before the job's expiry; mark
    (:data:`EXPIRY_LIMIT_HEADER`) when the expiry set the hard limit, so its failure is taken as
    pg-boss's expiry (retried within the job's budget) rather than a task error."""
    if not expire_seconds or expire_seconds <= 0:
        return
    given = headers.get("timelimit") or [None, None]
    given_hard = given[0] if given[0] is not None else task_limits[0]
    given_soft = given[1] if given[1] is not None else task_limits[1]
    hard, soft = expiry_time_limits(float(expire_seconds))
    if given_hard is not None and given_hard <= hard:
        hard = given_hard
    else:
        headers[EXPIRY_LIMIT_HEADER] = True
    if given_soft is not None and given_soft < soft:
        soft = given_soft
    headers["timelimit"] = [hard, soft if soft < hard else None]


def _due_eta(eta: Any) -> str | None:
    """The ``eta`` a fetched job is delivered with: the one it was sent with (``request.eta``), but
    never later than now by this clock, so the worker runs it at once (the database already held it
    until its ``start_after``) instead of holding it in memory for a clock skew."""
    when = parse_time(eta)
    if when is None:
        return None
    now = dt.datetime.now(dt.UTC)
    return (when if when <= now else now).isoformat()


def is_foreign(data: Any) -> bool:
    """True for a job sent by Node or SQL (no ``"__celery"`` envelope)."""
    return not (isinstance(data, dict) and isinstance(data.get(RESERVED_KEY), dict))


def _foreign_message(
    job_id: str, data: Any, task_name: str | None, attempt: int, properties: dict[str, Any]
) -> dict[str, Any]:
    from celery.utils.saferepr import saferepr  # Celery is only needed when delivering to Celery

    if isinstance(data, dict):
        args: list[Any] = []
        kwargs: dict[str, Any] = data
    else:
        args, kwargs = ([] if data is None else [data]), {}
    headers = dict(DEFAULT_HEADERS)
    headers.update(
        task=task_name,
        id=job_id,
        root_id=job_id,
        argsrepr=saferepr(args),
        kwargsrepr=saferepr(kwargs),
        origin="pg-boss",
    )
    headers[ATTEMPT_HEADER] = attempt
    headers["retries"] = attempt
    properties.update(correlation_id=job_id, reply_to="")
    return {
        "body": json.dumps([args, kwargs, _EMPTY_EMBED]),
        "content-type": JSON,
        "content-encoding": "utf-8",
        "headers": headers,
        "properties": properties,
    }


class _NotJson:
    def __repr__(self) -> str:
        return "<not JSON>"


_NOT_JSON: Any = _NotJson()


def _json_body(body: Any, content_type: Any, content_encoding: Any, headers: Mapping[str, Any]) -> Any:
    """The decoded JSON body, or ``_NOT_JSON`` when the raw bytes must be kept."""
    if content_type != JSON or headers.get("compression") or content_encoding not in ("utf-8", None):
        return _NOT_JSON
    try:
        text = body.decode("utf-8") if isinstance(body, bytes) else body
        return json.loads(text) if isinstance(text, str) else _NOT_JSON
    except (UnicodeDecodeError, ValueError):
        return _NOT_JSON


def _is_protocol2(parsed: Any) -> bool:
    return (
        isinstance(parsed, list)
        and len(parsed) == 3
        and isinstance(parsed[0], list)
        and isinstance(parsed[1], dict)
        and (parsed[2] is None or isinstance(parsed[2], dict))
    )


def _as_bytes(body: Any, encoding: Any) -> bytes:
    if isinstance(body, bytes):
        return body
    if body is None:
        return b""
    return str(body).encode(encoding if encoding and encoding != "binary" else "utf-8")


def _priority(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0
