"""`zeke run --demo` as a new user runs it (here on a fresh test database instead of the embedded one,
so the demo has to be asked for): a line per step, init, the sample feeds, worker + beat + API with
their output in log files, the first pull at once, a story table with briefs, and a summary whose
commands work on real ids; the token stays the same across runs until `zeke token rotate`."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from tasks.db import session_factory
from tasks.db.models import Source, Story, StoryAnalysis
from tests.app.zeke.test_cli_processes import Output, _free_port
from tests.e2e.conftest import ROOT, zeke_env

SUMMARY = re.compile(r"^zeke: (\d+) stories, (\d+) analysed, (\d+) briefed")
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def _start(env: dict[str, str], *args: str) -> tuple[subprocess.Popen[str], Output]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "zeke.cli", "run", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    return proc, Output(proc)


def _wait(proc: subprocess.Popen[str], out: Output, pattern: re.Pattern[str] | str, timeout: float) -> int:
    """The index of the first line matching ``pattern``, waiting up to ``timeout`` seconds for it."""
    deadline = time.monotonic() + timeout
    while True:
        found = [i for i, line in enumerate(out.lines) if re.match(pattern, line)]
        if found:
            return found[0]
        assert proc.poll() is None, f"zeke run exited with {proc.returncode}"
        assert time.monotonic() < deadline, f"no line matching {pattern!r} within {timeout}s"
        time.sleep(0.2)


def _stop(proc: subprocess.Popen[str]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(timeout=40)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise


def _token(out: Output) -> str:
    return next(line.split()[2] for line in out.lines if line.startswith("zeke: token"))


def _zeke(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "zeke.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_run_demo_explains_itself_and_stops_cleanly(fresh_url: str, tmp_path: Path) -> None:
    port = _free_port()
    env = zeke_env(fresh_url, ZEKE_SAMPLES_PORT="0", ZEKE_DATA_DIR=str(tmp_path))  # demo only when asked
    logs = tmp_path / "logs"
    started = time.monotonic()
    proc, out = _start(env, "--demo", "--port", str(port))
    try:
        at = _wait(proc, out, SUMMARY, timeout=75)
        elapsed = time.monotonic() - started
        _wait(proc, out, r"^zeke: Ctrl-C stops everything", timeout=10)
        text = out.text()
        # A line per step, in order.
        steps = [
            "zeke: using DATABASE_PRIMARY_URL postgresql://",
            "zeke: installing the pg-boss schema, queues, schedules and app tables (zeke init)",
            "zeke: pg-boss schema 'pgboss' (version 46), 13 queues, 2 schedules",
            "zeke: demo: sample feeds at http://127.0.0.1:",
            f"zeke: starting worker, beat and API; their logs: {logs}/{{worker,beat,api}}.log",
            f"zeke: API up at http://localhost:{port}, dashboard at http://localhost:{port}/dashboard",
            "zeke: token ",
            "zeke: pulling the sources now",
        ]
        positions = [next(i for i, line in enumerate(out.lines) if line.startswith(s)) for s in steps]
        assert positions == sorted(positions), text
        assert "offline provider" in text

        # The children's output is in their log files, not on the console.
        worker_log = (logs / "worker.log").read_text()
        assert " ready." in worker_log and "Task ingest-pull[" in worker_log
        assert "beat: Starting" in (logs / "beat.log").read_text()
        assert "Uvicorn running" in (logs / "api.log").read_text()
        for noise in (" ready.", "Task ", "ForkPoolWorker", "Uvicorn", "beat: Starting", '"level"'):
            assert noise not in text, noise

        # The story table.
        stories, analysed, briefed = map(int, SUMMARY.match(out.lines[at]).groups())
        assert stories >= 10 and analysed == briefed == stories, out.lines[at]
        header = at + 1
        assert out.lines[header].split() == ["TITLE", "KIND", "CHILI", "PROVIDER", "ONE_LINER", "HIGHLIGHTS"]
        assert "offline" in out.lines[header + 1]

        # The summary: URLs, the token, the logs, and commands on real ids that work as printed.
        token = _token(out)
        assert f"zeke: API        http://localhost:{port}" in text
        assert f"zeke: dashboard  http://localhost:{port}/dashboard" in text
        assert re.search(rf"^zeke: token      {re.escape(token)}   \({tmp_path}/api-token; ", text, re.M)
        assert f"zeke: logs       {logs}/: worker.log, beat.log, api.log" in text
        tries = [line.strip() for line in out.lines if line.startswith("  ") and line[2] not in "#("]
        assert len(tries) >= 5, text
        job_ids = [m for line in tries if " status " in line for m in re.findall(UUID, line)]
        story_ids = [m for line in tries if "storyId" in line for m in re.findall(UUID, line)]
        assert len(job_ids) >= 2 and len(story_ids) == 1, tries
        auth = {"Authorization": f"Bearer {token}"}
        for job_id in job_ids:  # the ids are real jobs
            job = httpx.get(f"http://localhost:{port}/api/jobs/{job_id}", headers=auth)
            assert job.status_code == 200 and job.json()["status"] == "completed", job.text
        with session_factory(fresh_url)() as session:
            assert session.get(Story, uuid.UUID(story_ids[0])) is not None
        for command in tries:  # as a user pastes them (PATH without the venv: the printed path works)
            done = subprocess.run(command, shell=True, cwd=ROOT, env=env, capture_output=True, text=True)
            assert done.returncode == 0, (command, done.stdout, done.stderr)
            if command.startswith("curl"):
                assert '"status":"completed"' in done.stdout.replace(" ", ""), done.stdout

        tasks = httpx.get(f"http://localhost:{port}/api/tasks", headers=auth)
        assert {t["id"] for t in tasks.json()} >= {"ingest-pull", "analyze-story", "generate-brief"}
        sessions = session_factory(fresh_url)
        with sessions() as session:
            assert session.scalar(select(func.count()).select_from(Source).where(Source.active)) == 4
            briefs = session.scalars(select(StoryAnalysis.one_liner)).all()
            assert len(briefs) >= stories and all(briefs)
    except BaseException:
        print(out.text())
        raise
    finally:
        code = _stop(proc)
    assert code == 0, out.text()
    assert (
        out.lines[-2:] == ["zeke: stopping worker, beat and API ...", "zeke: stopped"]
        or "stopping" in out.text()
    )
    ps = subprocess.run(["ps", "-o", "pid=", "-s", str(proc.pid)], capture_output=True, text=True)
    assert ps.stdout.strip() == "", ps.stdout  # worker, beat and API are gone too
    with session_factory(fresh_url)() as session:  # and the demo left no active source behind
        assert session.scalar(select(func.count()).select_from(Source).where(Source.active)) == 0
    for log in logs.iterdir():  # the token is never written into a log
        assert token not in log.read_text(errors="replace"), log
    print(f"zeke run: story table after {elapsed:.1f}s")

    # The token is stored (owner-only) and is the same on the next run, until it is rotated.
    assert (tmp_path / "api-token").stat().st_mode & 0o777 == 0o600
    assert _zeke(env, "token", "show") == token
    for expected in ("same", "rotated"):
        if expected == "rotated":
            rotated = _zeke(env, "token", "rotate")
            assert rotated != token and _zeke(env, "token", "show") == rotated
        port = _free_port()
        proc, out = _start(env, "--no-demo", "--port", str(port))
        try:
            _wait(proc, out, r"^zeke: token ", timeout=60)
            again = _token(out)
            assert again == (token if expected == "same" else rotated), expected
            ok = httpx.get(f"http://localhost:{port}/api/tasks", headers={"Authorization": f"Bearer {again}"})
            assert ok.status_code == 200
        except BaseException:
            print(out.text())
            raise
        finally:
            assert _stop(proc) == 0, out.text()


@pytest.mark.parametrize(
    "step",
    [
        r"^zeke: installing the pg-boss schema",  # while `zeke init` runs
        r"^zeke: starting worker, beat and API",  # while the API comes up
        r"^zeke: token ",  # while the first pull is sent (the jobs service loads) and after
    ],
)
def test_run_stops_cleanly_when_interrupted_during_start_up(
    fresh_url: str, tmp_path: Path, step: str
) -> None:
    """Ctrl-C at any step of the start-up is a clean stop: exit 0, no traceback, no child left."""
    env = zeke_env(fresh_url, ZEKE_SAMPLES_PORT="0", ZEKE_DATA_DIR=str(tmp_path))
    proc, out = _start(env, "--no-demo", "--port", str(_free_port()))
    try:
        _wait(proc, out, step, timeout=60)
    finally:
        code = _stop(proc)
    text = out.text()
    assert code == 0 and "Traceback" not in text, text
    ps = subprocess.run(["ps", "-o", "pid=", "-s", str(proc.pid)], capture_output=True, text=True)
    assert ps.stdout.strip() == "", ps.stdout
