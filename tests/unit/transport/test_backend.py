"""The result waiter's re-read pace (transport.backend._Pace): fast while nothing announced a job
(a Node worker may settle it at any moment and notifies nothing), slow once a zeke worker announced
it running (it announces the end), and slowing down for a job that stays unchanged."""

from __future__ import annotations

import pytest

from transport.backend import (
    REREAD_FAST_MAX,
    REREAD_FAST_WINDOW,
    REREAD_FIRST,
    REREAD_GROWTH,
    REREAD_INTERVAL,
    _Pace,
)


def test_an_unannounced_job_is_reread_fast_and_the_gap_grows_to_the_fast_cap() -> None:
    pace = _Pace(due=REREAD_FIRST, since=0.0)
    pace.after_read(0.0, "PENDING")  # first read: the state is news
    assert pace.gap == REREAD_FIRST
    gaps = []
    for n in range(1, 10):
        pace.after_read(n * 0.1, "PENDING")
        gaps.append(pace.gap)
    assert gaps[0] == pytest.approx(REREAD_FIRST * REREAD_GROWTH)
    assert gaps == sorted(gaps) and gaps[-1] == REREAD_FAST_MAX
    assert pace.due == pytest.approx(0.9 + REREAD_FAST_MAX)


def test_a_change_of_state_starts_over() -> None:
    pace = _Pace(due=0.0, since=0.0, status="PENDING", gap=REREAD_FAST_MAX)
    pace.after_read(5.0, "STARTED")  # a Node worker took it: its end may come at any moment
    assert (pace.gap, pace.since, pace.status) == (REREAD_FIRST, 5.0, "STARTED")


def test_a_job_a_zeke_worker_announced_is_left_to_its_notify() -> None:
    pace = _Pace(due=0.0, since=0.0, status="STARTED", announced=True)
    pace.after_read(1.0, "STARTED")
    assert pace.gap == REREAD_INTERVAL


def test_a_job_unchanged_for_long_is_reread_slowly_again() -> None:
    pace = _Pace(due=0.0, since=0.0, status="PENDING", gap=REREAD_FAST_MAX)
    pace.after_read(REREAD_FAST_WINDOW + 1, "PENDING")
    assert REREAD_FAST_MAX < pace.gap <= REREAD_INTERVAL
    for n in range(20):
        pace.after_read(REREAD_FAST_WINDOW + 2 + n, "PENDING")
    assert pace.gap == REREAD_INTERVAL
