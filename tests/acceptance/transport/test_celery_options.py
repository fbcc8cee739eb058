"""Tasks behave as Celery documents them on ``pgboss://``, in real prefork workers.

A plain Celery app (tests/acceptance/semantics_app.py) runs in two workers: ``sem1`` with the
transport's default ``retry_policy`` (celery) on queues ``celery`` (which it creates) and
``sem-retry`` (made beforehand, 2 retries), ``sem2`` with ``retry_policy="pgboss"`` on
``sem-pgboss`` (which it creates). The test process sends like the app's own code (tasks
registered) or like another codebase (a bare client app sending by name).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from celery import Celery, states

from tests.acceptance.broker_workers import wait_for
from transport.db import Database
from transport.manager import JobManager

pytestmark = pytest.mark.own_database("semantics")

ROOT = Path(__file__).resolve().parents[3]
CELERY = str(Path(sys.executable).with_name("celery"))
#: Queues made before the workers start (they would create them with the transport's defaults).
QUEUES: dict[str, dict[str, Any]] = {
    "sem-retry": {"retry_limit": 2, "retry_delay": 0, "retry_backoff": False},
}


@dataclass
class Env:
    url: str
    schema: str
    database: Database
    tmp: Path
    processes: list[tuple[subprocess.Popen, Path]] = field(default_factory=list)

    @property
    def manager(self) -> JobManager:
        return JobManager(self.database, self.schema)

    def environ(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CELERY_", "ZEKE_"))}
        env.update(
            ZEKE_SEMANTICS_URL=self.url,
            ZEKE_SEMANTICS_SCHEMA=self.schema,
            PYTHONPATH=str(ROOT),
            PYTHONUNBUFFERED="1",
            **extra,
        )
        return env

    def worker(self, name: str, queues: list[str], **extra: str) -> Path:
        log = self.tmp / f"{name}.log"
        argv = [
            CELERY, "-A", "tests.acceptance.semantics_app", "worker", "-P", "prefork", "-c", "2",
            "-n", f"{name}@zeke-test", "-Q", ",".join(queues), "-l", "info", "--without-gossip",
            "--without-mingle", "--without-heartbeat",
        ]  # fmt: skip
        with open(log, "wb") as out:
            process = subprocess.Popen(
                argv, cwd=ROOT, env=self.environ(**extra), stdout=out, stderr=subprocess.STDOUT
            )
        self.processes.append((process, log))
        return log

    def job(self, job_id: str) -> dict[str, Any]:
        job = self.manager.get_job(job_id)
        assert job is not None, f"no job {job_id}"
        return job

    def settled(self, job_id: str, *wanted: str, timeout: float = 30) -> dict[str, Any]:
        return wait_for(
            lambda: (j := self.manager.get_job(job_id)) and j["state"] in wanted and j,
            timeout,
            what=f"job {job_id} in {wanted}",
        )

    def effects(self, key: str) -> list[dict[str, Any]]:
        with self.database.cursor() as cur:
            cur.execute(
                f'SELECT value, retries FROM "{self.schema}_effects".effect WHERE key = %s ORDER BY at',
                (key,),
            )
            return list(cur.fetchall())


@pytest.fixture(scope="module")
def env(db_url: str, database: Database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    schema = "sem_" + uuid.uuid4().hex[:10]
    env = Env("pgboss://" + db_url.split("://", 1)[1], schema, database, tmp_path_factory.mktemp("sem"))
    with database.cursor() as cur:
        cur.execute(f'CREATE SCHEMA "{schema}_effects"')
        cur.execute(
            f'CREATE TABLE "{schema}_effects".effect '
            "(key text, value text, retries int, at timestamptz DEFAULT clock_timestamp())"
        )
    for queue, options in QUEUES.items():
        env.manager.create_queue(queue, **options)
    logs = [
        env.worker("sem1", ["celery", "sem-retry"]),
        env.worker("sem2", ["sem-pgboss"], ZEKE_SEMANTICS_POLICY="pgboss"),
    ]
    try:
        for (process, _), log in zip(env.processes, logs, strict=True):

            def ready(process: subprocess.Popen = process, log: Path = log) -> bool:
                return " ready." in log.read_text(errors="replace") or process.poll() is not None

            wait_for(ready, 60, what="the worker to be ready")
            assert process.poll() is None, log.read_text(errors="replace")
        yield env
    finally:
        for process, _ in env.processes:
            process.terminate()
        for process, _ in env.processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        with database.cursor() as cur:
            for suffix in ("", "_zeke", "_effects"):
                cur.execute(f'DROP SCHEMA IF EXISTS "{schema}{suffix}" CASCADE')


@pytest.fixture(scope="module")
def sem(env: Env) -> ModuleType:
    """The app module in the test process: the app's own code sending (its tasks registered)."""
    os.environ.update(ZEKE_SEMANTICS_URL=env.url, ZEKE_SEMANTICS_SCHEMA=env.schema)
    import tests.acceptance.semantics_app as module

    assert module.SCHEMA == env.schema
    return module


