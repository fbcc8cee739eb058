"""What `zeke run`'s summary tells a user to paste, and the token it stores (the running app is in
tests/e2e/test_run.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.app.conftest import ROOT
from zeke.cli import Summary

LOGS = {name: Path("/data/logs") / f"{name}.log" for name in ("worker", "beat", "api")}
JOB = "3b8e7788-42fd-4f3c-9552-177654519ea0"
STORY_COMMAND = """{zeke} send analyze-story '{"storyId": "a49f8ed4-1188-4d2d-96a2-2a223d5976c6"}'"""


def _commands(lines: list[str]) -> list[str]:
    return [line.strip() for line in lines if line.startswith("  ") and line[2] not in "#("]


def test_summary_on_the_embedded_database_exports_its_url_first() -> None:
    summary = Summary("http://localhost:8000", "tok", "here", LOGS, ".venv/bin/zeke", embedded_db=True)
    summary.jobs = [JOB]
    lines = summary.lines([("analyse a story again", STORY_COMMAND)])
    commands = _commands(lines)
    assert commands[0] == "export DATABASE_PRIMARY_URL=$(.venv/bin/zeke db url)"
    assert f".venv/bin/zeke status {JOB}" in commands
    assert f"curl -H 'Authorization: Bearer tok' http://localhost:8000/api/jobs/{JOB}" in commands
    # JSON braces in a hook's command survive; only {zeke} is replaced
    assert (
        """.venv/bin/zeke send analyze-story '{"storyId": "a49f8ed4-1188-4d2d-96a2-2a223d5976c6"}'"""
        in commands
    )
    assert "  (`source .venv/bin/activate` puts zeke on your PATH)" in lines
    assert "logs       /data/logs/: worker.log, beat.log, api.log" in lines


def test_summary_on_a_configured_database_needs_no_export_and_zeke_on_path_is_plain() -> None:
    summary = Summary("http://localhost:8000", "tok", "here", LOGS, "zeke", embedded_db=False)
    lines = summary.lines([])
    assert not any("export" in line for line in lines)
    assert _commands(lines) == ["zeke jobs --counts; zeke jobs --failed"]
    assert not any("activate" in line for line in lines)


def test_token_show_and_rotate(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZEKE_")}
    env.update(ZEKE_DATA_DIR=str(tmp_path), PYTHONPATH=str(ROOT))

    def zeke(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "zeke.cli", "token", *args], env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    first = zeke("show")
    assert len(first) >= 32 and zeke("show") == first
    stored = tmp_path / "api-token"
    assert stored.stat().st_mode & 0o777 == 0o600 and stored.read_text().strip() == first
    rotated = zeke("rotate")
    assert rotated != first and zeke("show") == rotated
    assert stored.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["api-token"]  # no temporary file left behind
