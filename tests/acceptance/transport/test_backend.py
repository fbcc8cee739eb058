"""The pg-boss result backend with a real ``celery -A zeke worker`` on the pg-boss broker.

One prefork worker serves the module (tasks in tests/acceptance/test_results_tasks.py); the test
process is an ordinary Celery client sending by name and waiting with ``AsyncResult.get()``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery, chord, group, states

from transport.backend import PgBossBackend
from transport.db import Database
from transport.manager import JobManager

pytestmark = pytest.mark.own_database("results_e2e")

ROOT = Path(__file__).resolve().parents[3]
TASKS = "tests.acceptance.test_results_tasks"
#: Failures are final at once here; ``zt-retry`` gives pg-boss one retry after 1 s.
QUEUES: dict[str, dict[str, Any]] = {
    "zt-results": {"retry_limit": 0},
    "zt-retry": {"retry_limit": 1, "retry_delay": 1, "retry_backoff": False},
    "celery": {"retry_limit": 0},
}


@pytest.fixture(scope="module")
def manager(db_url: str) -> Iterator[JobManager]:
    database = Database(db_url, application_name="zeke-tests")
    manager = JobManager(database, "pgboss")
    for queue, options in QUEUES.items():  # before the worker, which would create them with defaults
        manager.create_queue(queue, **options)
    yield manager
    database.close()


def backend_url(db_url: str) -> str:
    # The dotted form loads without the installed ``celery.result_backends`` entry point.
    return "transport.backend:PgBossBackend://" + db_url.split("://", 1)[1]


@pytest.fixture(scope="module")
def worker(db_url: str, manager: JobManager, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    log = tmp_path_factory.mktemp("results") / "worker.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CELERY_", "ZEKE_"))}
    env.update(
        DATABASE_PRIMARY_URL=db_url,
        ZEKE_PGBOSS_SCHEMA=manager.schema,
        ZEKE_TASK_MODULES=TASKS,
        CELERY_RESULT_BACKEND=backend_url(db_url),
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
    )
    cmd = [sys.executable, "-m", "celery", "-A", "zeke", "worker", "-l", "info", "-P", "prefork", "-c", "4"]
    cmd += [
        "-Q",
        ",".join(QUEUES),
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "-n",
        "results@%h",
    ]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: " ready." in log.read_text(errors="replace") or proc.poll() is not None, 60)
        assert proc.poll() is None, log.read_text(errors="replace")
        yield log
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def app(db_url: str, manager: JobManager, worker: Path) -> Iterator[Celery]:
    app = Celery("results-client", set_as_current=False)
    app.conf.update(
        broker_url="pgboss://" + db_url.split("://", 1)[1],
        result_backend=backend_url(db_url),
        broker_transport_options={"schema": manager.schema},
        task_default_queue="zt-results",
        result_extended=True,
    )
    import transport  # noqa: F401  (the pgboss:// transport alias)

    yield app
    app.backend.close()
    app.close()


def wait_for(predicate: Callable[[], Any], timeout: float, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


def send(app: Celery, name: str, *args: Any, queue: str = "zt-results", **kwargs: Any) -> Any:
    return app.send_task(name, args, kwargs, queue=queue)


def states_seen(result: Any, until: Callable[[str], bool], timeout: float) -> list[str]:
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = app_state(result)
        if not seen or seen[-1] != state:
            seen.append(state)
        if until(state):
            return seen
        time.sleep(0.02)
    raise AssertionError(f"states so far: {seen}")


def app_state(result: Any) -> str:
    return result.backend.get_task_meta(result.id, cache=False)["status"]


def test_pgboss_url_resolves_to_this_backend() -> None:
    # Needs the ``celery.result_backends`` entry point (pip install -e .) or a transport alias.
    from celery.app.backends import by_url

    cls, _ = by_url("pgboss://user@localhost/db")
    assert cls is PgBossBackend


def test_delay_get_returns_the_value(app: Celery, manager: JobManager) -> None:
    result = send(app, "zt.add", 2, 3)
    assert result.get(timeout=30) == 5
    job = manager.get_job(result.id)
    assert job["state"] == "completed" and job["output"] == {"value": 5}
    assert (result.name, result.args, result.queue) == ("zt.add", [2, 3], "zt-results")


def test_an_error_reraises_with_the_tasks_message(app: Celery, manager: JobManager) -> None:
    result = send(app, "zt.boom", "the disk is on fire")
    with pytest.raises(ValueError, match="the disk is on fire"):
        result.get(timeout=30)
    assert result.state == states.FAILURE
    assert "ValueError: the disk is on fire" in result.traceback
    job = manager.get_job(result.id)
    assert job["state"] == "failed"
    assert (job["output"]["name"], job["output"]["message"]) == ("ValueError", "the disk is on fire")


def test_states_during_a_pg_boss_retry(app: Celery, manager: JobManager) -> None:
    result = send(app, "zt.boom", "flaky disk", queue="zt-retry")
    seen = states_seen(result, lambda s: s == states.FAILURE, 30)
    assert states.RETRY in seen and seen[-1] == states.FAILURE
    assert manager.get_job(result.id)["retry_count"] == 1
    with pytest.raises(ValueError, match="flaky disk"):
        result.get(timeout=5)


def test_states_during_celery_retries(app: Celery, manager: JobManager) -> None:
    result = send(app, "zt.flaky", 2, 1.0)
    seen = states_seen(result, lambda s: s == states.SUCCESS, 30)
    assert states.RETRY in seen
    assert result.get(timeout=5) == 2
    assert manager.get_job(result.id)["state"] == "completed"  # the same job row all along


def test_a_chord_of_20_completes_with_exactly_one_callback(app: Celery, manager: JobManager) -> None:
    header = [app.signature("zt.add", (i, i), queue="zt-results") for i in range(20)]
    body = app.signature("zt.tsum", queue="zt-results")
    result = chord(header)(body)
    assert result.get(timeout=60) == sum(2 * i for i in range(20))
    time.sleep(1)  # a second callback would be sent right after the first
    bodies = [
        j
        for j in manager.list_jobs(name="zt-results", limit=10_000)
        if j["data"].get("__celery", {}).get("task") == "zt.tsum"
    ]
    assert len(bodies) == 1


def test_group_results(app: Celery) -> None:
    result = group(app.signature("zt.add", (i, 1), queue="zt-results") for i in range(10)).apply_async()
    assert result.get(timeout=30) == [i + 1 for i in range(10)]
    result.save()
    restored = app.GroupResult.restore(result.id)
    assert restored.join_native(timeout=10) == [i + 1 for i in range(10)]
    assert restored.completed_count() == 10


def test_many_gets_at_once(app: Celery) -> None:
    results = [send(app, "zt.add", i, i) for i in range(40)]
    assert [r.get(timeout=60) for r in results] == [2 * i for i in range(40)]


def test_the_pool_childrens_results_are_written_by_the_main_process_in_batches(
    app: Celery, manager: JobManager
) -> None:
    """With the result relay (on by default), a drain's results share completion statements."""
    result = group(app.signature("zt.add", (i, 1), queue="zt-results") for i in range(200)).apply_async()
    assert result.get(timeout=60) == [i + 1 for i in range(200)]
    rows = manager.get_jobs([r.id for r in result.results])
    assert {row["state"] for row in rows} == {"completed"}
    assert len({row["completed_on"] for row in rows}) < 200


