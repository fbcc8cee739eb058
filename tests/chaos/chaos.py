"""What the chaos tests share: the run-count table, a worker killer, and the tally of a run.

Workers are the broker acceptance tests' (``tests/acceptance/broker_workers.py``: real ``celery
worker -P prefork`` processes in sessions of their own, heartbeat 10 s, supervisor every second) with
the chaos tasks (:mod:`tests.chaos.chaos_tasks`) included.
"""

from __future__ import annotations

import importlib
import os
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tests.acceptance.broker_workers import BrokerEnv, Worker

#: ``celery worker`` arguments that load the chaos tasks into the acceptance app.
INCLUDE = ("-I", "tests.chaos.chaos_tasks")
#: Seconds pg-boss waits for a heartbeat of the chaos queues before retrying (its minimum).
HEARTBEAT_SECONDS = 10


def seed() -> int:
    """``ZEKE_CHAOS_SEED`` (to replay a run), else a fresh one; tests print the one they used."""
    return int(os.environ.get("ZEKE_CHAOS_SEED", "0")) or random.randrange(1 << 30)


def app_module(env: BrokerEnv) -> Any:
    """:mod:`tests.chaos.chaos_tasks` for the environment's schema (``broker_app`` imported for it)."""
    env.app_module()
    # From sys.modules, not the package attribute: test_pg_restart swaps these modules for its own
    # environment and puts the session's back in sys.modules only.
    return importlib.import_module("tests.chaos.chaos_tasks")


def create_runs_table(env: BrokerEnv) -> None:
    module = app_module(env)
    with env.database.cursor() as cur:
        cur.execute(module.RUNS_DDL.format(table=module.RUNS))


def create_queue(env: BrokerEnv, queue: str, **options: Any) -> str:
    """The queue, created before any worker declares it (so these options, not the transport's)."""
    env.manager.create_queue(queue, **{"heartbeat_seconds": HEARTBEAT_SECONDS, **options})
    return queue


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def runs_of(env: BrokerEnv, ids: Sequence[str]) -> dict[str, dict[int, int]]:
    """``{job id: {attempt: runs}}`` for the given jobs."""
    found: dict[str, dict[int, int]] = {str(i): {} for i in ids}
    with env.database.cursor() as cur:
        cur.execute(
            f'SELECT job_id::text AS id, attempt, runs FROM "{env.schema}_effects".run '
            "WHERE job_id = ANY(%s::uuid[])",
            (list(ids),),
        )
        for row in cur.fetchall():
            found[row["id"]][row["attempt"]] = row["runs"]
    return found


def jobs_of(env: BrokerEnv, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    jobs: dict[str, dict[str, Any]] = {}
    for start in range(0, len(ids), 1000):
        for job in env.manager.get_jobs(list(ids[start : start + 1000])):
            jobs[str(job["id"])] = job
    return jobs


def states_of(env: BrokerEnv, ids: Sequence[str]) -> Counter[str]:
    jobs = jobs_of(env, ids)
    return Counter(jobs[i]["state"] if i in jobs else "missing" for i in ids)


@dataclass
class Tally:
    """Every job's end, counted the way RELIABILITY.md reports it."""

    jobs: int
    states: Counter[str]
    #: Jobs not completed (any other state, or no row at all).
    lost: list[str]
    #: Jobs still active.
    stuck: list[str]
    #: Completed jobs whose completing attempt left no run, or ran more than once, or that ran again
    #: in a later attempt: anything but exactly one successful side effect.
    duplicates: list[str]
    #: Extra runs of earlier attempts (killed after the side effect, before completion): at-least-once.
    reruns: int
    #: Jobs with at least one such extra run.
    rerun_jobs: int

    def line(self) -> str:
        return (
            f"jobs={self.jobs} states={dict(self.states)} lost={len(self.lost)} stuck={len(self.stuck)} "
            f"duplicates={len(self.duplicates)} reruns={self.reruns} (jobs re-run: {self.rerun_jobs})"
        )


def tally(env: BrokerEnv, ids: Sequence[str], *, expect_output: bool = True) -> Tally:
    """Check every job of a ``chaos.work`` run against its run counts."""
    jobs, runs = jobs_of(env, ids), runs_of(env, ids)
    states: Counter[str] = Counter()
    lost, stuck, duplicates = [], [], []
    reruns = rerun_jobs = 0
    for job_id in ids:
        job = jobs.get(job_id)
        state = job["state"] if job else "missing"
        states[state] += 1
        attempts = runs[job_id]
        if state != "completed":
            lost.append(job_id)
            if state == "active":
                stuck.append(job_id)
            continue
        final = job["retry_count"]
        output_attempt = (job["output"] or {}).get("attempt") if expect_output else final
        if attempts.get(final) != 1 or any(a > final for a in attempts) or output_attempt != final:
            duplicates.append(job_id)
        earlier = sum(n for a, n in attempts.items() if a < final)
        reruns += earlier
        rerun_jobs += bool(earlier)
    return Tally(len(ids), states, lost, stuck, duplicates, reruns, rerun_jobs)


@dataclass
class Killer:
    """SIGKILLs a random worker (its whole process group) every ``interval`` seconds (a random value
    in the range) and starts a fresh one in its place, until stopped."""

    env: BrokerEnv
    queues: Sequence[str]
    workers: list[Worker]
    interval: tuple[float, float] = (2.0, 5.0)
    concurrency: int = 2
    seed: int = field(default_factory=lambda: seed())
    kills: int = 0
    generation: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    error: BaseException | None = None

    def start(self) -> Killer:
        self._random = random.Random(self.seed)
        self._thread = threading.Thread(target=self._run, name="chaos-killer", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        try:
            while not self._stop.wait(self._random.uniform(*self.interval)):
                victim = self._random.randrange(len(self.workers))
                self.workers[victim].kill()
                self.kills += 1
                self.generation += 1
                self.workers[victim] = self.spawn(f"storm{victim}g{self.generation}")
        except BaseException as exc:  # reported by stop()
            self.error = exc

    def spawn(self, name: str) -> Worker:
        worker = self.env.worker(name, self.queues, concurrency=self.concurrency, args=INCLUDE)
        return worker.start(wait=False)


def wait_all(
    env: BrokerEnv, ids: Sequence[str], states: Sequence[str], timeout: float, interval: float = 1.0
) -> Counter[str]:
    """Wait until every job is in one of ``states``; returns the final counts either way."""
    deadline = time.monotonic() + timeout
    while True:
        counts = states_of(env, ids)
        if sum(counts[s] for s in states) == len(ids) or time.monotonic() > deadline:
            return counts
        time.sleep(interval)
