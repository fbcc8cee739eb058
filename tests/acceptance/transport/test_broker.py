"""Celery tasks on ``pgboss://`` in two real prefork workers: the job row is the task's truth."""

from __future__ import annotations

import datetime as dt
import threading
import uuid

import pytest

from tests.acceptance.broker_workers import BrokerEnv, wait_for


@pytest.fixture(scope="module")
def app_module(broker_env: BrokerEnv):
    return broker_env.app_module()


def test_success_completes_the_job_with_its_output(broker_env: BrokerEnv, app_module) -> None:
    result = app_module.add.delay(2, 3)
    assert result.get(timeout=15) == 5
    job = broker_env.job(result.id)
    assert job["state"] == "completed"
    assert job["output"] == {"value": 5}
    assert job["name"] == "celery"
    # The payload a Node handler reads: kwargs (none here) plus the envelope.
    assert job["data"]["__celery"]["task"] == "broker_app.add"
    assert job["data"]["__celery"]["args"] == [2, 3]


def test_failure_retries_with_pg_boss_backoff_then_fails(broker_env: BrokerEnv, app_module) -> None:
    message = f"bad-{uuid.uuid4().hex[:6]}"
    result = app_module.boom.delay(message)
    seen: list[dict] = []

    def failed() -> bool:
        job = broker_env.job(result.id)
        if not seen or (job["state"], job["retry_count"]) != (seen[-1]["state"], seen[-1]["retry_count"]):
            seen.append(job)
        return job["state"] == "failed"

    wait_for(failed, 30, interval=0.05, what="the job to fail for good")
    job = seen[-1]
    assert job["retry_count"] == 2  # queue "fragile": retry_limit 2, so three attempts
    assert job["output"]["message"] == message and job["output"]["name"] == "ValueError"
    assert any(j["state"] == "retry" for j in seen), [(j["state"], j["retry_count"]) for j in seen]
    runs = broker_env.effects("boom")
    runs = [r for r in runs if r["value"] == message]
    assert len(runs) == 3
    # pg-boss's backoff (retry_delay 1 s): 1-2 s before the 2nd attempt, 2-4 s before the 3rd.
    gaps = [(b["at"] - a["at"]).total_seconds() for a, b in zip(runs, runs[1:], strict=False)]
    assert gaps[0] >= 1.0 and gaps[1] >= 2.0, gaps


def test_task_retry_keeps_the_same_job_row(broker_env: BrokerEnv, app_module) -> None:
    key = f"flaky-{uuid.uuid4().hex[:6]}"
    result = app_module.flaky.delay(key, 2, 1.0)
    assert result.get(timeout=20) == 2
    job = broker_env.job(result.id)
    assert job["state"] == "completed" and job["output"] == {"value": 2}
    assert job["retry_count"] == 2  # fetched three times: one row, two Celery retries
    assert len(broker_env.manager.get_jobs([result.id])) == 1
    runs = broker_env.effects(key)
    assert [r["value"] for r in runs] == ["0", "1", "2"]
    gaps = [(b["at"] - a["at"]).total_seconds() for a, b in zip(runs, runs[1:], strict=False)]
    assert all(0.95 <= gap < 1.6 for gap in gaps), gaps  # countdown=1 honoured by start_after


def test_eta_is_honoured_by_start_after(broker_env: BrokerEnv, app_module) -> None:
    key = f"eta-{uuid.uuid4().hex[:6]}"
    eta = broker_env.db_now() + dt.timedelta(seconds=2)
    result = app_module.stamp.apply_async((key,), eta=eta)
    job = broker_env.job(result.id)
    assert job["state"] == "created" and abs((job["start_after"] - eta).total_seconds()) < 0.01
    wait_for(lambda: broker_env.effects(key), 10, what="the ETA task to run")
    late = (broker_env.effects(key)[0]["at"] - eta).total_seconds()
    assert 0 <= late < 0.5, late


