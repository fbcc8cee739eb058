"""Two ``celery -A zeke beat`` processes share one pg-boss schedule, and one of them is SIGKILLed again
and again while the other runs: no occurrence may be missed, none sent twice.

Time is pg-boss's TestClock, as in ``tests/acceptance/transport/test_beat.py``, but driven from here
instead of from Node: the schema's ``job_now()`` is swapped for pg-boss's override body (the same SQL
``TestClock.attach`` runs), the beats opt in through ``PGOPTIONS=-c pgboss.test_clock=on``, and the
test moves the clock 20 s per step. Every step it kills one beat (the other one is always up) a few
milliseconds to a few tenths of a second after moving the clock, when the beats are claiming the
interval, filing ``__pgboss__send-it`` jobs and forwarding them, and starts it again. Each minute's
occurrence is due for three passes (the due window is 60 s), so a pass lost with a killed beat is
made up by the next one; the throttle slot keeps the others from doubling it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from tests.acceptance.transport.test_beat import (
    CONFIG,
    ROOT,
    Lines,
    _pending_send_it,
    minute_of,
    stop,
    wait_for,
)
from tests.chaos.chaos import seed as chaos_seed
from transport import names
from transport.manager import JobManager

STEPS = 36
STEP_SECONDS = 20
QUEUE = "chaos-cron"
SCHEDULE = f'pgboss_schedules = [{{"name": "{QUEUE}", "cron": "* * * * *", "data": {{"from": "chaos"}}}}]\n'


def attach_clock(manager: JobManager, start: dt.datetime) -> None:
    """pg-boss ``TestClock.attach``: a one-row clock table and ``job_now()`` reading it for sessions with
    ``pgboss.test_clock = on`` (everyone else keeps real time)."""
    schema = f'"{manager.schema}"'
    table = f"{schema}.__pgboss_test_clock"
    body = (
        "SELECT COALESCE(CASE WHEN current_setting('pgboss.test_clock', true) = 'on' "
        f"THEN (SELECT c.now FROM {table} c LIMIT 1) END, pg_catalog.now());"
    )
    with manager.db.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {table}")
        cur.execute(f"CREATE TABLE {table} (now timestamp with time zone NOT NULL)")
        cur.execute(
            f"CREATE OR REPLACE FUNCTION {schema}.job_now() RETURNS timestamp with time zone "
            f"AS $$ {body} $$ LANGUAGE sql STABLE"
        )
        cur.execute(f"INSERT INTO {table} (now) VALUES (%s)", (start,))


def set_clock(manager: JobManager, now: dt.datetime) -> None:
    with manager.db.cursor() as cur:
        cur.execute(f'UPDATE "{manager.schema}".__pgboss_test_clock SET now = %s', (now,))


def cron_on(manager: JobManager) -> dt.datetime | None:
    with manager.db.cursor() as cur:
        cur.execute(f'SELECT cron_on FROM "{manager.schema}".version')
        return cur.fetchone()["cron_on"]


class Beat:
    """One ``celery -A zeke beat`` in a process group of its own."""

    def __init__(self, env: dict[str, str], cwd: Path, name: str) -> None:
        cmd = [sys.executable, "-m", "celery", "-A", "zeke", "beat", "-l", "info", "-s", str(cwd / name)]
        self.proc = subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
        )  # fmt: skip
        self.out = Lines(self.proc)

    def started(self) -> bool:
        assert self.proc.poll() is None, self.out.text()
        return "beat: Starting" in self.out.text()

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)

    def local_ports(self) -> set[int]:
        """Local TCP ports of this process's sockets (its database connections)."""
        inodes = set()
        for fd in os.listdir(f"/proc/{self.proc.pid}/fd"):
            with contextlib.suppress(OSError):
                link = os.readlink(f"/proc/{self.proc.pid}/fd/{fd}")
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
        ports = set()
        for table in ("tcp", "tcp6"):
            with contextlib.suppress(OSError), open(f"/proc/{self.proc.pid}/net/{table}") as lines:
                for line in list(lines)[1:]:
                    fields = line.split()
                    if fields[9] in inodes:
                        ports.add(int(fields[1].rsplit(":", 1)[1], 16))
        return ports


def blocked_forwards(manager: JobManager) -> list[int]:
    """Client ports of the sessions waiting for a lock (the test's, on the schedule row) at the end of a
    forward: recording the schedule's last_job_id."""
    with manager.db.cursor() as cur:
        cur.execute(
            "SELECT client_port FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE %s",
            ("%UPDATE %.schedule SET last_job_id%",),
        )
        return [r["client_port"] for r in cur.fetchall()]


