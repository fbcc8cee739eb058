"""Cron occurrences in a time zone, across daylight-saving changes, as pg-boss 12.38 reads them.

croniter is asked for wall times only (naive, in the schedule's zone); this module decides which
instants those wall times are, the way pg-boss (cron-parser 5) does:

* A wall time the clocks went back over happens twice. It is sent once, at its first instant
  (``30 1 * * *`` in America/New_York fires at 01:30 EDT on the fall-back night), unless the
  expression names every hour, which keeps an hourly schedule hourly through the repeated hour.
* A wall time the clocks skipped does not happen. The cron pass, reading backwards from now, never
  sends it (``30 2 * * *`` sends nothing on the spring-forward night); pg-boss's forward walk
  (``previewSchedule``, here :func:`next_after`) lists it at the offset in force before the change.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterator
from zoneinfo import ZoneInfo

from croniter import croniter

#: No zone's offset changes by more than this at once: wall order and instant order of two
#: occurrences further apart than this in wall time always agree.
_SHIFT = dt.timedelta(hours=3)


def latest_before(expression: str, tz: ZoneInfo, until: dt.datetime) -> dt.datetime:
    """The latest occurrence at or before ``until`` (UTC), as pg-boss's cron pass reads it."""
    every_hour = _every_hour(expression)
    found: dt.datetime | None = None
    found_wall: dt.datetime | None = None
    for wall in _walk(expression, _wall(until, tz) + _SHIFT, backwards=True):
        if found_wall is not None and wall < found_wall - _SHIFT:
            break
        for instant in _instants(wall, tz, every_hour, gaps=False):
            if instant <= until and (found is None or instant > found):
                found, found_wall = instant, wall
    assert found is not None  # croniter raises for an expression that never matches
    return found


def next_after(expression: str, tz: ZoneInfo, after: dt.datetime) -> dt.datetime:
    """The first occurrence strictly after ``after`` (UTC), as pg-boss's forward walk reads it."""
    every_hour = _every_hour(expression)
    found: dt.datetime | None = None
    found_wall: dt.datetime | None = None
    for wall in _walk(expression, _wall(after, tz) - _SHIFT, backwards=False):
        if found_wall is not None and wall > found_wall + _SHIFT:
            break
        for instant in _instants(
            wall, tz, every_hour, gaps=_exists(wall, tz) or _first_in_gap(expression, wall, tz)
        ):
            if instant > after and (found is None or instant < found):
                found, found_wall = instant, wall
    assert found is not None
    return found


def _walk(expression: str, start: dt.datetime, *, backwards: bool) -> Iterator[dt.datetime]:
    """Matching wall times from ``start`` (naive), one way, for ever."""
    # cron-parser reads a sixth field as seconds in front; croniter wants to be told.
    itr = croniter(expression, start, second_at_beginning=len(expression.split()) == 6)
    step = itr.get_prev if backwards else itr.get_next
    while True:
        yield step(dt.datetime)


def _instants(wall: dt.datetime, tz: ZoneInfo, every_hour: bool, *, gaps: bool) -> list[dt.datetime]:
    """The UTC instants a wall time names in ``tz``: none or one for a skipped time (``gaps``),
    the first of a repeated one (both when the expression names every hour), else the one."""
    first = wall.replace(tzinfo=tz, fold=0)
    second = wall.replace(tzinfo=tz, fold=1)
    if not _exists(wall, tz):  # skipped: the clocks jumped over it
        return [first.astimezone(dt.UTC)] if gaps else []
    if first.utcoffset() != second.utcoffset() and every_hour:
        return [first.astimezone(dt.UTC), second.astimezone(dt.UTC)]
    return [first.astimezone(dt.UTC)]


def _first_in_gap(expression: str, wall: dt.datetime, tz: ZoneInfo) -> bool:
    """Whether no earlier match of ``expression`` falls in the same skipped stretch as ``wall``:
    the forward walk sends the first skipped match of a spring-forward night and no later one."""
    before = next(_walk(expression, wall, backwards=True))
    return _exists(before, tz) or wall - before > _SHIFT


def _exists(wall: dt.datetime, tz: ZoneInfo) -> bool:
    return _wall(wall.replace(tzinfo=tz, fold=0).astimezone(dt.UTC), tz) == wall


def _wall(instant: dt.datetime, tz: ZoneInfo) -> dt.datetime:
    return instant.astimezone(tz).replace(tzinfo=None, fold=0)


@functools.lru_cache(maxsize=256)
def _every_hour(expression: str) -> bool:
    """Whether the hour field matches all 24 hours (croniter expands it to ``*`` then)."""
    hours = croniter(expression, second_at_beginning=len(expression.split()) == 6).expanded[1]
    return hours == ["*"] or len(hours) == 24
