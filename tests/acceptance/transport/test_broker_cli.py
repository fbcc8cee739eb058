"""The ``celery`` command line and Flower against workers on ``pgboss://``."""

from __future__ import annotations

import json
import socket
import subprocess
import urllib.request
import uuid

import pytest

from tests.acceptance.broker_workers import CELERY, ROOT, BrokerEnv, Output, wait_for

APP = "tests.acceptance.broker_app"


@pytest.fixture(scope="module")
def app_module(broker_env: BrokerEnv):
    return broker_env.app_module()


def celery(env: BrokerEnv, *args: str, timeout: float = 30) -> str:
    done = subprocess.run(
        [CELERY, "-A", APP, *args],
        cwd=ROOT,
        env=env.environ(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_celery_inspect_and_control_commands(broker_env: BrokerEnv) -> None:
    pong = celery(broker_env, "inspect", "ping", "--timeout", "1", "--json")
    assert json.loads(pong) == {"w1@zeke-test": {"ok": "pong"}, "w2@zeke-test": {"ok": "pong"}}
    registered = json.loads(celery(broker_env, "inspect", "registered", "--timeout", "1", "--json"))
    assert set(registered) == {"w1@zeke-test", "w2@zeke-test"}, registered
    # ("broker_app.stamp [rate_limit=...]" once a test changed its rate limit)
    assert all(any(t.startswith("broker_app.stamp") for t in tasks) for tasks in registered.values())
    assert set(json.loads(celery(broker_env, "inspect", "active", "--timeout", "1", "--json"))) == set(
        registered
    )
    limited = celery(broker_env, "control", "rate_limit", "broker_app.stamp", "50/s", "--timeout", "1")
    assert limited.count("new rate limit set successfully") == 2
    revoked = celery(broker_env, "control", "revoke", str(uuid.uuid4()), "--timeout", "1")
    assert revoked.count("flagged as revoked") == 2, revoked


def test_celery_events_dump_shows_worker_heartbeats(broker_env: BrokerEnv) -> None:
    process = subprocess.Popen(
        [CELERY, "-A", APP, "events", "--dump"], cwd=ROOT, env=broker_env.environ(),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    events = Output(process)
    try:  # workers heartbeat every 2 s
        events.wait_for(lambda text: "w1@zeke-test" in text and "heartbeat" in text, 30, what="a heartbeat")
    finally:
        output = events.stop(timeout=10)
    assert "w1@zeke-test" in output and "heartbeat" in output, output[-2000:]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str) -> tuple[int, bytes]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.read()


def test_flower_worker_and_task_pages(broker_env: BrokerEnv, app_module) -> None:
    port = _free_port()
    env = {**broker_env.environ(), "FLOWER_UNAUTHENTICATED_API": "true"}
    flower = subprocess.Popen(
        [CELERY, "-A", APP, "flower", f"--port={port}", "--address=127.0.0.1"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:

        def up() -> bool:
            try:
                return _get(base + "/healthcheck")[0] == 200
            except OSError:
                return False

        wait_for(up, 20, what="Flower to listen")
        status, body = _get(base + "/api/workers?refresh=1")
        workers = json.loads(body)
        assert {"w1@zeke-test", "w2@zeke-test"} <= set(workers), list(workers)
        assert "broker_app.add" in workers["w1@zeke-test"]["registered"]
        result = app_module.add.delay(1, 2)
        assert result.get(timeout=10) == 3

        def seen() -> dict | None:
            tasks = json.loads(_get(base + "/api/tasks")[1])
            task = tasks.get(result.id)
            return task if task and task.get("state") == "SUCCESS" else None

        task = wait_for(seen, 15, interval=0.5, what="Flower to see the task succeed")
        assert task["name"] == "broker_app.add"
        assert _get(base + "/workers")[0] == 200
        assert _get(base + "/worker/w1@zeke-test")[0] == 200
        assert _get(base + f"/task/{result.id}")[0] == 200
    finally:
        flower.terminate()
        flower.communicate(timeout=10)
