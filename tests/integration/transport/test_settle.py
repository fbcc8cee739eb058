"""The settle thread: acks that arrive together end their jobs in one statement, a little later.

A worker's acks come about a millisecond apart during a drain; the settle thread gathers them for
its window after the first one and completes the batch at once. Nothing waits on it but stop(),
which writes whatever is gathering straight away (a warm shutdown must not lose completions).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg2

from transport.manager import JobManager
from transport.settle import Held, Settler

QUEUE = "settled"


def held_jobs(boss: JobManager, count: int) -> list[Held]:
    boss.create_queue(QUEUE)
    for n in range(count):
        boss.send(QUEUE, {"n": n})
    jobs = boss.fetch([QUEUE], count)
    assert len(jobs) == count
    return [Held.of(job) for job in jobs]


def states(boss: JobManager, held: list[Held]) -> list[str]:
    return [boss.get_job(h.id)["state"] for h in held]


def wait_until_completed(boss: JobManager, held: list[Held], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while states(boss, held) != ["completed"] * len(held):
        assert time.monotonic() < deadline, states(boss, held)
        time.sleep(0.02)


def counting_completes(boss: JobManager) -> list[int]:
    """Each manager.complete the settler runs, as the number of jobs it ends."""
    calls: list[int] = []
    complete = boss.complete

    def spy(name: str, results: Any, **kwargs: Any) -> Any:
        results = list(results)
        calls.append(len(results))
        return complete(name, results, **kwargs)

    boss.complete = spy  # type: ignore[method-assign]
    return calls


@contextlib.contextmanager
def settling(boss: JobManager, window: float) -> Iterator[Settler]:
    """A started settle thread with this window, stopped (writing what it holds) afterwards."""
    settler = Settler(boss, wake=lambda queue: None, window=window)
    settler.start()
    try:
        yield settler
    finally:
        settler.stop()


def test_acks_arriving_together_end_their_jobs_in_one_statement(boss: JobManager) -> None:
    held = held_jobs(boss, 5)
    calls = counting_completes(boss)
    with settling(boss, window=2.0) as settler:
        for h in held:
            settler.complete(h)
        assert states(boss, held) == ["active"] * 5  # the batch is still gathering
        wait_until_completed(boss, held)
    assert calls == [5]


def test_stop_writes_a_gathering_batch_at_once(boss: JobManager) -> None:
    held = held_jobs(boss, 3)
    settler = Settler(boss, wake=lambda queue: None, window=60)
    settler.start()
    for h in held:
        settler.complete(h)
    started = time.monotonic()
    settler.stop()
    assert time.monotonic() - started < 10  # not the 60 s window
    assert states(boss, held) == ["completed"] * 3


def test_a_write_after_a_batch_starts_the_next_one(boss: JobManager) -> None:
    held = held_jobs(boss, 2)
    calls = counting_completes(boss)
    with settling(boss, window=0.05) as settler:
        for h in held:
            settler.complete(h)
            wait_until_completed(boss, [h])
    assert calls == [1, 1]


def test_a_write_failing_part_way_is_retried_without_what_it_already_wrote(boss: JobManager) -> None:
    """Hand-backs of two queues in one batch; the second queue's statement fails once. The first
    one committed: retrying it would pull its job back from a worker that fetched it meanwhile."""
    other = QUEUE + "-other"
    boss.create_queue(QUEUE)
    boss.create_queue(other)
    boss.send(QUEUE, {"n": 1})
    boss.send(other, {"n": 2})
    first, second = (Held.of(boss.fetch([name], 1)[0]) for name in (QUEUE, other))
    failed = threading.Event()
    restore = boss.restore

    def restore_failing_once(name: str, ids: Any, **kwargs: Any) -> Any:
        if name == other and not failed.is_set():
            failed.set()
            raise psycopg2.OperationalError("server closed the connection unexpectedly")
        return restore(name, ids, **kwargs)

    boss.restore = restore_failing_once  # type: ignore[method-assign]
    with settling(boss, window=0.2) as settler:
        settler.restore(first)
        settler.restore(second)
        assert failed.wait(5)
        # The settle thread waits a second before it tries again; another worker fetches meanwhile.
        refetched = boss.fetch([QUEUE], 1)
        assert [job.id for job in refetched] == [first.id]
        deadline = time.monotonic() + 10
        while boss.get_job(second.id)["state"] != "created":
            assert time.monotonic() < deadline, "the failed hand-back was never retried"
            time.sleep(0.05)
    assert boss.get_job(first.id)["state"] == "active"  # still the other worker's