def test_killed_beat_neither_misses_nor_doubles_an_occurrence(
    db_url: str, make_boss: Callable[..., JobManager], tmp_path: Path
) -> None:
    manager = make_boss()
    manager.create_queue(QUEUE)
    minute = 60
    start = dt.datetime.fromtimestamp((time.time() // minute + 24 * 60) * minute + 10, dt.UTC)
    attach_clock(manager, start)
    (tmp_path / "celeryconfig.py").write_text(CONFIG.format(root=str(ROOT / "celeryconfig.py")) + SCHEDULE)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CELERY_", "ZEKE_"))}
    env.update(
        DATABASE_PRIMARY_URL=db_url,
        ZEKE_PGBOSS_SCHEMA=manager.schema,
        ZEKE_TASK_MODULES="tests.acceptance.test_results_tasks",
        PYTHONPATH=f"{tmp_path}{os.pathsep}{ROOT}",
        CELERY_CONFIG_MODULE="celeryconfig",  # the test's (zeke reads its own file otherwise)
        PYTHONUNBUFFERED="1",
        PGOPTIONS="-c pgboss.test_clock=on",  # every beat session reads the test clock's job_now()
    )
    seed = chaos_seed()
    rng = random.Random(seed)
    beats = [Beat(env, tmp_path, f"beat{n}-0") for n in range(2)]
    generations = [0, 0]
    kills: Counter[str] = Counter()
    lost_passes = 0

    def replace(victim: int) -> None:
        beats[victim].kill()
        generations[victim] += 1
        beats[victim] = Beat(env, tmp_path, f"beat{victim}-{generations[victim]}")

    try:
        for beat in beats:
            wait_for(beat.started, 60, "beat start")
        wait_for(lambda: cron_on(manager) == start, 30, "the first pass")
        now = start
        for step in range(STEPS):
            now += dt.timedelta(seconds=STEP_SECONDS)
            # The clock starts 10 s past a minute, so every third step opens a new occurrence: those
            # steps kill the beat forwarding it; the steps before them kill a beat at random.
            kill = {2: "mid-forward", 1: "random"}.get(step % 3)
            if kill:
                for beat in beats:
                    wait_for(beat.started, 60, "both beats to run")
            if kill == "mid-forward":
                # Targeted: lock the schedule row, so the beat forwarding this occurrence stops at the
                # end of its forward (send-it job fetched, job sent and send-it completed, none of it
                # committed: it last records the schedule's last_job_id); kill that beat there.
                with manager.db.connection() as lock:
                    with lock.cursor() as cur:
                        cur.execute(f'SELECT 1 FROM "{manager.schema}".schedule FOR UPDATE')
                    set_clock(manager, now)
                    ports = wait_for(lambda: blocked_forwards(manager), 10, "a forward to block")
                    victim = next(n for n, beat in enumerate(beats) if beat.local_ports() & set(ports))
                    replace(victim)
                    lock.rollback()
                kills["mid-forward"] += 1
            elif kill == "random":
                set_clock(manager, now)
                time.sleep(rng.uniform(0.0, 0.3))  # mid-claim, mid-insert, mid-forward, or idle
                replace(rng.randrange(2))
                kills["random"] += 1
            else:
                set_clock(manager, now)
            try:  # a pass claimed by the beat just killed is lost; the next step's pass makes it up
                wait_for(lambda t=now: cron_on(manager) == t and not _pending_send_it(manager), 5, "the pass")
            except AssertionError:
                lost_passes += 1
        for beat in beats:
            wait_for(beat.started, 60, "beat start")
        with contextlib.suppress(AssertionError):  # what is left undone is reported below
            wait_for(lambda: _pending_send_it(manager) == 0, 15, "send-it jobs forwarded")
    finally:
        for beat in beats:
            stop(beat.proc)

    end = start + dt.timedelta(seconds=STEPS * STEP_SECONDS)
    expected = [
        minute_of(int(start.timestamp() * 1000)) + dt.timedelta(minutes=m)
        for m in range(int((end - start).total_seconds() // 60) + 1)
    ]
    send_it = manager.list_jobs(name=names.SEND_IT_QUEUE, limit=10_000)
    slots = Counter(j["singleton_on"] for j in send_it if j["singleton_key"] == f"{QUEUE}__")
    sent = manager.list_jobs(name=QUEUE, limit=10_000)
    forwarded = Counter(j["data"]["slot"] for j in send_it if j["state"] == "completed")
    missed = [m for m in expected if slots[m] == 0 or not forwarded[str(m)]]
    doubled = [m for m, n in slots.items() if n > 1]
    print(
        f"\nbeat kill: occurrences={len(expected)} kills={dict(kills)} passes lost={lost_passes} "
        f"send-it={Counter(j['state'] for j in send_it)} jobs={len(sent)} missed={len(missed)} "
        f"doubled={len(doubled)} seed={seed}"
    )
    assert not missed and not doubled, (missed, doubled)
    assert {j["state"] for j in send_it} == {"completed"}, Counter(j["state"] for j in send_it)
    assert sorted(slots) == expected
    assert len(sent) == len(expected)  # each occurrence forwarded exactly once
    assert kills == {"mid-forward": STEPS // 3, "random": STEPS // 3}
