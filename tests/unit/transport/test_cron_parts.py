"""transport.cron's pure parts: occurrence keys that cannot collide, the 60 s throttle slot an instant
files under, RRULE or cron, and each Node send option of a schedule as a manager keyword."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from transport import cron

NAMES = st.text(alphabet="ab_-./", min_size=1, max_size=6)  # queue names: no backslash
KEYS = st.text(alphabet="ab_\\", max_size=6)


@given(NAMES, KEYS, NAMES, KEYS)
def test_escaped_occurrence_keys_of_different_schedules_differ(n1: str, k1: str, n2: str, k2: str) -> None:
    if (n1, k1) != (n2, k2):
        assert cron.occurrence_key(n1, k1) != cron.occurrence_key(n2, k2)


def test_unescaped_keys_collide_as_older_pg_boss_releases_did() -> None:
    assert cron.occurrence_key("report_", "daily", escape=False) == cron.occurrence_key(
        "report", "_daily", escape=False
    )
    assert cron.occurrence_key("report_", "daily") == "report\\___daily"


@given(
    st.datetimes(
        min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2100, 1, 1), timezones=st.just(dt.UTC)
    )
)
def test_an_instant_files_under_the_minute_it_falls_in(instant: dt.datetime) -> None:
    slot = cron.throttle_slot(instant)
    start = dt.datetime.strptime(slot, "%Y-%m-%d %H:%M:%S").replace(tzinfo=dt.UTC)
    assert start <= instant < start + dt.timedelta(seconds=60)
    assert slot.endswith(":00")


def test_the_slot_is_utc_whatever_the_instants_zone() -> None:
    plus_two = dt.timezone(dt.timedelta(hours=2))
    assert cron.throttle_slot(dt.datetime(2026, 3, 1, 14, 5, 59, tzinfo=plus_two)) == "2026-03-01 12:05:00"


@pytest.mark.parametrize(
    ("expression", "rrule"),
    [
        ("*/5 * * * *", False),
        ("0 9 * * 1-5", False),
        ("FREQ=DAILY;BYHOUR=9", True),
        ("DTSTART:20260101T090000Z\nRRULE:FREQ=WEEKLY", True),
    ],
)
def test_rrule_or_cron(expression: str, rrule: bool) -> None:
    assert cron.is_rrule(expression) is rrule


@pytest.mark.parametrize(
    ("node", "python"),
    [
        ({"priority": 3}, {"priority": 3}),
        ({"singletonMinutes": 2}, {"singleton_seconds": 120}),
        ({"singletonHours": 1}, {"singleton_seconds": 3600}),
        ({"expireInMinutes": 0.5}, {"expire_in_seconds": 30}),
        ({"retentionDays": 2}, {"retention_seconds": 172800}),
        ({"deleteAfterHours": 1}, {"delete_after_seconds": 3600}),
        ({"startAfter": "30"}, {"start_after": 30.0}),
        ({"startAfter": "2030-01-01T00:00:00Z"}, {"start_after": "2030-01-01T00:00:00Z"}),
        (
            {"retryLimit": 4, "retryDelay": 2, "retryBackoff": True},
            {"retry_limit": 4, "retry_delay": 2, "retry_backoff": True},
        ),
        ({"tz": "Europe/Paris", "key": "k", "missed": True, "db": "x"}, {}),
        ({"priority": None}, {}),
        ({"somethingNew": 1}, {}),
    ],
)
def test_node_send_options(node: dict, python: dict) -> None:
    assert cron.send_options(node) == python
