"""The consumer's group-limited fetch (transport.groups) on real Postgres: per-group limits counted
from active rows, tiers, jobs without a group, a queue cap on top, and the transport option's
checks. Real workers running it: tests/interop/transport/test_groups.py."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator

import pytest

from transport.db import Database
from transport.exceptions import InvalidOption
from transport.groups import GroupFetcher, GroupLimit, parse_group_limits
from transport.manager import JobManager


@pytest.fixture
def boss(database: Database) -> Iterator[JobManager]:
    schema = "grp_" + uuid.uuid4().hex[:10]
    manager = JobManager(database, schema)
    yield manager
    with database.cursor() as cur:
        for suffix in ("", "_zeke"):
            cur.execute(f'DROP SCHEMA IF EXISTS "{schema}{suffix}" CASCADE')


def _groups(jobs: list) -> Counter:
    return Counter(job.data["g"] for job in jobs)


def test_limits_per_group_and_tier_with_ungrouped_jobs_free(boss: JobManager) -> None:
    boss.create_queue("gq", retry_limit=0)
    for n in range(3):
        boss.send("gq", {"g": "a", "n": n}, group={"id": "a"})
        boss.send("gq", {"g": "v", "n": n}, group={"id": "v", "tier": "vip"})
    boss.send("gq", {"g": "-", "n": 0})
    boss.send("gq", {"g": "-", "n": 1})
    fetcher = GroupFetcher(boss, {"gq": GroupLimit(1, {"vip": 2})})
    assert fetcher.limited("gq")

    first = fetcher.fetch("gq", 10)
    assert _groups(first) == Counter({"a": 1, "v": 2, "-": 2})
    assert [j.data["n"] for j in first if j.data["g"] == "a"] == [0]  # oldest first within a group
    assert fetcher.fetch("gq", 10) == []  # every group at its limit, counted from the rows

    done = next(j for j in first if j.data["g"] == "a")
    boss.complete("gq", [(done.id, None, None)])
    again = fetcher.fetch("gq", 10)
    assert [(j.data["g"], j.data["n"]) for j in again] == [("a", 1)]


def test_a_group_backlog_does_not_crowd_out_other_groups(boss: JobManager) -> None:
    """A batch whose first look sees only one group's jobs looks again past them."""
    boss.create_queue("crowd", retry_limit=0)
    for n in range(6):
        boss.send("crowd", {"g": "a", "n": n}, group={"id": "a"})
    for n in range(2):
        boss.send("crowd", {"g": "b", "n": n}, group={"id": "b"})
    jobs = GroupFetcher(boss, {"crowd": GroupLimit(1)}).fetch("crowd", 3)
    assert _groups(jobs) == Counter({"a": 1, "b": 1})


def test_a_queue_cap_applies_on_top_of_group_limits(boss: JobManager) -> None:
    boss.create_queue("capped-groups", retry_limit=0)
    for g in "abcd":
        boss.send("capped-groups", {"g": g}, group={"id": g})
    fetcher = GroupFetcher(boss, {"capped-groups": GroupLimit(1)})
    assert len(fetcher.fetch("capped-groups", 10, cap=3)) == 3
    assert fetcher.fetch("capped-groups", 10, cap=3) == []


def test_per_key_policies_are_fetched_without_group_limits(boss: JobManager) -> None:
    boss.create_queue("keyed", policy="singleton", retry_limit=0)
    assert not GroupFetcher(boss, {"keyed": GroupLimit(1)}).limited("keyed")
    assert not GroupFetcher(boss, {"missing": GroupLimit(1)}).limited("missing")


def test_the_transport_option_is_checked() -> None:
    assert parse_group_limits({"q": 2, "r": {"default": 1, "tiers": {"vip": 3}}}) == {
        "q": GroupLimit(2),
        "r": GroupLimit(1, {"vip": 3}),
    }
    for bad in ({"q": 0}, {"q": {"tiers": {"vip": 2}}}, {"q": {"default": 1, "oops": 2}}, {"q": True}):
        with pytest.raises(InvalidOption):
            parse_group_limits(bad)
