"""schema_task: declaration, registry, send-time validation, and the terminal failure it relies on."""

from __future__ import annotations

from transport.manager import JobManager


def test_fail_without_retry_ends_failed_at_once(boss: JobManager) -> None:
    boss.create_queue("q", retry_limit=3, retry_delay=0)
    job_id = boss.send("q", {"x": 1})
    assert job_id
    [fetched] = boss.fetch(["q"])
    moved = boss.fail("q", [job_id], {"message": "bad"}, attempts={job_id: fetched.retry_count}, retry=False)
    assert [m["state"] for m in moved] == ["failed"]
    job = boss.get_job(job_id)
    assert job["state"] == "failed" and job["retry_count"] == 0 and job["retry_limit"] == 3
    assert job["completed_on"] is not None and job["output"] == {"message": "bad"}
    # The normal path still retries.
    other = boss.send("q", {"x": 2})
    boss.fetch(["q"])
    assert [m["state"] for m in boss.fail("q", [other], {"message": "again"})] == ["retry"]
