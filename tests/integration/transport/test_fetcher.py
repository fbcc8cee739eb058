"""The fetch thread of a busy worker: one fetch out at a time, its jobs or its error handed to the
loop, and what a stopping loop never collected returned for handing back (nothing stays claimed)."""

from __future__ import annotations

import threading

import psycopg2

from transport.fetcher import Fetcher
from transport.manager import JobManager

QUEUE = "fetched"


def queued(boss: JobManager, count: int) -> list[str]:
    boss.create_queue(QUEUE)
    return [boss.send(QUEUE, {"n": n}) for n in range(count)]


def test_a_fetch_is_out_until_the_loop_collects_its_jobs(boss: JobManager) -> None:
    ids = queued(boss, 3)
    woken = threading.Event()
    fetcher = Fetcher(lambda queues, limit, limits: boss.fetch(queues, limit), woken.set)
    fetcher.start()
    try:
        fetcher.submit("channel", [QUEUE], 2, {})
        assert fetcher.busy
        assert woken.wait(10)
        assert fetcher.busy  # done, but its jobs are not delivered yet: no second fetch
        fetched = fetcher.collect()
        assert fetched is not None and not fetcher.busy
        assert (fetched.channel, fetched.queues, fetched.limit) == ("channel", [QUEUE], 2)
        assert sorted(j.id for j in fetched.jobs) == sorted(ids[:2])
        assert all(boss.get_job(j.id)["state"] == "active" for j in fetched.jobs)
    finally:
        fetcher.stop()


def test_a_fetch_error_reaches_the_loop(boss: JobManager) -> None:
    def failing(queues: list[str], limit: int, limits: object) -> list[object]:
        raise psycopg2.OperationalError("server closed the connection unexpectedly")

    woken = threading.Event()
    fetcher = Fetcher(failing, woken.set)
    fetcher.start()
    try:
        fetcher.submit("channel", [QUEUE], 1, {})
        assert woken.wait(10)
        fetched = fetcher.collect()
        assert isinstance(fetched.error, psycopg2.OperationalError)
        assert not fetcher.busy
    finally:
        fetcher.stop()


def test_stop_waits_for_the_fetch_under_way_and_returns_its_jobs(boss: JobManager) -> None:
    ids = queued(boss, 2)
    started, release = threading.Event(), threading.Event()

    def slow(queues: list[str], limit: int, limits: object) -> list[object]:
        started.set()
        assert release.wait(10)
        return boss.fetch(queues, limit)

    fetcher = Fetcher(slow, lambda: None)
    fetcher.start()
    fetcher.submit("channel", [QUEUE], 5, {})
    assert started.wait(10)
    threading.Timer(0.2, release.set).start()
    leftover = fetcher.stop()  # the loop is gone: nobody will collect this
    assert leftover is not None and sorted(j.id for j in leftover.jobs) == sorted(ids)
    assert not fetcher.busy


def test_a_request_not_yet_started_fetches_nothing_once_stopped(boss: JobManager) -> None:
    ids = queued(boss, 1)
    fetcher = Fetcher(lambda queues, limit, limits: boss.fetch(queues, limit), lambda: None)
    fetcher.submit("channel", [QUEUE], 1, {})  # never started: no thread takes it
    leftover = fetcher.stop()  # the request comes back without jobs: its queues are to be fetched again
    assert leftover is not None and leftover.queues == [QUEUE] and not leftover.jobs
    assert not fetcher.busy
    assert boss.get_job(ids[0])["state"] == "created"
