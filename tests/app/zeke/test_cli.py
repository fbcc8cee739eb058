"""The `zeke` command, run as a subprocess against this test's database and schema."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from typing import Any

from tests.app.conftest import ROOT
from transport.manager import JobManager


def zeke(env: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "zeke.cli", *args],
        cwd=ROOT,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def zeke_json(env: dict[str, str], *args: str) -> Any:
    done = zeke(env, *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_init_creates_schema_and_every_task_queue(env: dict[str, str], manager: JobManager) -> None:
    report = zeke_json(env, "init")
    assert report["schema"] == manager.schema and report["version"] == 46
    assert {"t-echo", "t-sleep", "t-item"} <= set(report["queues"])
    echo = manager.get_queue("t-echo")
    assert (echo["retry_limit"], echo["retry_delay"], echo["retry_backoff"]) == (3, 0, False)
    item = manager.get_queue("t-item")
    assert item["expire_seconds"] == 120 and item["retry_limit"] == 3  # seed defaults otherwise
    again = zeke(env, "init")  # idempotent
    assert again.returncode == 0 and "t-echo" in again.stdout


SUITE = "tests.app.sample_tasks,tests.app.fake_suite"


def test_init_installs_schedules_and_runs_the_packages_hooks(
    env: dict[str, str], manager: JobManager, tmp_path
) -> None:
    log = tmp_path / "hooks.jsonl"
    env = {**env, "ZEKE_TASK_MODULES": SUITE, "ZEKE_FAKE_SUITE_LOG": str(log)}
    report = zeke_json(env, "init")
    assert report["migrations"] == {"tests.app.fake_suite": "0001"}
    assert report["schedules"] == ["t-echo */5 * * * *", "t-item/nightly 0 3 * * *", "registered-by-hook"]
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert calls == [
        {"hook": "upgrade", "url": env["DATABASE_PRIMARY_URL"]},
        {"hook": "schedules", "schema": manager.schema},
    ]
    rows = {(r["name"], r["key"]): r for r in zeke_json(env, "schedules")}
    assert rows["t-echo", ""]["cron"] == "*/5 * * * *" and rows["t-echo", ""]["data"] == {"message": "tick"}
    assert rows["t-item", "nightly"]["timezone"] == "Europe/Paris"
    table = zeke(env, "schedules").stdout
    assert "*/5 * * * *" in table and "nightly" in table and "Europe/Paris" in table


def test_send_refuses_invalid_payloads(env: dict[str, str]) -> None:
    bad = zeke(env, "send", "t-echo", '{"count": 0}')
    assert bad.returncode == 1
    assert "message: Field required" in bad.stderr and "count:" in bad.stderr
    as_json = zeke(env, "send", "t-echo", '{"count": 0}', "--json")
    assert as_json.returncode == 1
    assert {tuple(e["loc"]) for e in json.loads(as_json.stdout)["errors"]} == {("message",), ("count",)}
    assert zeke(env, "send", "t-nope", "{}").returncode == 1
    assert zeke(env, "send", "t-echo", "{not json").returncode == 2


def test_status_cancel_retry_and_the_monitoring_views(env: dict[str, str], manager: JobManager) -> None:
    zeke_json(env, "init")
    first = manager.send("t-echo", {"message": "a"})
    second = manager.send("t-echo", {"message": "b"})
    assert first and second

    status = zeke_json(env, "status", first)
    assert status["id"] == first and status["status"] == "created" and status["data"] == {"message": "a"}
    human = zeke(env, "status", first)
    assert human.returncode == 0 and "created" in human.stdout and "t-echo" in human.stdout
    assert zeke(env, "status", str(uuid.uuid4())).returncode == 1
    assert zeke(env, "status", "nope").returncode == 2

    assert zeke_json(env, "cancel", first)["status"] == "cancelled"
    assert zeke(env, "retry", first).returncode == 1  # only failed jobs
    [job] = manager.fetch(["t-echo"])
    manager.fail("t-echo", [job.id], {"message": "bad"}, retry=False)
    assert zeke_json(env, "retry", second)["status"] == "retry"
    manager.fail("t-echo", [second], {"message": "bad again"}, retry=False)

    recent = zeke_json(env, "jobs")
    assert [j["id"] for j in recent] == [second, first]
    failed = zeke_json(env, "jobs", "--failed")
    assert [j["id"] for j in failed] == [second] and failed[0]["output"] == {"message": "bad again"}
    counts = {c["state"]: c["count"] for c in zeke_json(env, "jobs", "--counts")}
    assert counts == {"cancelled": 1, "failed": 1}
    table = zeke(env, "jobs", "--failed").stdout
    assert second in table and "failed" in table and "bad again" in table
    assert zeke_json(env, "jobs", "--task", "t-sleep") == []


def test_tasks_and_help(env: dict[str, str]) -> None:
    tasks = {t["id"]: t for t in zeke_json(env, "tasks")}
    assert tasks["t-sleep"]["concurrency_limit"] == 3
    helped = zeke(env, "--help")
    for command in ("init", "send", "status", "jobs", "cancel", "retry", "schedules", "worker", "api", "run"):
        assert command in helped.stdout


def test_an_unreachable_database_is_one_line_and_exit_3(env: dict[str, str]) -> None:
    env = {**env, "DATABASE_PRIMARY_URL": "postgresql://zeke:S3cretPW@127.0.0.1:1/zeke"}
    for args in (("status", str(uuid.uuid4())), ("send", "t-echo", '{"message": "hi"}'), ("jobs",)):
        done = zeke(env, *args)
        assert done.returncode == 3, (args, done.stderr)
        assert done.stderr.startswith("zeke: cannot use the database: ") and "port 1" in done.stderr
        assert "Traceback" not in done.stderr and "S3cretPW" not in done.stderr + done.stdout


def test_failed_jobs_show_the_error_message(env: dict[str, str], manager: JobManager) -> None:
    """A Celery failure's output is {name, message, stack}: the table shows "Name: message"."""
    from transport.outputs import error_output

    manager.create_queue("t-echo")
    job_id = manager.send("t-echo", {"message": "x"})
    [job] = manager.fetch(["t-echo"])
    try:
        raise ValueError("the feed answered 404 for https://example.test/rss")
    except ValueError as exc:
        output = error_output(exc)
    manager.fail("t-echo", [job.id], output, retry=False)
    table = zeke(env, "jobs", "--failed").stdout
    [line] = [line for line in table.splitlines() if line.startswith(job_id)]
    assert "ValueError: the feed answered 404 for https://example.test/rss" in line
    assert "Traceback" not in line
    [row] = zeke_json(env, "jobs", "--failed")
    assert row["error"] == "ValueError: the feed answered 404 for https://example.test/rss"
    assert row["output"]["stack"].startswith("Traceback")


def test_status_names_the_celery_task_not_its_queue(
    env: dict[str, str], manager: JobManager, celery_app
) -> None:
    """A job Celery sent to the shared "celery" queue runs the task named in its envelope."""
    from tests.app.sample_tasks import echo

    manager.create_queue("celery")
    result = celery_app.send_task(echo.name, kwargs={"message": "hi"}, queue="celery")
    status = zeke_json(env, "status", result.id)
    assert status["taskId"] == echo.name != "celery" and status["queue"] == "celery"
    assert status["data"] == {"message": "hi"}
    assert echo.name in zeke(env, "status", result.id).stdout
