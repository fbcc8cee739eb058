"""The pg-boss result backend against real job rows, driven the way a worker drives it.

Each test fetches real jobs through the manager and settles them through the backend with the
request a worker would pass (queue in ``delivery_info``, attempt in ``pgboss_attempt``). Real
worker processes are exercised in tests/acceptance/transport/test_backend.py.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from celery import Celery, states
from celery.app.task import Context
from celery.exceptions import ImproperlyConfigured, TaskRevokedError
from celery.worker.request import Request
from kombu import Message

from transport import envelope
from transport.backend import PgBossBackend, request_attempt, request_queue
from transport.envelope import job_id_for
from transport.manager import FetchedJob, JobManager

pytestmark = pytest.mark.own_database("results")

QUEUE = "results-q"


@pytest.fixture
def app(db_url: str, boss: JobManager) -> Iterator[Celery]:
    app = Celery("test-backend", set_as_current=False)
    app.conf.update(
        broker_url="memory://",
        # The dotted form needs no installed entry point.
        result_backend="transport.backend:PgBossBackend://" + db_url.split("://", 1)[1],
        result_backend_transport_options={"schema": boss.schema},
        result_extended=True,
        # These tests read an active job as STARTED (tests/acceptance/transport/test_celery_options.py
        # covers the untracked default: PENDING).
        task_track_started=True,
    )
    boss.create_queue(QUEUE, retry_limit=1, retry_delay=0, retry_backoff=False)
    yield app
    app.backend.close()


@pytest.fixture
def backend(app: Celery) -> PgBossBackend:
    backend = app.backend
    assert isinstance(backend, PgBossBackend)
    return backend


def run(boss: JobManager, data: Any = None, queue: str = QUEUE) -> FetchedJob:
    """Send one job and fetch it, as a worker would before running the task."""
    job_id = boss.send(queue, data if data is not None else {})
    [job] = boss.fetch([queue])
    assert job.id == job_id
    return job


def request(job: FetchedJob, children: tuple[Any, ...] = (), **extra: Any) -> Context:
    fields = {"id": job.id, "task": "t.task", "chord": None, "group": None, **extra}
    context = Context(delivery_info={"routing_key": job.name}, pgboss_attempt=job.retry_count, **fields)
    context.children.extend(children)  # a property: Context(children=...) would not set it
    return context


def fail(backend: PgBossBackend, job: FetchedJob, message: str) -> None:
    try:
        raise ValueError(message)
    except ValueError as exc:
        backend.mark_as_failure(job.id, exc, "Traceback: ValueError: " + message, request=request(job))


def test_celery_exposes_the_attempt_header_on_both_requests(app: Celery) -> None:
    # The worker's main process settles from Request._context (WorkerLostError, time limits); the
    # pool child from the Context trace builds out of the request dict. Both see our header.
    @app.task(name="t.add", shared=False)
    def add(x: int, y: int) -> int:
        return x + y

    job_id = str(uuid.uuid4())
    data = {"y": 2, "__celery": {"v": 1, "task": "t.add", "args": [1]}}
    payload = envelope.to_message(job_id, QUEUE, data, priority=0, attempt=3, delivery_tag="t1")
    message = Message(
        body=payload["body"],
        headers=payload["headers"],
        content_type=payload["content-type"],
        content_encoding=payload["content-encoding"],
        delivery_info=payload["properties"]["delivery_info"],
        properties=payload["properties"],
    )
    worker_request = Request(message, app=app, task=add)
    child_request = Context(worker_request.request_dict, args=[1], kwargs={"y": 2})
    for req in (worker_request._context, child_request):
        assert (request_attempt(req), request_queue(req)) == (3, QUEUE)


def test_success_completes_the_job_in_node_shape(
    app: Celery, backend: PgBossBackend, boss: JobManager
) -> None:
    job = run(boss, {"x": 1})
    backend.mark_as_done(job.id, 5, request=request(job))
    row = boss.get_job(job.id)
    assert row is not None and row["state"] == "completed"
    assert row["output"] == {"value": 5}
    assert app.AsyncResult(job.id).get(timeout=5) == 5

    job = run(boss)
    backend.mark_as_done(job.id, {"answer": [1, 2]}, request=request(job))
    assert boss.get_job(job.id)["output"] == {"answer": [1, 2]}  # an object is stored as is
    assert app.AsyncResult(job.id).get(timeout=5) == {"answer": [1, 2]}


def test_job_states_map_to_celery_states(app: Celery, backend: PgBossBackend, boss: JobManager) -> None:
    queued = boss.send(QUEUE, {})
    assert app.AsyncResult(queued).state == states.PENDING
    job = boss.fetch([QUEUE])[0]
    assert app.AsyncResult(job.id).state == states.STARTED
    fail(backend, job, "first")
    retried = app.AsyncResult(job.id)
    assert retried.state == states.RETRY
    assert isinstance(retried.result, ValueError) and str(retried.result) == "first"
    job = boss.fetch([QUEUE])[0]
    fail(backend, job, "second")
    assert app.AsyncResult(job.id).state == states.FAILURE
    cancelled = boss.send(QUEUE, {})
    boss.cancel(QUEUE, [cancelled])
    assert app.AsyncResult(cancelled).state == states.REVOKED
    with pytest.raises(TaskRevokedError):
        app.AsyncResult(cancelled).get(timeout=5)
    assert app.AsyncResult(str(uuid.uuid4())).state == states.PENDING


def test_failure_reraises_with_the_tasks_message_once_pg_boss_gives_up(
    app: Celery, backend: PgBossBackend, boss: JobManager
) -> None:
    job = run(boss)
    fail(backend, job, "disk on fire")
    row = boss.get_job(job.id)
    assert row["state"] == "retry"  # retry_limit 1: pg-boss runs it once more
    assert row["output"]["name"] == "ValueError" and row["output"]["message"] == "disk on fire"
    job = boss.fetch([QUEUE])[0]
    fail(backend, job, "disk still on fire")
    result = app.AsyncResult(job.id)
    with pytest.raises(ValueError, match="disk still on fire"):
        result.get(timeout=5)
    assert "ValueError: disk still on fire" in result.traceback
    assert boss.get_job(job.id)["output"]["stack"] == result.traceback


def test_failure_written_by_node_is_rebuilt_from_name_and_message(app: Celery, boss: JobManager) -> None:
    job = run(boss)
    node_error = {"name": "TypeError", "message": "x is not a function", "stack": "TypeError: x ...\n at y"}
    boss.fail(QUEUE, [job.id], node_error, retry=False)
    result = app.AsyncResult(job.id)
    with pytest.raises(Exception, match="x is not a function") as raised:
        result.get(timeout=5)
    assert type(raised.value).__name__ == "TypeError"
    assert result.traceback == node_error["stack"]

    expired = run(boss)
    boss.fail(QUEUE, [expired.id], {"value": {"message": "job timed out"}}, retry=False)
    with pytest.raises(Exception, match="job timed out"):
        app.AsyncResult(expired.id).get(timeout=5)


def test_get_is_woken_by_notify_not_by_polling(app: Celery, backend: PgBossBackend, boss: JobManager) -> None:
    job = run(boss)
    result = app.AsyncResult(job.id)
    timer = threading.Timer(0.3, backend.mark_as_done, (job.id, "late"), {"request": request(job)})
    started = time.monotonic()
    timer.start()
    assert result.get(timeout=5, interval=5) == "late"
    # The drain waits up to its interval on the LISTEN socket; a NOTIFY ends the wait at once.
    assert time.monotonic() - started < 1.5
    timer.join()


def test_result_stored_before_the_wait_began_is_found(
    app: Celery, backend: PgBossBackend, boss: JobManager
) -> None:
    job = run(boss)
    backend.mark_as_done(job.id, [1, "two"], request=request(job))
    started = time.monotonic()
    assert app.AsyncResult(job.id).get(timeout=5) == [1, "two"]
    assert time.monotonic() - started < 0.5


def test_many_waiters_in_threads(app: Celery, backend: PgBossBackend, boss: JobManager) -> None:
    jobs = [run(boss, {"i": i}) for i in range(8)]
    got: dict[str, Any] = {}

    def wait(job: FetchedJob) -> None:
        got[job.id] = app.AsyncResult(job.id).get(timeout=10)

    threads = [threading.Thread(target=wait, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for i, job in enumerate(jobs):
        backend.mark_as_done(job.id, i, request=request(job))
    for thread in threads:
        thread.join(15)
    assert got == {job.id: i for i, job in enumerate(jobs)}


def test_a_task_id_that_is_not_a_uuid_maps_to_its_job(
    app: Celery, backend: PgBossBackend, boss: JobManager
) -> None:
    task_id = "report-" + uuid.uuid4().hex
    job_id = boss.send(QUEUE, {}, id=job_id_for(task_id))
    job = boss.fetch([QUEUE])[0]
    assert job.id == job_id
    req = request(job, id=task_id)
    threading.Timer(0.3, backend.mark_as_done, (task_id, "named"), {"request": req}).start()
    started = time.monotonic()
    assert app.AsyncResult(task_id).get(timeout=5, interval=5) == "named"
    assert time.monotonic() - started < 1.5
    assert boss.get_job(job_id)["output"] == {"value": "named"}


def test_a_result_written_without_notify_is_still_found(app: Celery, boss: JobManager) -> None:
    # Node's worker completes jobs with its own SQL: no zeke NOTIFY, so the waiter's slow re-read finds it.
    job = run(boss)

    def node_completes() -> None:
        with boss.db.cursor() as cur:
            cur.execute(
                f"UPDATE \"{boss.schema}\".job SET state = 'completed', completed_on = now(), "
                """output = '{"value": "quiet"}' WHERE name = %s AND id = %s""",
                (QUEUE, job.id),
            )

    threading.Timer(0.3, node_completes).start()
    started = time.monotonic()
    assert app.AsyncResult(job.id).get(timeout=10) == "quiet"
    assert time.monotonic() - started < 4


def test_ignore_result_still_settles_the_job(backend: PgBossBackend, boss: JobManager) -> None:
    job = run(boss)
    backend.mark_as_done(job.id, "unseen", request=request(job, ignore_result=True), store_result=False)
    row = boss.get_job(job.id)
    assert row["state"] == "completed" and row["output"] is None


def test_failure_with_ignore_result_still_fails_the_job(backend: PgBossBackend, boss: JobManager) -> None:
    job = run(boss)
    try:
        raise RuntimeError("quiet")
    except RuntimeError as exc:
        backend.mark_as_failure(job.id, exc, request=request(job, ignore_result=True), store_result=False)
    assert boss.get_job(job.id)["state"] == "retry"


def test_a_stale_attempt_cannot_settle_the_job(app: Celery, backend: PgBossBackend, boss: JobManager) -> None:
    first = run(boss)
    boss.fail(QUEUE, [first.id], {"message": "expired"})  # e.g. pg-boss's supervisor
    second = boss.fetch([QUEUE])[0]
    assert second.retry_count == first.retry_count + 1
    backend.mark_as_done(first.id, "late", request=request(first))
    assert boss.get_job(first.id)["state"] == "active"
    backend.mark_as_done(second.id, "fresh", request=request(second))
    assert app.AsyncResult(second.id).get(timeout=5) == "fresh"


def test_parent_process_failure_without_headers_finds_the_job(
    app: Celery, backend: PgBossBackend, boss: JobManager
) -> None:
    # WorkerLostError is stored by the worker's main process from a request without our header.
    job = run(boss)
    try:
        raise RuntimeError("worker lost")
    except RuntimeError as exc:
        backend.mark_as_failure(job.id, exc, request=Context(id=job.id, chord=None, group=None))
    assert boss.get_job(job.id)["state"] == "retry"


def test_revoked_cancels_the_job(app: Celery, backend: PgBossBackend, boss: JobManager) -> None:
    job = run(boss)
    backend.mark_as_revoked(job.id, "terminated", request=request(job))
    assert boss.get_job(job.id)["state"] == "cancelled"
    assert app.AsyncResult(job.id).state == states.REVOKED


def test_custom_state_shows_while_the_job_runs(app: Celery, backend: PgBossBackend, boss: JobManager) -> None:
    job = run(boss)
    backend.store_result(job.id, {"done": 1, "total": 2}, "PROGRESS", request=request(job))
    progress = app.AsyncResult(job.id)
    assert progress.state == "PROGRESS" and progress.info == {"done": 1, "total": 2}
    backend.mark_as_done(job.id, "ok", request=request(job))
    assert app.AsyncResult(job.id).get(timeout=5) == "ok"


def test_extended_fields_come_from_the_celery_envelope(
    app: Celery, backend: PgBossBackend, boss: JobManager
) -> None:
    job = run(
        boss, {"story": "s1", "__celery": {"v": 1, "task": "tasks.analyze", "args": [7], "headers": {}}}
    )
    backend.mark_as_done(job.id, 1, request=request(job))
    result = app.AsyncResult(job.id)
    result.get(timeout=5)
    assert (result.name, result.args, result.kwargs, result.queue) == (
        "tasks.analyze",
        [7],
        {"story": "s1"},
        QUEUE,
    )


def test_children_are_kept(app: Celery, backend: PgBossBackend, boss: JobManager) -> None:
    job = run(boss)
    child = app.AsyncResult(str(uuid.uuid4()))
    backend.mark_as_done(job.id, 1, request=request(job, children=[child]))
    result = app.AsyncResult(job.id)
    assert result.get(timeout=5) == 1
    assert [c.id for c in result.children] == [child.id]


def test_results_of_tasks_that_are_not_jobs(app: Celery, backend: PgBossBackend) -> None:
    task_id = "not-a-job-" + uuid.uuid4().hex
    result = app.AsyncResult(task_id)
    timer = threading.Timer(0.3, backend.mark_as_done, (task_id, {"v": 1}))
    timer.start()
    assert result.get(timeout=5, interval=5) == {"v": 1}
    timer.join()
    try:
        raise KeyError("missing")
    except KeyError as exc:
        backend.mark_as_failure("failing-" + task_id, exc)
    with pytest.raises(KeyError):
        app.AsyncResult("failing-" + task_id).get(timeout=5)


def test_group_results_join_natively(app: Celery, backend: PgBossBackend, boss: JobManager) -> None:
    jobs = [run(boss, {"i": i}) for i in range(5)]
    group = app.GroupResult(str(uuid.uuid4()), [app.AsyncResult(j.id) for j in jobs])
    group.save()
    restored = app.GroupResult.restore(group.id, app=app)
    assert [r.id for r in restored.results] == [j.id for j in jobs]
    threading.Timer(
        0.2, lambda: [backend.mark_as_done(j.id, i * i, request=request(j)) for i, j in enumerate(jobs)]
    ).start()
    assert restored.join_native(timeout=10) == [0, 1, 4, 9, 16]
    restored.delete()
    assert app.GroupResult.restore(group.id, app=app) is None


def test_chord_of_20_calls_back_exactly_once_even_with_duplicates(
    app: Celery, backend: PgBossBackend, boss: JobManager
) -> None:
    jobs = [run(boss, {"i": i}) for i in range(20)]
    group_id = str(uuid.uuid4())
    body = app.signature("t.tsum")
    backend.apply_chord((group_id, [app.AsyncResult(j.id) for j in jobs]), body)
    callbacks: list[Any] = []
    app.amqp._retry_publish = lambda fn, *args, **kwargs: callbacks.append(args)  # type: ignore[method-assign]

    def part(job: FetchedJob) -> None:
        req = request(job, chord=dict(body), group=group_id)
        backend.mark_as_done(job.id, job.data["i"], request=req)
        backend.mark_as_done(job.id, job.data["i"], request=req)  # a redelivered duplicate

    # Parts settle concurrently, as in a worker pool (fewer threads than pooled connections).
    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(part, jobs))
    assert len(callbacks) == 1
    assert sorted(callbacks[0][0]) == list(range(20))


def test_forget_deletes_a_finished_job_and_its_extras(
    app: Celery, backend: PgBossBackend, boss: JobManager
) -> None:
    job = run(boss)
    backend.mark_as_done(job.id, 1, request=request(job, children=[app.AsyncResult(str(uuid.uuid4()))]))
    result = app.AsyncResult(job.id)
    assert result.get(timeout=5) == 1
    result.forget()
    assert boss.get_job(job.id) is None
    assert app.AsyncResult(job.id).state == states.PENDING
    running = run(boss)
    app.AsyncResult(running.id).forget()  # an unfinished job is never deleted by forget()
    assert boss.get_job(running.id)["state"] == "active"


def test_values_expire_and_are_swept(app: Celery, backend: PgBossBackend) -> None:
    backend.set("some-key", "v")
    assert backend.get("some-key") == "v"
    backend.expire("some-key", -1)
    assert backend.get("some-key") is None
    backend.cleanup()
    assert backend.incr("counter") == 1 and backend.incr("counter") == 2


def test_only_json_results(db_url: str, boss: JobManager) -> None:
    app = Celery("pickled", set_as_current=False)
    app.conf.update(
        result_backend="transport.backend:PgBossBackend://" + db_url.split("://", 1)[1],
        result_serializer="pickle",
        result_backend_transport_options={"schema": boss.schema},
    )
    with pytest.raises(ImproperlyConfigured):
        _ = app.backend
