"""Date-times as pg-boss writes them in JSON: ISO 8601 with a UTC offset."""

from __future__ import annotations

import datetime as dt
from typing import Any

from transport.exceptions import InvalidOption


def iso(value: Any) -> str | None:
    """``value`` (a datetime, an ISO 8601 string, or None) as ISO 8601 text with its offset.

    A zone-less datetime is UTC: pg-boss pins its sessions to UTC, so its ``timestamp`` columns
    (``singleton_on``) and a naive value a caller passes both mean UTC wall time. Anything else is
    :class:`~transport.exceptions.InvalidOption`.
    """
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidOption(f"not an ISO 8601 date-time: {value!r}") from None
    if not isinstance(value, dt.datetime):
        raise InvalidOption(f"expected a datetime, not {value!r}")
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.isoformat()
