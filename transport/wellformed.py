"""Is a fetched job's ``"__celery"`` envelope something Celery can run? Checked before delivery.

A job row can hold anything: Node, SQL, another version of this transport or a bug may have written
it. A message Celery chokes on (a ``timelimit`` of ``"abc"``, ``properties`` that are a number, a
body that is not base64) raised inside the worker's consumer, which restarted, handed the job back
and fetched it again, for ever. :func:`check` names what is wrong instead, so the transport fails
the job at once (no retries: it would be just as wrong next time) with that message, and its
neighbours in the same fetch are delivered as usual.

The checks follow what Celery's worker reads from a protocol-2 message (``celery.worker.request``,
``celery.worker.strategy``, ``celery.app.trace``) and what :func:`transport.envelope.to_message`
reads from the envelope; headers Celery does not read are passed on as they are.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Mapping
from typing import Any

from transport.exceptions import MalformedJob

#: Envelope versions this transport understands (``v`` absent means 1: envelopes written by hand).
VERSIONS = frozenset({1})
_TEXT_HEADERS = (
    "id", "task", "lang", "shadow", "root_id", "parent_id", "group", "argsrepr", "kwargsrepr", "origin",
)  # fmt: skip
_TIME_HEADERS = ("eta", "expires")
_INT_HEADERS = ("retries", "group_index", "replaced_task_nesting")
_SIGNATURE_LISTS = ("callbacks", "errbacks", "chain")
_KIND_NAMES = {dict: "an object", list: "a list", str: "a string"}


def check(data: Any) -> None:
    """Raise :class:`MalformedJob` naming the first problem of a job's envelope; None when it can
    be delivered (including every job without ``"__celery"``, which runs with its data as kwargs)."""
    if not isinstance(data, dict) or "__celery" not in data:
        return
    envelope = data["__celery"]
    if not isinstance(envelope, dict):
        _bad(f"__celery must be an object, not {_kind(envelope)}")
    version = envelope.get("v", 1)
    if _is_bool(version) or version not in VERSIONS:
        _bad(f"unknown envelope version {version!r} (this transport reads version 1)")
    headers = _optional(envelope, "headers", dict)
    _optional(envelope, "properties", dict)
    _check_properties(envelope.get("properties") or {})
    for key in ("content_type", "content_encoding"):
        _optional(envelope, key, str)
    if "task" in envelope:
        _check_task(envelope, headers or {})
        return
    if headers and "task" in headers:  # a task message whose body is not JSON (pickle, msgpack...)
        _check_headers(headers)
    if "body" in envelope:
        _check_body(envelope)


def _check_task(envelope: Mapping[str, Any], headers: Mapping[str, Any]) -> None:
    task = envelope["task"]
    if not isinstance(task, str) or not task:
        _bad(f"task must be a non-empty string, not {task!r:.80}")
    if envelope.get("content_type", "application/json") != "application/json" or envelope.get(
        "content_encoding", "utf-8"
    ) not in ("utf-8", None):
        _bad(
            "a task envelope's body is JSON, but it names content type "
            f"{envelope.get('content_type')!r:.60} / encoding {envelope.get('content_encoding')!r:.60}"
        )
    _optional(envelope, "args", list)
    embed = _optional(envelope, "embed", dict) or {}
    for key in _SIGNATURE_LISTS:
        value = embed.get(key)
        if value is not None and not (isinstance(value, list) and all(isinstance(s, dict) for s in value)):
            _bad(f"embed.{key} must be a list of signatures (objects), not {_kind(value)}")
    if embed.get("chord") is not None and not isinstance(embed["chord"], dict):
        _bad(f"embed.chord must be a signature (an object), not {_kind(embed['chord'])}")
    _check_headers(headers)


def _check_headers(headers: Mapping[str, Any]) -> None:
    for key in _TEXT_HEADERS:
        value = headers.get(key)
        if value is not None and not isinstance(value, str):
            _bad(f"header {key} must be a string, not {_kind(value)}")
    if "id" in headers and not headers["id"]:
        _bad("header id (the task id) must not be empty")
    for key in _INT_HEADERS:
        value = headers.get(key)
        if value is not None and (not isinstance(value, int) or _is_bool(value) or value < 0):
            _bad(f"header {key} must be a whole number >= 0, not {value!r:.80}")
    limits = headers.get("timelimit")
    if limits is not None and not (
        isinstance(limits, list)
        and len(limits) == 2
        and all(v is None or (isinstance(v, int | float) and not _is_bool(v) and v >= 0) for v in limits)
    ):
        _bad(f"header timelimit must be [hard, soft] seconds (numbers or null), not {limits!r:.80}")
    for key in _TIME_HEADERS:
        value = headers.get(key)
        if value is not None and not _is_iso_time(value):
            _bad(f"header {key} must be an ISO 8601 date-time, not {value!r:.80}")
    ignore = headers.get("ignore_result")
    if ignore is not None and not isinstance(ignore, bool):
        _bad(f"header ignore_result must be true or false, not {ignore!r:.80}")
    stamped = headers.get("stamped_headers")
    if stamped is not None and not (isinstance(stamped, list) and all(isinstance(s, str) for s in stamped)):
        _bad(f"header stamped_headers must be a list of strings, not {stamped!r:.80}")
    stamps = headers.get("stamps")
    if stamps is not None and not isinstance(stamps, dict):
        _bad(f"header stamps must be an object, not {_kind(stamps)}")


def _check_properties(properties: Mapping[str, Any]) -> None:
    for key in ("correlation_id", "reply_to"):
        value = properties.get(key)
        if value is not None and not isinstance(value, str):
            _bad(f"property {key} must be a string, not {_kind(value)}")


def _check_body(envelope: Mapping[str, Any]) -> None:
    body = envelope["body"]
    if not isinstance(body, str):
        _bad(f"body must be base64 text, not {_kind(body)}")
    try:
        base64.b64decode(body.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error, ValueError) as exc:
        _bad(f"body is not valid base64: {exc}")


def _is_iso_time(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _optional(envelope: Mapping[str, Any], key: str, kind: type) -> Any:
    value = envelope.get(key)
    if value is not None and not isinstance(value, kind):
        _bad(f"{key} must be {_KIND_NAMES[kind]}, not {_kind(value)}")
    return value


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool)


def _kind(value: Any) -> str:
    """A short description of a JSON value for an error message (never the whole value)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"number {value!r:.40}"
    if isinstance(value, str):
        return f"string {value!r:.60}"
    if isinstance(value, list):
        return f"a list of {len(value)}"
    return "an object"


def _bad(message: str) -> None:
    raise MalformedJob(message)
