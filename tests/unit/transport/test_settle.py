"""transport.settle.Revoked: the ids Celery revoked in this process, remembered up to a size."""

from __future__ import annotations

import threading

from hypothesis import given
from hypothesis import strategies as st

from transport.settle import Revoked


def test_a_revoked_id_is_popped_once() -> None:
    revoked = Revoked()
    revoked.add("a")
    assert revoked.pop("a") and not revoked.pop("a") and not revoked.pop("never")


def test_the_oldest_ids_are_forgotten_past_the_size() -> None:
    revoked = Revoked(size=3)
    for task_id in "abcd":
        revoked.add(task_id)
    assert [revoked.pop(t) for t in "abcd"] == [False, True, True, True]


def test_adding_again_does_not_grow_it() -> None:
    revoked = Revoked(size=2)
    for _ in range(5):
        revoked.add("same")
    revoked.add("other")
    assert revoked.pop("same") and revoked.pop("other")


@given(st.lists(st.text(alphabet="abcdef", min_size=1, max_size=2), max_size=50), st.integers(1, 10))
def test_it_remembers_exactly_the_last_distinct_ids(ids: list[str], size: int) -> None:
    revoked = Revoked(size=size)
    for task_id in ids:
        revoked.add(task_id)
    # Model: an insertion-ordered set; re-adding a remembered id keeps its place, the oldest go first.
    model: list[str] = []
    for task_id in ids:
        if task_id not in model:
            model.append(task_id)
            del model[:-size]
    kept = set(model)
    assert {t for t in set(ids) if revoked.pop(t)} == kept


def test_concurrent_adds_keep_the_bound() -> None:
    revoked = Revoked(size=100)

    def add(prefix: str) -> None:
        for i in range(2000):
            revoked.add(f"{prefix}{i}")

    threads = [threading.Thread(target=add, args=(p,)) for p in "abcd"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(revoked._ids) == 100  # the bound itself, not just what pop reports
