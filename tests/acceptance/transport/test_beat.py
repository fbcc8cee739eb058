"""Two ``celery -A zeke beat`` processes and a Node pg-boss 12.38 instance share one schedule table.

Time is pg-boss's own TestClock (tests/node/cron_clock.mjs): it overrides ``pgboss.job_now()``
for sessions that set ``pgboss.test_clock = on``, and the Python beats set it through PGOPTIONS, so
all three instances read one clock that moves 20 s per step. Every occurrence is seen by three
passes, claimed alternately by Node and by a Python beat, and each must produce exactly one
``__pgboss__send-it`` job and one job in its queue. A schedule saved at runtime must fire without
a restart. About 45 s of real time cover nine minutes of schedule time.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from transport import names
from transport.beat import PgBossScheduleEntry
from transport.db import Database, dsn_from_url
from transport.manager import JobManager

pytestmark = [pytest.mark.node, pytest.mark.own_database("beat_mixed")]

ROOT = Path(__file__).resolve().parents[3]
STEPS = 24
STEP_SECONDS = 20
RUNTIME_SAVE_STEP = 8

#: A celeryconfig that is zeke's plus the beat settings of this test (CELERY_CONFIG_MODULE names it).
CONFIG = """\
exec(compile(open({root!r}).read(), {root!r}, "exec"))
pgboss_cron_monitor_interval = 0.2
pgboss_cron_worker_interval = 0.2
pgboss_schedules = [{{"name": "mixed-py", "cron": "* * * * *", "data": {{"from": "python"}}}}]
"""


class Lines:
    """Collects a process's output lines in a thread."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def json(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines if line.startswith("{")]

    def text(self) -> str:
        return "\n".join(self.lines)


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def minute_of(ms: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(ms // 60_000 * 60, dt.UTC).replace(tzinfo=None)


def test_two_beats_and_node_send_each_occurrence_once(db_url: str, node_dir: Path, tmp_path: Path) -> None:
    database = Database(db_url, application_name="zeke-tests")
    manager = JobManager(database, "pgboss")  # installs the schema Node then finds
    manager.create_queue("mixed-py")
    go = tmp_path / "go"
    node = subprocess.Popen(
        ["node", str(node_dir / "cron_clock.mjs"), dsn_from_url(db_url), "pgboss", "mixed-node"]
        + ["--steps", str(STEPS), "--step", str(STEP_SECONDS * 1000), "--go", str(go)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    node_out = Lines(node)
    (tmp_path / "celeryconfig.py").write_text(CONFIG.format(root=str(ROOT / "celeryconfig.py")))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CELERY_", "ZEKE_"))}
    env.update(
        DATABASE_PRIMARY_URL=db_url,
        ZEKE_PGBOSS_SCHEMA="pgboss",
        ZEKE_TASK_MODULES="tests.acceptance.test_results_tasks",
        PYTHONPATH=f"{tmp_path}{os.pathsep}{ROOT}",
        CELERY_CONFIG_MODULE="celeryconfig",  # the test's (zeke reads its own file otherwise)
        PYTHONUNBUFFERED="1",
        PGOPTIONS="-c pgboss.test_clock=on",  # every beat session reads the TestClock's job_now()
    )
    beats: list[subprocess.Popen[str]] = []
    beat_out: list[Lines] = []
    try:
        ready = wait_for(lambda: [m for m in node_out.json() if "ready" in m], 60, "Node: " + node_out.text())
        start_ms = ready[0]["ready"]
        for n in range(2):
            cmd = [sys.executable, "-m", "celery", "-A", "zeke", "beat", "-l", "info"]
            cmd += ["-s", str(tmp_path / f"beat{n}-schedule")]
            proc = subprocess.Popen(
                cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
            beats.append(proc)
            beat_out.append(Lines(proc))
        for out in beat_out:
            wait_for(
                lambda out=out: "beat: Starting" in out.text() or out.proc.poll() is not None,
                60,
                "beat start",
            )
            assert out.proc.poll() is None, out.text()
        wait_for(
            lambda: manager.get_queue("mixed-py") and _schedules(manager) >= 2, 30, "schedules installed"
        )
        go.touch()

        # Halfway through, a schedule saved at runtime (RedBeat-style entry) must fire without a restart.
        wait_for(lambda: any(m.get("step") == RUNTIME_SAVE_STEP for m in node_out.json()), 120, "Node steps")
        client = Celery("mixed-client", set_as_current=False)
        client.conf.update(pgboss_beat_url=db_url, broker_transport_options={"schema": "pgboss"})
        PgBossScheduleEntry("mixed-runtime", "*/2 * * * *", {"from": "runtime"}, app=client).save()

        assert node.wait(120) == 0, node_out.text()
        assert node_out.json()[-1] == {"done": True, "errors": 0}
        # Whatever send-it jobs are left are forwarded by the Python beats within a poll or two.
        wait_for(lambda: _pending_send_it(manager) == 0, 15, "send-it jobs forwarded")
    finally:
        stop(node)
        for proc in beats:
            stop(proc)

    end_ms = start_ms + STEPS * STEP_SECONDS * 1000
    expected = [
        minute_of(start_ms) + dt.timedelta(minutes=m) for m in range(int((end_ms - start_ms) // 60_000) + 1)
    ]
    send_it = manager.list_jobs(name=names.SEND_IT_QUEUE, limit=10_000)
    assert {j["state"] for j in send_it} == {"completed"}
    slots: dict[str, list[dt.datetime]] = {}
    for job in send_it:
        slots.setdefault(job["singleton_key"], []).append(job["singleton_on"])
    for key in ("mixed-node__", "mixed-py__"):
        assert sorted(slots[key]) == expected, key  # every minute, once
    for queue, source in (("mixed-node", "node"), ("mixed-py", "python")):
        jobs = manager.list_jobs(name=queue, limit=10_000)
        assert len(jobs) == len(expected), queue  # each occurrence forwarded exactly once
        assert {json.dumps(j["data"]) for j in jobs} == {json.dumps({"from": source})}
    runtime = sorted(slots.get("mixed-runtime__", []))
    assert runtime and all(s.minute % 2 == 0 for s in runtime)
    assert len(manager.list_jobs(name="mixed-runtime", limit=100)) == len(runtime)

    # Both beats ran passes, and some of their inserts found the occurrence already filed by another
    # instance (the throttle slot at work), so the sides really overlapped.
    passes = [re.findall(r"offered (\d+) occurrence\(s\), (\d+) new", out.text()) for out in beat_out]
    assert all(passes), [out.text()[-2000:] for out in beat_out]
    offered = sum(int(o) for found in passes for o, _ in found)
    new = sum(int(n) for found in passes for _, n in found)
    print(f"python passes {[len(f) for f in passes]}, offered {offered}, new {new}, slots {len(expected)}")
    assert offered > new
    assert Counter(len(found) > 0 for found in passes)[True] == 2
    database.close()


def _schedules(manager: JobManager) -> int:
    from transport.cron import Timekeeper

    return len(Timekeeper(manager).schedules())


def _pending_send_it(manager: JobManager) -> int:
    return sum(
        row["n"]
        for row in manager.counts(names.SEND_IT_QUEUE)
        if row["state"] in ("created", "retry", "active")
    )