@pytest.fixture(scope="module")
def client(env: Env) -> Iterator[Celery]:
    """Another codebase: knows no task, sends by name."""
    app = Celery("sem-client", set_as_current=False)
    app.conf.update(
        broker_url=env.url,
        result_backend=env.url,
        broker_transport_options={"schema": env.schema},
        result_backend_transport_options={"schema": env.schema},
    )
    yield app
    app.close()


def key() -> str:
    return uuid.uuid4().hex[:10]


# -- point 1: one retry budget ---------------------------------------------------------------------


def test_a_plain_raise_fails_once_and_get_raises_the_tasks_exception(env: Env, sem: ModuleType) -> None:
    k = key()
    result = sem.boom.delay(k)
    with pytest.raises(ValueError, match=k):
        result.get(timeout=30)
    assert result.state == states.FAILURE
    assert "ValueError" in result.traceback and "semantics_app.py" in result.traceback
    job = env.job(result.id)
    # The queue the transport made under the default retry_policy: Celery's "a raise fails once".
    assert (job["state"], job["retry_count"], job["retry_limit"]) == ("failed", 0, 0)
    assert env.manager.get_queue("celery")["retry_limit"] == 0
    assert [e["retries"] for e in env.effects(k)] == [0]


def test_autoretry_for_with_max_retries_2_runs_three_times(env: Env, sem: ModuleType) -> None:
    k = key()
    result = sem.auto.delay(k)
    with pytest.raises(KeyError):
        result.get(timeout=30)
    job = env.job(result.id)
    assert (job["state"], job["retry_count"], job["retry_limit"]) == ("failed", 2, 2)
    # request.retries is the job's retry_count on every run.
    assert [e["retries"] for e in env.effects(k)] == [0, 1, 2]


def test_self_retry_with_max_retries_2_runs_three_times(env: Env, sem: ModuleType) -> None:
    k = key()
    result = sem.retry_twice.delay(k)
    with pytest.raises(ValueError, match=k):
        result.get(timeout=30)
    job = env.job(result.id)
    assert (job["state"], job["retry_count"]) == ("failed", 2)
    assert [e["retries"] for e in env.effects(k)] == [0, 1, 2]


def test_a_task_setting_nothing_follows_its_queues_retries(env: Env, sem: ModuleType) -> None:
    k = key()
    result = sem.boom.apply_async((k,), queue="sem-retry")  # retry_limit 2
    with pytest.raises(ValueError, match=k):
        result.get(timeout=30)
    assert env.job(result.id)["retry_count"] == 2
    assert [e["retries"] for e in env.effects(k)] == [0, 1, 2]


def test_the_retry_policy_pgboss_makes_queues_that_retry(env: Env, client: Celery) -> None:
    # sem2 (retry_policy pgboss) made its queue with pg-boss's retries: 3, 1 s apart with backoff.
    assert env.manager.get_queue("sem-pgboss")["retry_limit"] == 3
    k = key()
    result = client.send_task("sem.boom", (k,), queue="sem-pgboss")
    job = env.settled(result.id, "retry")
    assert job["output"]["message"] == k and client.AsyncResult(result.id).state == states.RETRY
    env.manager.cancel("sem-pgboss", [result.id])


def test_errors_no_retry_can_mend_fail_at_once(env: Env, sem: ModuleType, client: Celery) -> None:
    # These tasks follow their queue (2 retries on sem-retry), and still fail on their first run.
    wrong = client.send_task("sem.add", (1,), queue="sem-retry")  # one argument short
    with pytest.raises(TypeError):
        wrong.get(timeout=30)
    assert (env.job(wrong.id)["state"], env.job(wrong.id)["retry_count"]) == ("failed", 0)

    k = key()
    unstorable = sem.nul.apply_async((k,), queue="sem-retry")
    job = env.settled(unstorable.id, "failed")
    assert (job["retry_count"], job["output"]["name"]) == (0, "EncodeError")
    assert len(env.effects(k)) == 1

    k = key()
    rejected = sem.reject.apply_async((k, False), queue="sem-retry")
    job = env.settled(rejected.id, "failed")
    assert job["retry_count"] == 0 and len(env.effects(k)) == 1
    assert rejected.state == states.FAILURE


# -- point 4: what a Celery user expects -----------------------------------------------------------


def test_a_requeue_is_not_a_failed_attempt(env: Env, sem: ModuleType) -> None:
    k = key()
    result = sem.reject.apply_async((k, True), queue="sem-retry")
    assert result.get(timeout=30) == 0  # the second run still has retries == 0
    job = env.job(result.id)
    assert (job["state"], job["retry_count"]) == ("completed", 0)
    assert len(env.effects(k)) == 2


