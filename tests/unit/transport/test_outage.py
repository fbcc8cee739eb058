"""transport.outage: backoff delays grow, stay jittered under their cap, and an outage is logged once."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from transport.outage import Backoff, Outage


def test_backoff_doubles_with_jitter_up_to_its_cap() -> None:
    backoff = Backoff(first=0.2, cap=5.0)
    delays = [backoff.next() for _ in range(12)]
    ceilings = [min(5.0, 0.2 * 2**n) for n in range(12)]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True)), delays
    assert len({round(d, 6) for d in delays[6:]}) > 1, "capped delays are still jittered"
    backoff.reset()
    assert backoff.next() <= 0.2


def test_an_outage_is_logged_once_each_way(caplog: pytest.LogCaptureFixture) -> None:
    outage = Outage(logging.getLogger("t.outage"), "thing")
    with caplog.at_level(logging.INFO, logger="t.outage"):
        for _ in range(20):
            outage.failed(OSError("too many clients already"))
        outage.succeeded()
        outage.succeeded()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert lines[0].startswith("thing: database unavailable (OSError: too many clients already)")
    assert lines[1].startswith("thing: database available again after") and "(20 failed attempts)" in lines[1]


def test_a_flapping_database_is_one_outage(caplog: pytest.LogCaptureFixture) -> None:
    outage = Outage(logging.getLogger("t.flap"), "thing")
    with caplog.at_level(logging.INFO, logger="t.flap"):
        for _ in range(5):
            outage.failed(OSError("refused"))
            outage.succeeded(stable=60.0)  # works once, not yet for long: still the same outage
    assert len(caplog.records) == 1 and outage.down


@given(st.floats(0.01, 5), st.floats(0.01, 60), st.integers(1, 80))
def test_backoff_delays_stay_in_the_upper_half_of_a_capped_doubling(first: float, cap: float, n: int) -> None:
    backoff = Backoff(first=first, cap=cap)
    for attempt in range(n):
        ceiling = min(cap, first * 2 ** min(attempt, 30))
        assert ceiling / 2 <= backoff.next() <= ceiling
    assert backoff.attempts == n
