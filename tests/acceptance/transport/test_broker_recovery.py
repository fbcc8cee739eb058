"""Workers that die, stop, lose their database connections, or order work by priority."""

from __future__ import annotations

import time
import uuid

import pytest

from tests.acceptance.broker_workers import BrokerEnv, wait_for


@pytest.fixture(scope="module")
def app_module(broker_env: BrokerEnv):
    return broker_env.app_module()


def test_sigkilled_worker_job_is_redelivered_and_completed_once(broker_env: BrokerEnv, app_module) -> None:
    key = f"killed-{uuid.uuid4().hex[:6]}"
    doomed = broker_env.worker("killa", ["killable"]).start()
    result = app_module.slow_record.apply_async((key, 3), queue="killable")
    job = broker_env.wait_state(result.id, "active")
    assert job["heartbeat_seconds"] == 10
    time.sleep(0.5)  # in the pool child, sleeping
    doomed.kill()  # main process and pool children: nothing is restored, nothing heartbeats
    assert broker_env.job(result.id)["state"] == "active"

    rescuer = broker_env.worker("killb", ["killable"]).start()
    # heartbeat_seconds 10 -> the rescuer's supervisor retries it (backoff 1-2 s) -> it runs 3 s.
    job = broker_env.wait_state(result.id, "completed", timeout=45)
    assert job["retry_count"] == 1
    assert job["output"] == {"value": key}
    assert len(broker_env.effects(key)) == 1
    assert f"Task broker_app.slow_record[{result.id}] succeeded" in rescuer.log()
    rescuer.stop()


def test_jobs_run_in_priority_order(broker_env: BrokerEnv, app_module) -> None:
    prefix = f"prio-{uuid.uuid4().hex[:6]}"
    priorities = [1, 5, 9, 3, 7, 0]
    for priority in priorities:  # queued before anything consumes the queue
        app_module.stamp.apply_async((f"{prefix}-{priority}",), queue="prio", priority=priority)
    worker = broker_env.worker("prio", ["prio"], concurrency=1, args=["--prefetch-multiplier", "1"]).start()

    def ran() -> list[str]:
        with broker_env.database.cursor() as cur:
            cur.execute(
                f'SELECT key FROM "{broker_env.schema}_effects".effect WHERE key LIKE %s ORDER BY at',
                (prefix + "%",),
            )
            keys = [r["key"] for r in cur.fetchall()]
        return keys if len(keys) == len(priorities) else []

    order = wait_for(ran, 20, what="every prioritised job to run")
    assert order == [f"{prefix}-{p}" for p in sorted(priorities, reverse=True)]
    worker.stop()


def test_warm_shutdown_hands_prefetched_jobs_back(broker_env: BrokerEnv, app_module) -> None:
    key = f"restored-{uuid.uuid4().hex[:6]}"
    worker = broker_env.worker("restorer", ["restorable"], concurrency=1).start()  # prefetches 4
    results = [app_module.slow_record.apply_async((f"{key}-{i}", 1.5), queue="restorable") for i in range(4)]
    # Prefetched: the running one plus those waiting in the worker (refills come in batches).
    held = lambda: sum(broker_env.job(r.id)["state"] == "active" for r in results) >= 3  # noqa: E731
    wait_for(held, 10, what="jobs to be held")
    time.sleep(0.3)  # the first one is running
    worker.stop()  # SIGTERM: finish what runs, give back what does not
    states = [broker_env.job(r.id)["state"] for r in results]
    assert states.count("completed") >= 1, states
    restored = [broker_env.job(r.id) for r in results if broker_env.job(r.id)["state"] != "completed"]
    assert restored, states
    for job in restored:
        assert job["state"] == "created" and job["started_on"] is None and job["retry_count"] == 0, job
    # Another worker takes them at once: a restore NOTIFYs the queue.
    second = broker_env.worker("restorer2", ["restorable"], concurrency=2).start()
    for r in results:
        broker_env.wait_state(r.id, "completed", timeout=20)
    assert all(len(broker_env.effects(f"{key}-{i}")) == 1 for i in range(4))
    second.stop()


def test_worker_reconnects_after_its_connections_are_killed(broker_env: BrokerEnv, app_module) -> None:
    name = f"phoenix-{uuid.uuid4().hex[:6]}"
    worker = broker_env.worker("phoenix", ["phoenix"], extra_env={"ZEKE_BROKER_TEST_APPNAME": name}).start()
    first = app_module.stamp.apply_async((f"{name}-1",), queue="phoenix")
    broker_env.wait_state(first.id, "completed")
    with broker_env.database.cursor() as cur:  # what a PostgreSQL restart does to the worker
        cur.execute(
            "SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity WHERE application_name = %s",
            (name,),
        )
        assert cur.fetchone()["n"] >= 1
    second = app_module.stamp.apply_async((f"{name}-2",), queue="phoenix")
    broker_env.wait_state(second.id, "completed", timeout=30)
    assert len(broker_env.effects(f"{name}-2")) == 1
    assert "Connection to broker lost" in worker.log()
    worker.stop()