def test_ignored_results_read_pending(env: Env, sem: ModuleType, client: Celery) -> None:
    own = sem.ignored.delay("quiet")  # apply_async: Celery's own ignore_result
    by_name = sem.app.send_task("sem.ignored", ("quiet",))  # send_task: the task's ignore_result
    stranger = client.send_task("sem.ignored", ("quiet",))  # the sender knows nothing: the worker
    for result in (own, by_name, stranger):
        job = env.settled(result.id, "completed")
        assert job["output"] is None
        assert job["data"]["__celery"]["headers"]["ignore_result"] is True
        assert client.AsyncResult(result.id).state == states.PENDING


def test_started_only_when_tracked(env: Env, sem: ModuleType, client: Celery) -> None:
    untracked = sem.sleep.delay(key(), 3)
    tracked = sem.tracked_sleep.delay(3)
    env.settled(untracked.id, "active")
    env.settled(tracked.id, "active")
    assert client.AsyncResult(untracked.id).state == states.PENDING
    assert client.AsyncResult(tracked.id).state == states.STARTED
    assert tracked.get(timeout=30) == 3


def test_a_retry_reads_retry_with_its_exception(env: Env, sem: ModuleType, client: Celery) -> None:
    k = key()
    result = sem.retry_then_ok.delay(k, 4)
    env.settled(result.id, "retry")
    # One read: AsyncResult.state and .result each read again, and the retry may start in between.
    meta = client.backend.get_task_meta(result.id)
    assert meta["status"] == states.RETRY
    assert isinstance(meta["result"], ValueError) and str(meta["result"]) == f"why {k}"
    assert result.get(timeout=30) == 1


def test_request_eta_is_set_for_a_countdown_task(sem: ModuleType) -> None:
    assert sem.eta.apply_async(countdown=1).get(timeout=30) is not None
    assert sem.eta.delay().get(timeout=30) is None


def test_inspect_scheduled_lists_eta_jobs_the_database_holds(env: Env, sem: ModuleType) -> None:
    result = sem.add.apply_async((1, 2), countdown=600)
    try:
        replies = wait_for(
            lambda: sem.app.control.inspect(destination=["sem1@zeke-test"], timeout=3).scheduled() or None,
            30,
            interval=0.5,
            what="an inspect reply",
        )
        entries = replies["sem1@zeke-test"]
        [entry] = [e for e in entries if e["request"]["id"] == result.id]
        assert entry["request"]["name"] == "sem.add" and entry["request"]["args"] == [1, 2]
        assert entry["eta"] is not None
    finally:
        env.manager.cancel("celery", [result.id])


# -- point 3: expiry stops the attempt ---------------------------------------------------------------


def test_an_expired_attempt_is_stopped_before_it_is_retried(env: Env, sem: ModuleType) -> None:
    k = key()
    # Each attempt would sleep 8 s; the job expires after 2 s and may be retried once at once.
    options = {"expire_in_seconds": 2, "retry_limit": 1, "retry_delay": 0}
    result = sem.exclusive.apply_async((k, 8), queue="sem-retry", pgboss=options)
    job = env.settled(result.id, "failed", timeout=60)
    assert job["retry_count"] == 1
    assert job["output"]["name"] in ("SoftTimeLimitExceeded", "TimeLimitExceeded")
    seen = [e["value"] for e in env.effects(k)]
    # Two attempts, each holding the job's lock: none ever found the other still running.
    assert seen.count("start") == 2 and "overlap" not in seen and "end" not in seen, seen


# -- purge covers the app's queues -------------------------------------------------------------------


def test_celery_purge_empties_every_schema_task_queue(env: Env, db_url: str) -> None:
    schema = "semp_" + uuid.uuid4().hex[:8]
    manager = JobManager(env.database, schema)
    try:
        for queue in ("t-echo", "t-item", "celery"):
            manager.create_queue(queue)
            manager.send(queue, {"n": 1})
            manager.send(queue, {"n": 2}, start_after=600)  # an ETA job waits in the database too
        [running] = manager.fetch(["t-echo"])  # a started job is not the broker's to purge
        environ = {k: v for k, v in os.environ.items() if not k.startswith(("CELERY_", "ZEKE_"))}
        environ.update(
            DATABASE_PRIMARY_URL=db_url,
            ZEKE_PGBOSS_SCHEMA=schema,
            ZEKE_TASK_MODULES="tests.app.sample_tasks",
            PYTHONPATH=str(ROOT),
        )
        done = subprocess.run(
            [CELERY, "-A", "zeke", "purge", "-f"],
            cwd=ROOT,
            env=environ,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        # t-echo, t-item, t-sleep, t-fan, t-boom and celery: the sample tasks' queues, never imported
        # by the purge command itself.
        assert "from 6 known task queues" in done.stdout and "Purged 5 messages" in done.stdout, done.stdout
        counts = {(c["name"], c["state"]): c["n"] for c in manager.counts()}
        assert counts == {("t-echo", "active"): 1}
        assert manager.get_job(running.id)["state"] == "active"
    finally:
        with env.database.cursor() as cur:
            for suffix in ("", "_zeke"):
                cur.execute(f'DROP SCHEMA IF EXISTS "{schema}{suffix}" CASCADE')
