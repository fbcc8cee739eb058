"""Schema tasks in real `celery -A zeke worker` processes on the pgboss:// transport."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx

from tests.app import sample_tasks
from tests.app.conftest import ApiServer, Worker, wait_for, wait_for_state
from tests.app.zeke.api.test_sse import SseReader
from transport.manager import JobManager
from zeke.schema_task import tasks


def _queues(manager: JobManager, *tasks: Any) -> None:
    for task in tasks:
        manager.create_queue(task.name, **task.queue_options)


def test_sql_sent_jobs_are_validated_at_run_time(start_worker, manager: JobManager) -> None:
    _queues(manager, sample_tasks.echo, sample_tasks.item)
    # Jobs as Node's boss.send() or plain SQL insert them: the payload as data, no Celery envelope.
    good = manager.send("t-echo", {"message": "hi", "count": 2})
    bad = manager.send("t-echo", {"count": "many"})
    not_an_object = manager.send("t-echo", "just a string")
    aliased = manager.send("t-item", {"itemId": "42"})
    start_worker()

    done = wait_for_state(manager, good, {"completed"})
    assert done["output"] == {"echo": "hihi", "jobId": good}
    assert wait_for_state(manager, aliased, {"completed"})["output"] == {"itemId": "42", "reason": "manual"}

    failed = wait_for_state(manager, bad, {"failed"})
    assert failed["retry_limit"] == 3 and failed["retry_count"] == 0  # not retried: it cannot pass
    output = failed["output"]
    assert output["name"] == "PayloadInvalid" and output["task_id"] == "t-echo"
    assert {tuple(e["loc"]): e["type"] for e in output["errors"]} == {
        ("message",): "missing",
        ("count",): "int_parsing",
    }
    scalar = wait_for_state(manager, not_an_object, {"failed"})
    assert scalar["retry_count"] == 0 and scalar["output"]["errors"][0]["type"] == "model_type"


def test_celery_sends_store_the_return_value(celery_app: Any, start_worker, manager: JobManager) -> None:
    start_worker()
    job_id = sample_tasks.echo.trigger({"message": "ab", "count": 3})
    result = sample_tasks.echo.delay(message="x")
    by_id = tasks.trigger("t-item", {"itemId": "7"})  # registry-aware, from plain code
    assert wait_for_state(manager, job_id, {"completed"})["output"] == {"echo": "ababab", "jobId": job_id}
    assert wait_for_state(manager, by_id, {"completed"})["output"] == {"itemId": "7", "reason": "manual"}
    assert result.get(timeout=20) == {"echo": "x", "jobId": result.id}
    data = manager.get_job(job_id)["data"]
    assert data["message"] == "ab" and data["count"] == 3  # the payload a Node handler would read


def test_trigger_from_inside_a_task(celery_app: Any, start_worker, manager: JobManager) -> None:
    start_worker()
    parent = sample_tasks.fan.trigger({"messages": ["a", "b"]})
    children = wait_for_state(manager, parent, {"completed"})["output"]["children"]
    assert len(children) == 2
    outputs = [wait_for_state(manager, c, {"completed"})["output"]["echo"] for c in children]
    assert sorted(outputs) == ["a", "b"]


def test_a_failing_task_retries_then_fails(celery_app: Any, start_worker, manager: JobManager) -> None:
    start_worker()
    job_id = sample_tasks.boom.trigger({"message": "kaput"})
    job = wait_for_state(manager, job_id, {"failed"}, timeout=30)
    assert job["retry_count"] == 1 and job["output"]["message"] == "kaput"


def test_concurrency_limit_is_global_across_workers(
    celery_app: Any, start_worker, manager: JobManager, database: Any
) -> None:
    """Two workers that can each run 2 jobs (4 in all) never hold more than the limit of 3 active.

    Each worker holds at most 2 (-c 2, prefetch multiplier 1), so reaching 3 also shows that both
    ran jobs at the same time: the cap is shared, not per worker.
    """
    limit = sample_tasks.SLEEP_LIMIT
    _queues(manager, sample_tasks.sleep)
    workers: list[Worker] = [
        start_worker("--prefetch-multiplier", "1", concurrency=2),
        start_worker("--prefetch-multiplier", "1", concurrency=2),
    ]
    for worker in workers:
        wait_for(lambda w=worker: " ready." in w.output(), timeout=30)
    samples: list[int] = []
    stop = threading.Event()
    query = f"SELECT count(*) AS n FROM \"{manager.schema}\".job WHERE name = 't-sleep' AND state = 'active'"

    def sample() -> None:
        with database.cursor() as cur:
            while not stop.is_set():
                cur.execute(query)
                samples.append(cur.fetchone()["n"])
                cur.connection.commit()
                time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        jobs = [sample_tasks.sleep.trigger({"seconds": 0.5, "tag": str(i)}) for i in range(10)]
        for job_id in jobs:
            wait_for_state(manager, job_id, {"completed"}, timeout=90)
    finally:
        stop.set()
        sampler.join()
    assert len(samples) > 100
    assert max(samples) == limit, f"max active {max(samples)} (limit {limit})"
    assert all("t-sleep" in w.output() and "succeeded" in w.output() for w in workers)


def test_api_trigger_and_stream_with_a_real_worker(
    api_server: ApiServer, auth: dict, start_worker, manager: JobManager
) -> None:
    r = httpx.post(
        f"{api_server.url}/api/jobs", headers=auth, json={"taskId": "t-sleep", "payload": {"seconds": 0.5}}
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["status"] == "created" and body["taskId"] == "t-sleep"
    assert r.headers["location"] == f"/api/jobs/{body['id']}"
    reader = SseReader(f"{api_server.url}/api/jobs/stream/{body['id']}", auth).start()
    reader.wait_events(1)
    start_worker()
    assert reader.done.wait(30)
    statuses = [e.data["status"] for e in reader.named("status")]
    assert statuses == ["created", "active", "completed"]
    assert reader.named("status")[-1].data["output"]["tag"] == ""
    assert reader.named()[-1].event == "close"
    got = httpx.get(f"{api_server.url}/api/jobs/{body['id']}", headers=auth).json()
    assert got["status"] == "completed" and got["data"] == {"seconds": 0.5, "tag": ""}
    wait_for(lambda: api_server.api.state.hub.subscriber_count == 0, timeout=5)
