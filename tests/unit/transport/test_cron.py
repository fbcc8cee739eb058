"""transport.cron without a database: cron expressions, time zones and seconds fields, rrule
schedules, occurrence keys, the due window and missed occurrences, and Node send options (the cron
passes against a real database are in tests/integration/transport/test_beat.py)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from transport import cron
from transport.exceptions import InvalidOption

T0 = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC)


def at(minute: int, second: int = 0) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minute, seconds=second)


# -- occurrences (no database) ---------------------------------------------------------------------


def schedule(expression: str, tz: str = "UTC", **options: Any) -> cron.Schedule:
    return cron.Schedule(
        "q", "", "rrule" if cron.is_rrule(expression) else "cron", expression, tz, {}, options, T0
    )


def test_an_occurrence_is_due_for_60_seconds_after_it() -> None:
    every5 = schedule("*/5 * * * *")
    assert cron.due_slots(every5, at(5, 0), None) == ["2026-03-01 12:05:00"]  # on the instant itself
    assert cron.due_slots(every5, at(5, 59), None) == ["2026-03-01 12:05:00"]
    assert cron.due_slots(every5, at(6, 0), None) == []  # the window is (now - 60 s, now]
    assert cron.due_slots(every5, at(7), None) == []


def test_time_zones_and_seconds_fields() -> None:
    six_hourly = schedule("0 */6 * * *", "America/New_York")  # 00:00 in New York is 05:00 UTC in March
    assert cron.due_slots(six_hourly, dt.datetime(2026, 3, 1, 5, 0, 30, tzinfo=dt.UTC), None) == [
        "2026-03-01 05:00:00"
    ]
    thirty = schedule("30 * * * * *")  # cron-parser's seconds field comes first
    assert cron.due_slots(thirty, at(1, 40), None) == ["2026-03-01 12:01:00"]


def test_missed_once_adds_the_latest_occurrence_of_the_gap_only() -> None:
    skip = schedule("*/5 * * * *")
    once = schedule("*/5 * * * *", missed="once")
    last_pass = at(-60)  # an hour with no pass at all
    assert cron.due_slots(skip, at(30, 10), last_pass) == ["2026-03-01 12:30:00"]
    assert cron.due_slots(once, at(30, 10), last_pass) == ["2026-03-01 12:25:00", "2026-03-01 12:30:00"]
    assert cron.due_slots(once, at(30, 10), at(29, 50)) == ["2026-03-01 12:30:00"]  # no gap
    assert cron.due_slots(once, at(33), last_pass) == ["2026-03-01 12:30:00"]  # missed, nothing due
    unknown = schedule("*/5 * * * *", missed="twice")
    assert cron.due_slots(unknown, at(33), last_pass) == []  # read as skip, as Node does


def test_rrule_schedules() -> None:
    every7 = schedule("FREQ=MINUTELY;INTERVAL=7")
    slots = [s for minute in range(0, 30) for s in cron.due_slots(every7, at(minute, 30), None)]
    assert len(slots) == len(set(slots)) >= 4
    daily = schedule("FREQ=DAILY;BYHOUR=9;BYMINUTE=0", "Europe/Berlin")
    assert cron.due_slots(daily, dt.datetime(2026, 3, 1, 8, 0, 20, tzinfo=dt.UTC), None) == [
        "2026-03-01 08:00:00"
    ]


def test_occurrence_keys_escape_underscores_as_pg_boss_12_38() -> None:
    assert cron.occurrence_key("report_", "daily") == "report\\___daily"
    assert cron.occurrence_key("report", "_daily") == "report___daily"
    assert cron.occurrence_key("ingest-pull", "") == "ingest-pull__"


def test_node_send_options_become_manager_keywords() -> None:
    options = {
        "tz": "UTC",
        "key": "k",
        "missed": "once",
        "retryLimit": 5,
        "expireInMinutes": 2,
        "startAfter": "30",
    }
    assert cron.send_options(options) == {"retry_limit": 5, "expire_in_seconds": 120, "start_after": 30.0}


def test_invalid_expressions_are_refused() -> None:
    with pytest.raises(InvalidOption):
        cron.validate("not a cron")
    with pytest.raises(InvalidOption):
        cron.validate("* * * * *", "Mars/Olympus")
    with pytest.raises(InvalidOption):
        cron.validate("")


# -- passes against the database ---------------------------------------------------------------------
