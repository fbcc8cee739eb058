"""Job outputs in the shapes Node pg-boss stores, so Node, SQL and Python read the same thing."""

from __future__ import annotations

import json
import traceback
from typing import Any

#: Outputs pg-boss's supervisor writes when it fails a job itself.
TIMED_OUT = {"value": {"message": "job timed out"}}
HEARTBEAT_LOST = {"value": {"message": "job heartbeat timeout"}}


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


def to_json(value: Any) -> str:
    """Strict JSON text: NaN/Infinity and non-JSON types are refused rather than stored half-right."""
    return json.dumps(value, allow_nan=False, separators=(",", ":"), default=_refuse)


def _refuse(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
