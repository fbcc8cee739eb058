"""Kill storm: jobs across three prefork workers while a driver SIGKILLs a random worker (main process and
pool children at once) every few seconds and starts a fresh one in its place.

Every job must end ``completed`` exactly once: its completing attempt ran its side effect exactly
once, no attempt after it ran, none is lost, none left ``active``. Runs of earlier attempts killed
after their side effect (at-least-once re-runs) are counted separately. Jobs a killed worker held come
back through pg-boss's heartbeat timeout (10 s) and the supervisors of the surviving workers (every
second). ``ZEKE_CHAOS_SEED`` replays a kill sequence.
"""

from __future__ import annotations

import time

import pytest

from tests.acceptance.broker_workers import BrokerEnv
from tests.chaos.chaos import (
    HEARTBEAT_SECONDS,
    Killer,
    create_queue,
    states_of,
    tally,
    unique,
    wait_all,
)


def storm(env: BrokerEnv, chaos, *, jobs: int, sleep: float, storm_seconds: float, workers: int = 3) -> None:
    queue = create_queue(env, unique("storm"), retry_limit=100, retry_delay=1, retry_backoff=False)
    started = time.monotonic()
    killer = Killer(env, [queue], [])
    killer.workers = [killer.spawn(f"storm{n}g0") for n in range(workers)]
    for worker in killer.workers:
        worker.wait_ready()
    ids = [chaos.work.apply_async((n, sleep), queue=queue).id for n in range(jobs)]
    killer.start()
    try:
        deadline = time.monotonic() + storm_seconds
        while time.monotonic() < deadline and states_of(env, ids)["completed"] < jobs:
            time.sleep(1)
    finally:
        killer.stop()
    storm_end = time.monotonic()
    # The last victims' jobs come back once their heartbeat runs out (10 s) and a supervisor sees it.
    final = wait_all(env, ids, ["completed", "failed", "cancelled"], timeout=6 * HEARTBEAT_SECONDS)
    settled = time.monotonic()
    result = tally(env, ids)
    print(
        f"\nkill storm: {result.line()} kills={killer.kills} seed={killer.seed} "
        f"storm={storm_end - started:.0f}s settled {settled - storm_end:.0f}s after the last kill"
    )
    assert killer.kills >= 3, "the storm ended before it killed anything much"
    assert final["completed"] == jobs, (final, result.line())
    assert not result.lost and not result.stuck, result.line()
    assert not result.duplicates, (result.line(), result.duplicates[:5])
    for worker in killer.workers:
        worker.stop()


def test_kill_storm_150_jobs(broker_env: BrokerEnv, chaos) -> None:
    storm(broker_env, chaos, jobs=150, sleep=0.6, storm_seconds=45)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_kill_storm_1000_jobs(broker_env: BrokerEnv, chaos) -> None:
    storm(broker_env, chaos, jobs=1000, sleep=0.6, storm_seconds=420)
