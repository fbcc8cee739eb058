"""transport.celery_options: who retries a raise, the retry budget of Celery's options, and the
errors no retry mends (no database; the end-to-end behaviour is in
tests/acceptance/transport/test_celery_options.py)."""

from __future__ import annotations

from typing import Any

import pytest
from billiard.exceptions import WorkerLostError
from celery import Celery
from celery.app.task import Context
from celery.exceptions import Reject, SoftTimeLimitExceeded
from kombu.exceptions import EncodeError

from transport import celery_options
from transport.exceptions import InvalidOption


def make_app(**transport: Any) -> Celery:
    app = Celery("options-tests", set_as_current=False)
    app.conf.broker_transport_options = transport
    return app


def test_who_retries_a_raise() -> None:
    app = make_app()

    @app.task(name="t.plain")
    def plain() -> None: ...

    @app.task(name="t.celery", max_retries=2)
    def by_celery() -> None: ...

    @app.task(name="t.auto", autoretry_for=(KeyError,))
    def auto() -> None: ...

    policy = celery_options.retry_policy
    assert policy(plain) == "pgboss"  # sets nothing: its queue decides
    assert policy(by_celery) == "celery"  # Celery retried already, or chose not to
    assert policy(auto) == "celery"
    assert policy(by_celery, {"retry_limit": 1}) == "pgboss"  # the call says last
    assert policy(None) == "pgboss"


def test_the_retry_policy_of_queues_the_transport_creates() -> None:
    assert celery_options.queue_defaults(None) == {"retry_limit": 0}
    assert celery_options.queue_defaults("celery") == {"retry_limit": 0}
    assert celery_options.queue_defaults("pgboss") == {}  # the seed's queue defaults
    with pytest.raises(InvalidOption, match="retry_policy"):
        celery_options.queue_defaults("sometimes")


def test_a_stamped_policy_wins_over_the_workers_guess() -> None:
    assert celery_options.raise_is_retried_by_pgboss(None, Context(pgboss_retry="celery")) is False
    assert celery_options.raise_is_retried_by_pgboss(None, Context()) is True


def test_celery_retry_options_as_pg_boss_fields() -> None:
    app = make_app()

    @app.task(name="t.backoff", max_retries=4, retry_backoff=3, retry_backoff_max=60)
    def backoff() -> None: ...

    @app.task(name="t.forever", max_retries=None, default_retry_delay=10)
    def forever() -> None: ...

    @app.task(name="t.auto", autoretry_for=(KeyError,))
    def auto() -> None: ...

    assert celery_options.celery_retry_fields(backoff) == {
        "retry_limit": 4,
        "retry_backoff": True,
        "retry_delay": 3,
        "retry_delay_max": 60,
    }
    assert celery_options.celery_retry_fields(forever) == {
        "retry_limit": celery_options.UNLIMITED,
        "retry_backoff": False,
        "retry_delay": 10,
    }
    # Celery's default max_retries is the budget; delays the task leaves alone stay the queue's.
    assert celery_options.celery_retry_fields(auto) == {"retry_limit": 3}


def test_errors_no_retry_mends() -> None:
    app = make_app()

    @app.task(name="t.add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="t.bound", bind=True)
    def bound(self: Any, x: int) -> int:
        return x

    never = celery_options.never_succeeds
    assert never(TypeError("wrong"), add, Context(args=[1], kwargs={}))
    assert not never(TypeError("inside the task"), add, Context(args=[1, 2], kwargs={}))
    assert not never(TypeError("inside the task"), bound, Context(args=[1], kwargs={}))
    assert never(EncodeError("NUL"), add, None)
    assert never(Reject("no"), add, None)
    assert never({"exc_type": "EncodeError", "exc_message": []}, None, None)
    assert not never(ValueError("maybe next time"), add, Context(args=[1, 2], kwargs={}))


def test_a_lost_attempt_is_not_a_task_error() -> None:
    limit = SoftTimeLimitExceeded()
    assert celery_options.attempt_lost(limit, Context(pgboss_expiry_limit=True))
    assert not celery_options.attempt_lost(limit, Context())  # the task's own time limit
    assert not celery_options.attempt_lost(ValueError(), Context(pgboss_expiry_limit=True))
    assert celery_options.attempt_lost(WorkerLostError("signal 9"), Context())
    assert celery_options.attempt_lost({"exc_type": "WorkerLostError", "exc_message": []}, None)


def test_only_a_pg_boss_sender_gets_pg_boss_headers() -> None:
    pgboss = Celery("options-pgboss", broker="pgboss://u@h/db", set_as_current=False)
    other = Celery("options-memory", broker="memory://", set_as_current=False)

    def shared() -> None:
        pass

    for app in (pgboss, other):  # the same task name in both apps, with pg-boss options
        app.task(name="options.shared", pgboss={"retry_limit": 7}, shared=False)(shared)
        app.finalize()  # as sending does

    def stamped(sender: Celery) -> dict[str, Any]:
        headers: dict[str, Any] = {"task": "options.shared", "id": "x", "ignore_result": False}
        properties = {"reply_to": sender.thread_oid}  # what send_task sets
        celery_options.on_before_publish(sender="options.shared", headers=headers, properties=properties)
        return {k: v for k, v in headers.items() if k.startswith("pgboss")}

    assert stamped(pgboss) == {"pgboss_retry": "pgboss", "pgboss": {"retry_limit": 7}}
    assert stamped(other) == {}  # memory:// publishes its own message: nothing of pg-boss's


def test_an_apps_broker_is_read_again_for_each_producer_pool() -> None:
    """The hook remembers whether an app is on pg-boss for as long as its producer pool (which keeps
    the broker it was made for); a new pool (after a fork, ``close()``) reads the configuration again."""
    app = Celery("options-moving", broker="pgboss://u@h/db", set_as_current=False)
    app.task(name="options.moving", shared=False)(_nothing)
    app.finalize()

    def stamped() -> bool:
        headers: dict[str, Any] = {"task": "options.moving", "id": "x", "ignore_result": False}
        properties = {"reply_to": app.thread_oid}
        celery_options.on_before_publish(sender="options.moving", headers=headers, properties=properties)
        return "pgboss_retry" in headers

    pool = app.amqp.producer_pool
    assert stamped()
    app.conf.broker_url = "memory://"
    assert stamped()  # the pool still publishes to pg-boss
    app.amqp._producer_pool = None  # what Celery does after a fork
    assert not stamped()
    assert app.amqp.producer_pool is not pool
    assert not stamped()
    app.conf.broker_url = "pgboss://u@h/db"
    assert not stamped()  # that pool publishes to memory://
    app.amqp._producer_pool = None
    assert stamped()


def test_the_sender_is_its_threads_oid_only() -> None:
    """An app found by its oid once is checked again on every use: another thread's app with the
    same oid string (none here) or a dead app is not taken for it."""
    import threading

    app = Celery("options-oid", broker="pgboss://u@h/db", set_as_current=False)
    app.task(name="options.oid", shared=False)(_nothing)
    app.finalize()
    oid = app.thread_oid
    assert celery_options._sender(oid) is app
    assert celery_options._sender(oid) is app  # remembered
    elsewhere: list[Any] = []
    thread = threading.Thread(target=lambda: elsewhere.append(celery_options._sender(oid)))
    thread.start()
    thread.join()
    assert elsewhere == [None]  # in another thread the app's oid is another one


def _nothing() -> None:
    pass