def test_a_task_running_through_a_reconnect_stays_heartbeated(broker_env: BrokerEnv, app_module) -> None:
    """The worker loses its connections while a task runs: the job is left to the result backend
    and must stay heartbeated until the task ends. (Its heartbeat stopped with the old connection:
    pg-boss retried the job 10 s later, the task ran a second time beside the first, and the first
    run's result was dropped.)"""
    name = f"runs-on-{uuid.uuid4().hex[:6]}"
    worker = broker_env.worker("runs-on", ["runs-on"], extra_env={"ZEKE_BROKER_TEST_APPNAME": name}).start()
    result = app_module.slow_record.apply_async((name, 16), queue="runs-on")
    assert broker_env.wait_state(result.id, "active")["heartbeat_seconds"] == 10
    time.sleep(1)  # in the pool child, sleeping
    with broker_env.database.cursor() as cur:
        cur.execute(
            "SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity WHERE application_name = %s",
            (name,),
        )
        assert cur.fetchone()["n"] >= 1
    job = broker_env.wait_state(result.id, "completed", "failed", timeout=45)
    assert "Connection to broker lost" in worker.log()
    assert job["state"] == "completed" and job["retry_count"] == 0, job
    assert job["output"] == {"value": name}
    assert len(broker_env.effects(name)) == 1
    worker.stop()


def test_a_message_the_worker_refuses_fails_at_once(broker_env: BrokerEnv, app_module) -> None:
    """Celery rejects a message it will not run (pickle content; the worker accepts only JSON)
    without writing any result. The job fails at once, saying why, without using its retries: the
    next attempt would meet the same refusal. (The worker kept heartbeating it: it stayed active
    until its expiry an hour later; then it was left to its heartbeat timeout, attempt after
    attempt.)"""
    broker_env.manager.create_queue("refused", retry_limit=2, heartbeat_seconds=10)
    worker = broker_env.worker("refuser", ["refused"]).start()
    result = app_module.add.apply_async((1, 2), queue="refused", serializer="pickle")
    job = broker_env.wait_state(result.id, "failed", timeout=20)
    assert job["retry_count"] == 0 and job["output"]["name"] == "MalformedJob"
    assert "Refusing to deserialize untrusted content" in job["output"]["message"]
    assert "Refusing to deserialize untrusted content" in worker.log()
    worker.stop()


def test_settle_on_ack_without_a_result_backend(broker_env: BrokerEnv, app_module) -> None:
    """A worker whose result backend is not pg-boss: acks complete, rejects fail, revokes cancel."""
    key = f"ack-{uuid.uuid4().hex[:6]}"
    worker = broker_env.worker("acker", ["ack-mode"], settle="ack").start()
    done = app_module.stamp.apply_async((key,), queue="ack-mode")
    assert broker_env.wait_state(done.id, "completed")["output"] is None
    failing = app_module.boom.apply_async((key,), queue="ack-mode")  # retry_limit 1 on "ack-mode"
    job = broker_env.wait_state(failing.id, "failed", timeout=20)
    assert job["retry_count"] == 1 and job["output"] == {"value": {"message": "rejected by the consumer"}}
    revoked = app_module.stamp.apply_async((key + "-revoked",), queue="ack-mode", countdown=1.5)
    app_module.app.control.revoke(revoked.id)
    broker_env.wait_state(revoked.id, "cancelled", timeout=15)
    assert not broker_env.effects(key + "-revoked")
    worker.stop()


def test_a_worker_without_a_result_backend_completes_its_jobs_by_default(
    broker_env: BrokerEnv,
    app_module,
) -> None:
    """Plain Celery with no result backend and no transport option: nothing but the ack can end a
    job, so acks settle by default. (They did not: jobs stayed active, heartbeated, until expiry
    retried them.)"""
    key = f"auto-{uuid.uuid4().hex[:6]}"
    worker = broker_env.worker("auto", ["ack-mode"], settle="auto").start()
    done = app_module.stamp.apply_async((key,), queue="ack-mode")
    job = broker_env.wait_state(done.id, "completed", timeout=20)
    assert job["retry_count"] == 0 and len(broker_env.effects(key)) == 1
    worker.stop()


def test_worker_heartbeats_keep_a_long_task_alive(broker_env: BrokerEnv, app_module) -> None:
    """A task running longer than heartbeat_seconds (10 s) is touched by its worker's main process,
    so the supervisors (1 s passes in every worker) leave it alone."""
    key = f"long-{uuid.uuid4().hex[:6]}"
    result = app_module.slow_record.delay(key, 12)
    assert result.get(timeout=40) == key
    job = broker_env.job(result.id)
    assert job["state"] == "completed" and job["retry_count"] == 0
    assert job["heartbeat_seconds"] == 10
    assert len(broker_env.effects(key)) == 1
