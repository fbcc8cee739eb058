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
