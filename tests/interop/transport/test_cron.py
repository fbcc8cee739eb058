"""Cron across daylight-saving changes: zeke's beat sends what Node pg-boss 12.38.1's cron pass sends.

Node computes (tests/node/cron_dst.mjs: pg-boss's own Timekeeper and previewSchedule, no database);
Python computes the same with transport.cron; the two must agree instant for instant:

* the occurrences a pass every 30 s sends over each transition (the due window, 60 s);
* the latest occurrence at or before every fifth pass instant;
* the forward walk (``previewSchedule`` / ``cron.next_after``).
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from transport import cron

PASS_SECONDS = 30
#: (zone, a fall-back change, a spring-forward change), each as the UTC instant of the change.
ZONES = [
    ("America/New_York", "2026-11-01T06:00:00", "2026-03-08T07:00:00"),
    ("Europe/Berlin", "2026-10-25T01:00:00", "2026-03-29T01:00:00"),
    ("Australia/Sydney", "2026-04-04T16:00:00", "2026-10-03T16:00:00"),
]
EXPRESSIONS = [
    "30 1 * * *",  # repeated in New York's fall
    "30 2 * * *",  # skipped in spring in New York and Berlin, repeated in Berlin's fall
    "0 1-3 * * *",
    "*/30 1,2 * * *",
    "0 * * * *",  # every hour: stays hourly through a repeated hour
    "15,45 * * * *",
    "0 0-23/2 * * *",
    "10 30 2 * * *",  # seconds in front
    "0 2 * * 0",
]


def _cases() -> list[dict[str, Any]]:
    cases = []
    for tz, fall, spring in ZONES:
        for change in (fall, spring):
            at = dt.datetime.fromisoformat(change).replace(tzinfo=dt.UTC)
            for expression in EXPRESSIONS:
                cases.append(
                    {
                        "cron": expression,
                        "tz": tz,
                        "from": _iso(at - dt.timedelta(hours=2)),
                        "until": _iso(at + dt.timedelta(hours=2)),
                        "pass": PASS_SECONDS,
                    }
                )
    return cases


def _iso(instant: dt.datetime) -> str:
    return instant.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.fixture(scope="module")
def node_answers(node_dir: Path) -> list[dict[str, Any]]:
    done = subprocess.run(
        ["node", str(node_dir / "cron_dst.mjs"), json.dumps(_cases())],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=node_dir,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _python_answers(case: dict[str, Any]) -> dict[str, Any]:
    start, end = _parse(case["from"]), _parse(case["until"])
    step = dt.timedelta(seconds=case["pass"])
    fired: set[str] = set()
    latest: list[str] = []
    now, i = start, 0
    while now <= end:
        found = cron.latest_before(case["cron"], "cron", case["tz"], now)
        assert found is not None
        if i % 5 == 0:
            latest.append(_iso(found))
        if found > now - cron.OCCURRENCE_WINDOW:
            fired.add(_iso(found))
        now, i = now + step, i + 1
    preview: list[str] = []
    cursor = start
    while True:
        cursor = cron.next_after(case["cron"], "cron", case["tz"], cursor)
        if cursor is None or cursor > end:
            break
        preview.append(_iso(cursor))
    return {"preview": preview, "fired": sorted(fired), "latest": latest}


def test_python_sends_what_node_sends_across_dst(node_answers: list[dict[str, Any]]) -> None:
    cases = _cases()
    assert len(node_answers) == len(cases)
    mismatches = []
    for case, node in zip(cases, node_answers, strict=True):
        python = _python_answers(case)
        for what in ("fired", "latest", "preview"):
            if python[what] != node[what]:
                diff = sorted(set(node[what]) ^ set(python[what])) or "same instants, other order"
                mismatches.append((case["tz"], case["cron"], case["from"], what, diff))
    assert not mismatches, "\n".join(map(repr, mismatches[:10]))


def test_fall_back_sends_a_repeated_time_at_its_first_instant(node_answers: list[dict[str, Any]]) -> None:
    """The case named in the issue, spelled out: 01:30 in New York on the fall-back night is sent
    once, at 01:30 EDT (05:30 UTC), never at 01:30 EST (06:30 UTC); Node agrees."""
    fall = dt.datetime(2026, 11, 1, 6, tzinfo=dt.UTC)
    case_index = _cases().index(
        {
            "cron": "30 1 * * *",
            "tz": "America/New_York",
            "from": _iso(fall - dt.timedelta(hours=2)),
            "until": _iso(fall + dt.timedelta(hours=2)),
            "pass": PASS_SECONDS,
        }
    )
    assert node_answers[case_index]["fired"] == ["2026-11-01T05:30:00.000Z"]
    second = dt.datetime(2026, 11, 1, 6, 30, 20, tzinfo=dt.UTC)  # 20 s after 01:30 EST
    assert cron.latest_before("30 1 * * *", "cron", "America/New_York", second) == dt.datetime(
        2026, 11, 1, 5, 30, tzinfo=dt.UTC
    )
    # An hourly schedule stays hourly through the repeated hour (both 01:00s).
    assert cron.latest_before("0 * * * *", "cron", "America/New_York", second) == dt.datetime(
        2026, 11, 1, 6, tzinfo=dt.UTC
    )