def test_ignore_result_still_settles_the_job(app: Celery, manager: JobManager) -> None:
    result = send(app, "zt.echo", "quiet")
    job = wait_for(lambda: (j := manager.get_job(result.id)) and j["state"] == "completed" and j, 30)
    assert job["output"] is None
    # As Celery: an ignored result is never stored, so it reads PENDING (the worker's task says so).
    assert app.AsyncResult(result.id).state == states.PENDING


def test_custom_progress_state_then_success(app: Celery) -> None:
    result = send(app, "zt.progress", 2.0)
    wait_for(lambda: app_state(result) == "PROGRESS", 30)
    assert result.info == {"done": 1, "total": 2}
    assert result.get(timeout=30) == "finished"


def test_forget(app: Celery, manager: JobManager) -> None:
    result = send(app, "zt.add", 20, 22)
    assert result.get(timeout=30) == 42
    result.forget()
    assert manager.get_job(result.id) is None
    assert app.AsyncResult(result.id).state == states.PENDING


def test_a_replaced_task_gives_its_id_and_result_to_the_replacement_on_the_same_queue(
    app: Celery, manager: JobManager
) -> None:
    result = send(app, "zt.replaced", 2, 3, "zt-results")
    assert result.get(timeout=30) == 5
    # One row: the replacement's publish moved it back to retry, and its run completed it.
    rows = manager.get_jobs([result.id])
    assert [(r["name"], r["state"], r["retry_count"]) for r in rows] == [("zt-results", "completed", 1)]


def test_a_task_replaced_on_another_queue_ends_and_its_id_reads_as_the_replacement(
    app: Celery, manager: JobManager
) -> None:
    result = send(app, "zt.replaced", 2, 3, "celery")
    assert result.get(timeout=30) == 5
    # Two rows share the id; the replaced one must not stay active (heartbeated, then run again).
    rows = wait_for(
        lambda: (
            (rows := manager.get_jobs([result.id])) and all(r["state"] == "completed" for r in rows) and rows
        ),
        30,
    )
    assert sorted(r["name"] for r in rows) == ["celery", "zt-results"]
    assert manager.get_job(result.id)["name"] == "celery"  # the newer row answers for the id
    fresh = app.AsyncResult(result.id)
    assert (fresh.state, fresh.result) == ("SUCCESS", 5)


def test_a_task_raising_ignore_still_ends_its_job(app: Celery, manager: JobManager) -> None:
    result = send(app, "zt.ignored")
    job = wait_for(
        lambda: (j := manager.get_job(result.id)) and j["state"] not in ("created", "active") and j, 30
    )
    assert (job["state"], job["output"]) == ("completed", None)
