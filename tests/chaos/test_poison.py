"""Poison jobs: a task that kills the process running it on every attempt must end ``failed`` once its
retries are used up, not loop forever.

* ``chaos.poison_child`` SIGKILLs its prefork pool child: the worker's main process sees the child
  die (Celery's WorkerLostError), the result backend fails the attempt, pg-boss retries it.
* ``chaos.poison_worker`` SIGKILLs the whole worker (main process and children): nobody is left to
  report anything, so the job comes back through its heartbeat timeout (10 s) and a supervisor, and
  the test starts a new worker each time the old one is gone.
"""

from __future__ import annotations

import time

from tests.acceptance.broker_workers import BrokerEnv
from tests.chaos.chaos import INCLUDE, create_queue, runs_of, unique

RETRY_LIMIT = 2


def test_job_killing_its_pool_child_fails_after_the_retry_limit(broker_env: BrokerEnv, chaos) -> None:
    queue = create_queue(broker_env, unique("poison-child"), retry_limit=RETRY_LIMIT, retry_delay=1)
    worker = broker_env.worker("poison-child", [queue], args=INCLUDE).start()
    started = time.monotonic()
    result = chaos.poison_child.apply_async(queue=queue)
    job = broker_env.wait_state(result.id, "failed", "completed", timeout=60)
    took = time.monotonic() - started
    assert job["state"] == "failed", job
    assert job["retry_count"] == RETRY_LIMIT
    output = job["output"]
    assert output["name"] == "WorkerLostError", output
    assert "signal 9 (SIGKILL)" in output["message"], output
    assert runs_of(broker_env, [result.id])[result.id] == {a: 1 for a in range(RETRY_LIMIT + 1)}
    time.sleep(3)  # nothing runs it again
    assert runs_of(broker_env, [result.id])[result.id] == {a: 1 for a in range(RETRY_LIMIT + 1)}
    assert broker_env.job(result.id)["state"] == "failed"
    assert worker.process is not None and worker.process.poll() is None  # the worker survived
    print(f"\npoison (pool child): {RETRY_LIMIT + 1} attempts, failed after {took:.1f}s: {output['message']}")
    worker.stop()


def test_job_killing_its_whole_worker_fails_after_the_retry_limit(broker_env: BrokerEnv, chaos) -> None:
    queue = create_queue(broker_env, unique("poison-worker"), retry_limit=RETRY_LIMIT, retry_delay=1)
    result = chaos.poison_worker.apply_async(queue=queue)
    started = time.monotonic()
    deaths = 0
    worker = broker_env.worker("poison-w0", [queue], args=INCLUDE).start(wait=False)
    deadline = time.monotonic() + (RETRY_LIMIT + 1) * 30
    while (job := broker_env.job(result.id))["state"] not in ("failed", "completed"):
        assert time.monotonic() < deadline, (job, deaths)
        assert worker.process is not None
        if worker.process.poll() is not None:  # killed by the job: a new one takes its place
            worker.kill()  # reap what is left of its process group
            deaths += 1
            worker = broker_env.worker(f"poison-w{deaths}", [queue], args=INCLUDE).start(wait=False)
        time.sleep(0.2)
    took = time.monotonic() - started
    assert job["state"] == "failed", job
    assert job["retry_count"] == RETRY_LIMIT
    assert job["output"] == {"value": {"message": "job heartbeat timeout"}}
    assert runs_of(broker_env, [result.id])[result.id] == {a: 1 for a in range(RETRY_LIMIT + 1)}
    assert deaths == RETRY_LIMIT + 1  # the last death is seen long before the heartbeat runs out
    print(f"\npoison (whole worker): {RETRY_LIMIT + 1} attempts, {deaths} deaths, failed after {took:.1f}s")
    worker.kill()
