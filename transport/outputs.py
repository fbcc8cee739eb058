"""Job outputs in the shapes Node pg-boss stores, so Node, SQL and Python read the same thing."""

from __future__ import annotations

import json
import re
import traceback
from typing import Any

#: Outputs pg-boss's supervisor writes when it fails a job itself.
TIMED_OUT = {"value": {"message": "job timed out"}}
HEARTBEAT_LOST = {"value": {"message": "job heartbeat timeout"}}


#: The output of a job whose task Celery replaced (``Task.replace``): the job is done, but its id
#: belongs to the replacement's final task, so Python reads it as not finished yet.
REPLACED_OUTPUT: dict[str, Any] = {"__celery": {"replaced": True}}


def is_replaced(output: Any) -> bool:
    return isinstance(output, dict) and output.get("__celery") == REPLACED_OUTPUT["__celery"]


def completion_output(value: Any) -> Any:
    """A handler's return value as pg-boss stores it: an object as is, anything else as {"value": x}."""
    if value is None:
        return None
    if isinstance(value, dict):
        return value
    return {"value": value}


def completion_value(output: Any) -> Any:
    """The inverse of :func:`completion_output` for reading a result back."""
    if isinstance(output, dict) and set(output) == {"value"}:
        return output["value"]
    return output


def error_output(exc: BaseException, tb: str | None = None) -> dict[str, Any]:
    """An exception as serialize-error shapes it: {name, message, stack}, plus simple own attributes."""
    if tb is None:
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    output: dict[str, Any] = {"name": type(exc).__name__, "message": str(exc), "stack": tb}
    for key, value in vars(exc).items() if hasattr(exc, "__dict__") else ():
        if key.startswith("_") or key in output:
            continue
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            continue
        output[key] = value
    return output


#: In ASCII JSON text, escapes PostgreSQL's jsonb refuses: \\u0000 (text cannot hold NUL) and UTF-16
#: surrogates without their other half. An escaped backslash is consumed as a pair, so ``\\\\u0000``
#: (a literal backslash, then "u0000") is not mistaken for one; a proper surrogate pair is skipped.
_JSONB_UNSAFE = re.compile(r"\\(?:\\|u(?:d[89ab][0-9a-f]{2}\\ud[c-f][0-9a-f]{2}|(0000|d[89a-f][0-9a-f]{2})))")


def to_json(value: Any) -> str:
    """Strict JSON text: NaN/Infinity and non-JSON types are refused rather than stored half-right, and
    so are strings PostgreSQL's jsonb cannot hold (NUL characters, unpaired surrogates) and values
    nested past Python's recursion limit: ValueError here instead of a database error (or a
    RecursionError) halfway through a statement."""
    try:
        text = json.dumps(value, allow_nan=False, separators=(",", ":"), default=_refuse)
    except RecursionError:
        raise ValueError("nested too deeply to be JSON here") from None
    if "\\u0000" in text or "\\ud" in text:  # rare: a quick look before the exact scan
        for match in _JSONB_UNSAFE.finditer(text):
            if match.group(1) == "0000":
                raise ValueError("a string contains a NUL character (\\u0000), which PostgreSQL cannot store")
            if match.group(1):
                raise ValueError(f"a string contains an unpaired UTF-16 surrogate (\\u{match.group(1)})")
    return text


def _refuse(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