def test_countdown_runs_on_time(broker_env: BrokerEnv, app_module) -> None:
    key = f"countdown-{uuid.uuid4().hex[:6]}"
    sent = broker_env.db_now()
    app_module.stamp.apply_async((key,), countdown=1.5)
    wait_for(lambda: broker_env.effects(key), 10, what="the countdown task to run")
    elapsed = (broker_env.effects(key)[0]["at"] - sent).total_seconds()
    assert 1.5 <= elapsed < 2.0, elapsed


def test_revoking_a_queued_job_cancels_it(broker_env: BrokerEnv, app_module) -> None:
    key = f"revoked-{uuid.uuid4().hex[:6]}"
    result = app_module.stamp.apply_async((key,), countdown=2)
    app_module.app.control.revoke(result.id)
    job = broker_env.wait_state(result.id, "cancelled", timeout=15)
    assert job["state"] == "cancelled"
    assert not broker_env.effects(key)


def test_revoke_terminate_stops_a_running_task(broker_env: BrokerEnv, app_module) -> None:
    key = f"terminated-{uuid.uuid4().hex[:6]}"
    result = app_module.slow_record.delay(key, 20)
    broker_env.wait_state(result.id, "active")
    wait_for(
        lambda: any(
            t["id"] == result.id
            for tasks in (app_module.app.control.inspect().active() or {}).values()
            for t in tasks
        ),
        10,
        what="the task to be running",
    )
    app_module.app.control.revoke(result.id, terminate=True)
    broker_env.wait_state(result.id, "cancelled", timeout=15)
    assert not broker_env.effects(key)


def test_inspect_ping_is_answered_by_both_workers(broker_env: BrokerEnv, app_module) -> None:
    replies = app_module.app.control.inspect(timeout=2).ping()
    assert replies == {"w1@zeke-test": {"ok": "pong"}, "w2@zeke-test": {"ok": "pong"}}


def test_inspect_registered_active_queues_and_stats(broker_env: BrokerEnv, app_module) -> None:
    inspect = app_module.app.control.inspect(timeout=2)
    registered = inspect.registered()
    assert set(registered) == {"w1@zeke-test", "w2@zeke-test"}
    assert "broker_app.add" in registered["w1@zeke-test"]
    queues = inspect.active_queues()
    assert {q["name"] for q in queues["w2@zeke-test"]} >= {"celery", "fragile", "analyze-story"}
    stats = inspect.stats()  # large replies travel the broadcast log too
    assert stats["w1@zeke-test"]["broker"]["transport"] == "pgboss"


def test_control_rate_limit(broker_env: BrokerEnv, app_module) -> None:
    replies = app_module.app.control.rate_limit("broker_app.stamp", "100/s", reply=True, timeout=2)
    assert len(replies) == 2
    assert all("ok" in next(iter(r.values())) for r in replies), replies


def test_events_reach_an_event_receiver(broker_env: BrokerEnv, app_module) -> None:
    app = app_module.app
    seen: list[dict] = []
    wanted: list[str] = []
    receivers: list = []

    def on_event(event: dict) -> None:
        seen.append(event)
        if event.get("type") == "task-succeeded" and event.get("uuid") in wanted:
            receivers[0].should_stop = True

    def capture() -> None:
        with app.connection_for_read() as conn:
            receiver = app.events.Receiver(conn, handlers={"*": on_event})
            receivers.append(receiver)
            receiver.capture(limit=None, timeout=20, wakeup=True)

    thread = threading.Thread(target=capture, daemon=True)
    thread.start()
    # wakeup=True asks every worker for a heartbeat: once one arrives, the receiver is listening.
    wait_for(
        lambda: any(e.get("type") == "worker-heartbeat" for e in seen), 10, what="a worker heartbeat event"
    )
    result = app_module.add.delay(20, 22)
    wanted.append(result.id)
    assert result.get(timeout=10) == 42
    thread.join(15)
    types = {e["type"] for e in seen if e.get("uuid") == result.id}
    assert {"task-received", "task-started", "task-succeeded"} <= types, types
