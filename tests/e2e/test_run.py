"""`zeke run --demo` as a new user runs it (here on a fresh test database instead of the embedded one,
so the demo has to be asked for):
init, the sample feeds, worker + beat + API, the first pull at once, and a story table with briefs."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time

import httpx
from sqlalchemy import func, select

from tasks.db import session_factory
from tasks.db.models import Source, StoryAnalysis
from tests.app.test_processes import Output, _free_port
from tests.e2e.conftest import ROOT, zeke_env

SUMMARY = re.compile(r"^zeke: (\d+) stories, (\d+) analysed, (\d+) briefed")


def test_run_demo_shows_stories_with_briefs_then_stops_cleanly(fresh_url: str) -> None:
    port = _free_port()
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "zeke.cli", "run", "--demo", "--port", str(port)],
        cwd=ROOT,
        env=zeke_env(fresh_url, ZEKE_SAMPLES_PORT="0"),  # a real database: demo only when asked
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    out = Output(proc)
    try:
        deadline = time.monotonic() + 75
        while not any(SUMMARY.match(line) for line in out.lines) and proc.poll() is None:
            assert time.monotonic() < deadline, "no story table within 75s"
            time.sleep(0.2)
        assert proc.poll() is None
        elapsed = time.monotonic() - started
        text = out.text()
        assert re.search(r"zeke: demo: sample feeds at http://127\.0\.0\.1:\d+/ \(4 demo sources\)", text)
        assert "offline provider" in text
        token = next(line.split()[-1] for line in out.lines if line.startswith("zeke: token"))
        at = next(i for i, line in enumerate(out.lines) if SUMMARY.match(line))
        stories, analysed, briefed = map(int, SUMMARY.match(out.lines[at]).groups())
        assert stories >= 10 and analysed == briefed == stories, out.lines[at]
        header = at + 1
        assert out.lines[header].split() == ["TITLE", "KIND", "CHILI", "PROVIDER", "ONE_LINER", "HIGHLIGHTS"]
        assert "offline" in out.lines[header + 1]

        tasks = httpx.get(f"http://localhost:{port}/api/tasks", headers={"Authorization": f"Bearer {token}"})
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
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert code == 0, out.text()
    ps = subprocess.run(["ps", "-o", "pid=", "-s", str(proc.pid)], capture_output=True, text=True)
    assert ps.stdout.strip() == "", ps.stdout  # worker, beat and API are gone too
    with session_factory(fresh_url)() as session:  # and the demo left no active source behind
        assert session.scalar(select(func.count()).select_from(Source).where(Source.active)) == 0
    print(f"zeke run: story table after {elapsed:.1f}s")
