"""zeke.jobs: the jobs service the API and the CLI share, on a real database, and free of FastAPI."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.app.conftest import ROOT
from transport.manager import JobManager
from zeke.jobs import JobNotFound, JobRefused, Jobs


@pytest.fixture
def jobs(celery_app: Any, manager: JobManager) -> Iterator[Jobs]:
    from zeke import client
    from zeke.registry import registry

    client.set_manager(manager)
    try:
        yield Jobs(registry)
    finally:
        client.set_manager(None)


def test_importing_the_service_imports_no_web_framework() -> None:
    code = "import zeke.jobs, sys; assert 'fastapi' not in sys.modules and 'starlette' not in sys.modules"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_send_validates_and_creates_the_queue(jobs: Jobs, manager: JobManager) -> None:
    from zeke.registry import UnknownTask
    from zeke.schema_task import PayloadInvalid

    sent = jobs.send("t-item", {"itemId": "7"})
    assert sent["status"] == "created" and sent["taskId"] == "t-item"
    assert manager.get_queue("t-item")["expire_seconds"] == 120  # created with the task's options
    assert jobs.status(sent["id"])["data"] == {"itemId": "7", "reason": "manual"}  # defaults applied
    with pytest.raises(UnknownTask):
        jobs.send("no-such-task", {})
    with pytest.raises(PayloadInvalid):
        jobs.send("t-item", {"itemId": ""})


def test_an_unknown_job_is_job_not_found(jobs: Jobs) -> None:
    missing = str(uuid.uuid4())
    assert jobs.get(missing) is None
    for action in (jobs.status, jobs.cancel, jobs.retry):
        with pytest.raises(JobNotFound) as caught:
            action(missing)
        assert caught.value.job_id == missing


def test_cancel_is_refused_once_the_job_finished(jobs: Jobs, manager: JobManager) -> None:
    job_id = jobs.send("t-echo", {"message": "x"})["id"]
    cancelled = jobs.cancel(job_id)
    assert cancelled["status"] == "cancelled" and "changed" not in cancelled
    assert jobs.cancel(job_id)["status"] == "cancelled"  # again: already where it was asked to be

    done_id = jobs.send("t-echo", {"message": "y"})["id"]
    [job] = manager.fetch(["t-echo"])
    assert job.id == done_id
    manager.complete("t-echo", [(done_id, {"ok": True}, None)])
    with pytest.raises(JobRefused) as caught:
        jobs.cancel(done_id)
    assert (caught.value.status, caught.value.reason) == ("completed", "cannot cancel")


def test_only_a_failed_job_retries(jobs: Jobs, manager: JobManager) -> None:
    job_id = jobs.send("t-echo", {"message": "x"})["id"]
    with pytest.raises(JobRefused) as caught:
        jobs.retry(job_id)
    assert caught.value.status == "created" and caught.value.job["id"] == job_id
    [job] = manager.fetch(["t-echo"])
    manager.fail("t-echo", [job.id], {"message": "bad"}, retry=False)
    retried = jobs.retry(job_id)
    assert retried["status"] == "retry" and "changed" not in retried
