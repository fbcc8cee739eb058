"""Node pg-boss 12.38 and Celery on the same queues, both ways (tests/node/celery_interop.mjs)."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.acceptance.broker_workers import ROOT, BrokerEnv, broker_env, wait_for  # noqa: F401  (fixture)
from transport.db import dsn_from_url

pytestmark = pytest.mark.node
SCRIPT = ROOT / "tests" / "node" / "celery_interop.mjs"
# node_dir (tests/conftest.py) installs tests/node's pg-boss releases, or fails.


@pytest.fixture(scope="module")
def app_module(broker_env: BrokerEnv):  # noqa: F811
    return broker_env.app_module()


def run_node(env: BrokerEnv, *args: str, timeout: float = 60) -> dict:
    argv = ["node", str(SCRIPT), dsn_from_url(env.db_url), env.schema, *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_node_job_runs_as_the_python_task_named_like_its_queue(node_dir: Path, broker_env: BrokerEnv) -> None:  # noqa: F811
    story = f"story-{uuid.uuid4().hex[:6]}"
    job_id = run_node(broker_env, "send", "analyze-story", json.dumps({"storyId": story}))["id"]
    job = broker_env.wait_state(job_id, "completed", timeout=15)
    assert job["output"] == {"analyzed": story}  # the Python task's return value, in Node's shape
    assert [r["value"] for r in broker_env.effects("analyze-story") if r["value"] == story] == [story]


def test_node_job_runs_as_the_python_task_routed_to_its_queue(node_dir: Path, broker_env: BrokerEnv) -> None:  # noqa: F811
    story = f"routed-{uuid.uuid4().hex[:6]}"
    job_id = run_node(broker_env, "send", "story-routed", json.dumps({"story_id": story}))["id"]
    job = broker_env.wait_state(job_id, "completed", timeout=15)
    assert job["output"] == {"value": story}


def test_python_task_is_worked_by_a_node_handler(node_dir: Path, broker_env: BrokerEnv, app_module) -> None:  # noqa: F811
    story = f"py-{uuid.uuid4().hex[:6]}"
    result = app_module.app.send_task("node.handles.this", kwargs={"story_id": story}, queue="node-stories")
    jobs = run_node(broker_env, "work", "node-stories", "1", "20000")["jobs"]
    assert [j["id"] for j in jobs] == [result.id]
    data = jobs[0]["data"]
    assert data["story_id"] == story  # the plain payload: the task's kwargs
    assert data["__celery"]["task"] == "node.handles.this"
    job = broker_env.wait_state(result.id, "completed")
    assert job["output"] == {"handledBy": "node"}
