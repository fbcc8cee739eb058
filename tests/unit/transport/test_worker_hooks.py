"""transport.worker_hooks and transport.worker_state: what a Celery worker hands the transport at
``worker_init``, and the defaults plain Kombu keeps."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from celery import Celery

from transport import worker_hooks
from transport.worker_state import WORKER, WorkerState


@pytest.fixture(autouse=True)
def _restore_worker() -> Iterator[None]:
    saved = dataclasses.replace(WORKER)
    yield
    for field in dataclasses.fields(WorkerState):
        setattr(WORKER, field.name, getattr(saved, field.name))


def test_without_a_worker_acks_settle_and_nothing_runs() -> None:
    state = WorkerState()
    assert state.acks_must_settle()
    assert not state.running_tasks()
    assert state.time_limits("any.task") == (None, None)
    state.check_shutdown()  # no host: nothing to raise


def test_worker_init_hands_in_the_workers_facts() -> None:
    app = Celery("hooks", set_as_current=False)  # no result backend: acks must settle
    app.conf.task_time_limit, app.conf.task_soft_time_limit = 60, 50

    @app.task(name="limited", time_limit=9, soft_time_limit=7)
    def limited() -> None: ...

    worker_hooks.on_worker_init(sender=SimpleNamespace(app=app))
    assert WORKER.acks_must_settle()
    assert WORKER.time_limits("limited") == (9, 7)
    assert WORKER.time_limits("not.registered") == (60, 50)  # the app's defaults
    assert WORKER.time_limits(None) == (None, None)
    assert WORKER.running_tasks() == frozenset()  # this process runs no task
    assert WORKER.shutdown_check is not None
    WORKER.check_shutdown()  # not told to stop: returns


def test_a_backend_that_cannot_be_built_means_acks_settle(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        @property
        def backend(self) -> Any:
            raise RuntimeError("no such backend")

    WORKER.backend_records_ends = True
    worker_hooks.on_worker_init(sender=SimpleNamespace(app=Broken()))
    assert WORKER.acks_must_settle()
    assert "could not tell the result backend" in caplog.text


def test_a_refusal_of_another_transports_message_is_ignored() -> None:
    message = SimpleNamespace(channel=object(), delivery_info={"pgboss_attempt": 0, "routing_key": "q"})
    worker_hooks.on_celery_refusal(message=message, exc=ValueError("bad"))  # nothing to fail, no raise
