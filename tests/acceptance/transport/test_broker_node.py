"""Node pg-boss and Celery on the same queues, both ways (tests/node/celery_interop.mjs), for each
release of the interop matrix: 12.38.1 on the schema the workers installed (46), 12.34.0 and 12.5.4
on the schema each installs for itself (42 and 26) before a worker starts on it."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery

from tests.acceptance.broker_workers import (
    ROOT,
    BrokerEnv,
    drop_env,
    make_env,
)
from transport.db import Database, dsn_from_url

pytestmark = pytest.mark.node
SCRIPT = ROOT / "tests" / "node" / "celery_interop.mjs"
# node_dir (tests/conftest.py) installs tests/node's pg-boss releases, or fails.

#: Release -> the schema version it runs on.
RELEASES = {"12.38": 46, "12.34": 42, "12.5": 26}
VERSIONS = {"12.38": "12.38.1", "12.34": "12.34.0", "12.5": "12.5.4"}
QUEUES = ["celery", "analyze-story", "story-routed"]


def run_node(release: str, env: BrokerEnv, *args: str, timeout: float = 60) -> dict:
    argv = ["node", str(SCRIPT), release, dsn_from_url(env.db_url), env.schema, *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module", params=list(RELEASES), ids=[f"pg-boss-{VERSIONS[r]}" for r in RELEASES])
def node_env(
    request: pytest.FixtureRequest,
    node_dir: Path,
    broker_env: BrokerEnv,
    session_db_url: str,
    session_database: Database,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, BrokerEnv]]:
    release = request.param
    if RELEASES[release] == 46:
        yield release, broker_env  # the session's workers, on the schema they installed
        return
    env = make_env(session_db_url, session_database, tmp_path_factory.mktemp(f"node-{release}"))
    try:
        assert run_node(release, env, "install") == {"schemaVersion": RELEASES[release]}
        env.worker("w1", QUEUES).start()
        yield release, env
    finally:
        drop_env(env)


def producer(env: BrokerEnv) -> Celery:
    """A Celery client on ``env``'s schema (the shared broker_app is bound to the session's schema)."""
    app = Celery("node-matrix", broker=env.url, backend=env.url)
    app.conf.update(
        broker_transport_options={"schema": env.schema},
        result_backend_transport_options={"schema": env.schema},
        task_serializer="json",
        accept_content=["json"],
    )
    return app


def test_node_job_runs_as_the_python_task_named_like_its_queue(node_env: tuple[str, BrokerEnv]) -> None:
    release, env = node_env
    story = f"story-{uuid.uuid4().hex[:6]}"
    job_id = run_node(release, env, "send", "analyze-story", json.dumps({"storyId": story}))["id"]
    job = env.wait_state(job_id, "completed", timeout=20)
    assert job["output"] == {"analyzed": story}  # the Python task's return value, in Node's shape
    assert [r["value"] for r in env.effects("analyze-story") if r["value"] == story] == [story]


def test_node_job_runs_as_the_python_task_routed_to_its_queue(node_env: tuple[str, BrokerEnv]) -> None:
    release, env = node_env
    story = f"routed-{uuid.uuid4().hex[:6]}"
    job_id = run_node(release, env, "send", "story-routed", json.dumps({"story_id": story}))["id"]
    job = env.wait_state(job_id, "completed", timeout=20)
    assert job["output"] == {"value": story}


def test_python_task_is_worked_by_a_node_handler(node_env: tuple[str, BrokerEnv]) -> None:
    release, env = node_env
    story = f"py-{uuid.uuid4().hex[:6]}"
    app = producer(env)
    try:
        result = app.send_task("node.handles.this", kwargs={"story_id": story}, queue="node-stories")
        jobs = run_node(release, env, "work", "node-stories", "1", "20000")["jobs"]
        assert [j["id"] for j in jobs] == [result.id]
        data = jobs[0]["data"]
        assert data["story_id"] == story  # the plain payload: the task's kwargs
        assert data["__celery"]["task"] == "node.handles.this"
        job = env.wait_state(result.id, "completed")
        assert job["output"] == {"handledBy": "node"}
        assert result.get(timeout=10) == {"handledBy": "node"}  # AsyncResult reads Node's settle
    finally:
        app.close()
