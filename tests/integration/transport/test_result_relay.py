"""Pool children hand results to their main process, which completes the jobs many per statement.

The test process plays the worker's main process (it owns the relay); forked children play pool
children and settle jobs through the result backend as a worker's child does. What is checked is what
users rely on: the job rows, what ``AsyncResult.get()`` returns, and the direct path where the relay
cannot help.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg2
import psycopg2.extensions
import pytest
from celery import Celery
from celery.app.task import Context
from kombu.exceptions import EncodeError

from transport import result_relay
from transport.backend import PgBossBackend
from transport.db import dsn_from_url
from transport.manager import FetchedJob, JobManager

pytestmark = pytest.mark.own_database("result_relay")

QUEUE = "relay-q"


@pytest.fixture
def app(db_url: str, boss: JobManager) -> Iterator[Celery]:
    app = Celery("test-relay-" + uuid.uuid4().hex[:6], set_as_current=False)
    app.conf.update(
        broker_url="memory://",
        result_backend="transport.backend:PgBossBackend://" + db_url.split("://", 1)[1],
        result_backend_transport_options={"schema": boss.schema},
    )
    boss.create_queue(QUEUE, retry_limit=0)
    yield app
    app.backend.close()


@pytest.fixture
def relay(app: Celery) -> Iterator[result_relay.ResultRelay]:
    backend = app.backend
    assert isinstance(backend, PgBossBackend) and backend.relay_results
    relay = result_relay.ResultRelay(backend.manager)
    setattr(app, result_relay.APP_ATTRIBUTE, relay)
    yield relay
    relay.stop()


def fetched(boss: JobManager, count: int) -> list[FetchedJob]:
    for i in range(count):
        boss.send(QUEUE, {"i": i})
    jobs = boss.fetch([QUEUE], count)
    assert len(jobs) == count
    return jobs


def request(job: FetchedJob, attempt: int | None = None) -> Context:
    attempt = job.retry_count if attempt is None else attempt
    return Context(
        id=job.id, task="t.task", chord=None, group=None,
        delivery_info={"routing_key": job.name}, pgboss_attempt=attempt,
    )  # fmt: skip


def in_child(work: Callable[[], Any]) -> None:
    """Run ``work`` in a forked child, as a prefork pool child runs a task."""
    child = multiprocessing.get_context("fork").Process(target=work)
    child.start()
    child.join(30)
    assert child.exitcode == 0


def test_results_handed_by_children_are_written_together(
    app: Celery, relay: result_relay.ResultRelay, boss: JobManager
) -> None:
    jobs = fetched(boss, 50)

    def settle() -> None:
        backend = app.backend
        for n, job in enumerate(jobs):
            backend.mark_as_done(job.id, {"n": n}, request=request(job))

    in_child(settle)
    assert [app.AsyncResult(job.id).get(timeout=10) for job in jobs] == [{"n": n} for n in range(50)]
    rows = boss.get_jobs([job.id for job in jobs])
    assert {row["state"] for row in rows} == {"completed"}
    assert len({row["completed_on"] for row in rows}) < 50  # several per statement


def test_a_child_without_the_relay_writes_each_result_itself(app: Celery, boss: JobManager) -> None:
    """The comparison that shows the test above can fail."""
    jobs = fetched(boss, 10)

    def settle() -> None:
        for job in jobs:
            app.backend.mark_as_done(job.id, 1, request=request(job))

    in_child(settle)
    rows = boss.get_jobs([job.id for job in jobs])
    assert {row["state"] for row in rows} == {"completed"}
    assert len({row["completed_on"] for row in rows}) == 10


def test_the_main_process_and_big_results_take_the_direct_path(
    app: Celery, relay: result_relay.ResultRelay, boss: JobManager
) -> None:
    small, big = fetched(boss, 2)
    assert not relay.hand(QUEUE, small.id, small.retry_count, 1, ignored=False)  # the owner writes itself
    app.backend.mark_as_done(small.id, "here", request=request(small))
    assert boss.get_job(small.id)["state"] == "completed"  # at once: no relay in between

    value = "x" * (result_relay.MAX_DATAGRAM + 1)
    in_child(lambda: app.backend.mark_as_done(big.id, value, request=request(big)))
    assert app.AsyncResult(big.id).get(timeout=10) == value


def test_a_result_for_an_attempt_that_ended_is_dropped_and_logged(
    app: Celery, relay: result_relay.ResultRelay, boss: JobManager, caplog: pytest.LogCaptureFixture
) -> None:
    [job] = fetched(boss, 1)
    boss.fail(QUEUE, [job.id], {"message": "expired meanwhile"}, retry=False)
    with caplog.at_level(logging.WARNING, logger="transport.result_relay"):
        in_child(lambda: app.backend.mark_as_done(job.id, 1, request=request(job)))
        relay.stop()  # writes what arrived
    assert boss.get_job(job.id)["state"] == "failed"
    assert any(job.id in r.getMessage() and "no longer active" in r.getMessage() for r in caplog.records)


def test_stop_writes_what_arrived(app: Celery, relay: result_relay.ResultRelay, boss: JobManager) -> None:
    jobs = fetched(boss, 20)

    def settle() -> None:
        for job in jobs:
            app.backend.mark_as_done(job.id, None, request=request(job))

    in_child(settle)
    relay.stop()
    assert {row["state"] for row in boss.get_jobs([job.id for job in jobs])} == {"completed"}
    # Once stopped, children write directly again.
    [late] = fetched(boss, 1)
    in_child(lambda: app.backend.mark_as_done(late.id, 2, request=request(late)))
    assert boss.get_job(late.id)["state"] == "completed"


def test_an_unstorable_result_raises_in_the_child_and_the_relay_goes_on(
    app: Celery, relay: result_relay.ResultRelay, boss: JobManager
) -> None:
    """A value the database cannot hold (a NUL character) raises in the task's own process, as the
    direct write does, so Celery records the failure; the results after it are written as usual."""
    bad, good = fetched(boss, 2)

    def settle() -> None:
        try:
            app.backend.mark_as_done(bad.id, "a\x00b", request=request(bad))
        except EncodeError:
            app.backend.mark_as_done(good.id, "fine", request=request(good))
        else:
            raise SystemExit(1)

    in_child(settle)
    assert app.AsyncResult(good.id).get(timeout=10) == "fine"
    assert boss.get_job(bad.id)["state"] == "active"  # Celery's on_failure writes the failure next


@contextlib.contextmanager
def database_away(db_url: str) -> Iterator[None]:
    """Every session of the test database ended and new ones refused, as while a server restarts."""
    name = psycopg2.extensions.parse_dsn(dsn_from_url(db_url))["dbname"]
    admin = psycopg2.connect(dsn_from_url(db_url), dbname="postgres")
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
            cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
            try:
                yield
            finally:
                cur.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
    finally:
        admin.close()


def _logged(caplog: pytest.LogCaptureFixture, text: str) -> bool:
    return any(text in record.getMessage() for record in caplog.records)


def _wait(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_results_wait_through_an_outage_and_are_written_once_it_ends(
    app: Celery,
    relay: result_relay.ResultRelay,
    boss: JobManager,
    db_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    jobs = fetched(boss, 3)
    caplog.set_level(logging.INFO)
    with database_away(db_url):

        def settle() -> None:
            for n, job in enumerate(jobs):
                app.backend.mark_as_done(job.id, n, request=request(job))

        in_child(settle)  # the child is free at once: the main process holds the results
        _wait(lambda: _logged(caplog, "result backend: database unavailable"))
    assert [app.AsyncResult(job.id).get(timeout=20) for job in jobs] == [0, 1, 2]
    assert {row["retry_count"] for row in boss.get_jobs([job.id for job in jobs])} == {0}


def test_results_that_wait_too_long_are_given_up(app: Celery, boss: JobManager, db_url: str) -> None:
    """Past ``result_retry_seconds`` the relay gives the job up (the backend hands it back)."""
    given_up: list[str] = []
    backend = app.backend
    relay = result_relay.ResultRelay(
        backend.manager,
        retry_seconds=0.5,
        give_up=lambda queue, job_id, attempt, exc: given_up.append(job_id),
    )
    setattr(app, result_relay.APP_ATTRIBUTE, relay)
    try:
        jobs = fetched(boss, 2)
        with database_away(db_url):
            in_child(lambda: [backend.mark_as_done(job.id, 1, request=request(job)) for job in jobs])
            _wait(lambda: len(given_up) == 2)
    finally:
        relay.stop()
    assert sorted(given_up) == sorted(job.id for job in jobs)
    assert {row["state"] for row in boss.get_jobs([job.id for job in jobs])} == {"active"}
