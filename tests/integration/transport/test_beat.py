"""pg-boss cron (transport.cron) and the beat scheduler (transport.beat) against a real database.

Time is explicit: a cron pass is driven with the instant it evaluates (``Timekeeper.cron(now)``), so
minutes pass without sleeping. Real beat processes next to Node pg-boss are in
tests/acceptance/transport/test_beat.py.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from celery import Celery

from transport import cron, names
from transport.beat import PgBossScheduleEntry, PgBossScheduler, close_timekeepers
from transport.db import Database
from transport.manager import JobManager

pytestmark = pytest.mark.own_database("beat")

T0 = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC)


@pytest.fixture
def keepers(boss: JobManager, database: Database) -> Callable[[], cron.Timekeeper]:
    """Factory: independent timekeepers (each with its own manager) on the test's schema."""

    def make() -> cron.Timekeeper:
        keeper = cron.Timekeeper(JobManager(database, boss.schema), monitor_interval=30)
        keeper.start()
        return keeper

    return make


@pytest.fixture
def app(db_url: str, boss: JobManager) -> Iterator[Celery]:
    app = Celery("test-beat", set_as_current=False)
    app.conf.update(
        broker_url="memory://",
        pgboss_beat_url=db_url,
        broker_transport_options={"schema": boss.schema, "queue_options": {"seeded": {"retry_limit": 7}}},
        pgboss_cron_monitor_interval=30,
        beat_schedule={},
    )
    yield app
    close_timekeepers()


def send_it_jobs(boss: JobManager) -> list[dict[str, Any]]:
    return boss.list_jobs(name=names.SEND_IT_QUEUE, limit=1000)


def at(minute: int, second: int = 0) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minute, seconds=second)


# -- occurrences (no database) ---------------------------------------------------------------------


def schedule(expression: str, tz: str = "UTC", **options: Any) -> cron.Schedule:
    return cron.Schedule(
        "q", "", "rrule" if cron.is_rrule(expression) else "cron", expression, tz, {}, options, T0
    )


# -- passes against the database ---------------------------------------------------------------------


def test_each_occurrence_becomes_one_send_it_job_whatever_the_passes(
    boss: JobManager, keepers: Callable[[], cron.Timekeeper]
) -> None:
    first, second, third = keepers(), keepers(), keepers()
    boss.create_queue("minutely")
    first.schedule("minutely", "* * * * *", {"n": 1})
    # Passes every 20 s, alternating between instances: each occurrence is seen by three passes.
    for step in range(3 * 10):
        keeper = (first, second, third)[step % 3]
        keeper.cron(at(0, 5) + dt.timedelta(seconds=20 * step))
    jobs = send_it_jobs(boss)
    slots = sorted(str(j["singleton_on"]) for j in jobs)
    assert slots == [f"2026-03-01 12:{m:02d}:00" for m in range(0, 10)]
    assert {j["singleton_key"] for j in jobs} == {"minutely__"}
    assert jobs[0]["data"] == {
        "name": "minutely",
        "key": "",
        "data": {"n": 1},
        "options": {"tz": "UTC"},
        "slot": str(jobs[0]["singleton_on"]),
    }


def test_send_it_jobs_are_forwarded_once_with_the_schedules_options(
    boss: JobManager, keepers: Callable[[], cron.Timekeeper]
) -> None:
    boss.create_queue("reports")
    keeper = keepers()
    keeper.schedule("reports", "*/5 * * * *", {"kind": "daily"}, {"retryLimit": 5, "priority": 3}, key="k1")
    keeper.cron(at(5, 1))
    keeper.cron(at(10, 1))
    forwarders = [keepers() for _ in range(4)]
    sent: list[int] = []
    threads = [threading.Thread(target=lambda k=k: sent.append(k.work_send_it())) for k in forwarders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sum(sent) == 2
    jobs = boss.list_jobs(name="reports")
    assert len(jobs) == 2
    assert {(j["data"]["kind"], j["retry_limit"], j["priority"]) for j in jobs} == {("daily", 5, 3)}
    assert {j["state"] for j in send_it_jobs(boss)} == {"completed"}
    assert str(keeper.get_schedule("reports", "k1").data) == str({"kind": "daily"})
    assert keeper.work_send_it() == 0


def test_only_one_instance_claims_an_interval(keepers: Callable[[], cron.Timekeeper]) -> None:
    first, second = keepers(), keepers()
    won, lost = first.claim(), second.claim()
    assert won.claimed and not lost.claimed
    assert lost.elapsed is not None and lost.elapsed < 5
    assert 25 <= second.retry_delay(lost) <= 31
    assert first.retry_delay(won) == 30


def test_a_broken_row_does_not_stop_the_others(
    boss: JobManager, keepers: Callable[[], cron.Timekeeper]
) -> None:
    keeper = keepers()
    boss.create_queue("good")
    boss.create_queue("bad")
    keeper.schedule("good", "* * * * *")
    keeper.schedule("bad", "* * * * *")
    with boss.db.cursor() as cur:  # as an older release or hand-written SQL could leave it
        cur.execute(f"UPDATE \"{boss.schema}\".schedule SET timezone = 'Nowhere/Else' WHERE name = 'bad'")
    assert keeper.cron(at(1, 10)) == (1, 1)


def test_runtime_entries_save_load_and_delete(app: Celery, boss: JobManager) -> None:
    entry = PgBossScheduleEntry(
        "digest", "0 9 * * 1", {"who": "all"}, {"retryLimit": 1}, key="weekly", tz="Europe/Paris", app=app
    )
    entry.save()
    assert boss.get_queue("digest") is not None  # created on save
    loaded = PgBossScheduleEntry.from_key("digest:weekly", app=app)
    assert (loaded.cron, loaded.data, loaded.tz, loaded.options) == (
        "0 9 * * 1",
        {"who": "all"},
        "Europe/Paris",
        {"retryLimit": 1},
    )
    assert loaded.next_run(dt.datetime(2026, 3, 1, tzinfo=dt.UTC)) == dt.datetime(
        2026, 3, 2, 8, 0, tzinfo=dt.UTC
    )
    loaded.delete()
    with pytest.raises(KeyError):
        PgBossScheduleEntry.from_key("digest", "weekly", app=app)


def test_scheduler_installs_configured_schedules_once(app: Celery, boss: JobManager) -> None:
    app.conf.pgboss_schedules = [
        {"name": "seeded", "cron": "*/5 * * * *", "tz": "UTC"},
        {"name": "seeded-tz", "cron": "0 */6 * * *", "tz": "Asia/Tokyo", "data": {"reason": "schedule"}},
    ]
    PgBossScheduler(app)
    keeper = cron.Timekeeper(boss)
    first = {(s.name, s.cron, s.timezone): s for s in keeper.schedules()}
    assert set(first) == {("seeded", "*/5 * * * *", "UTC"), ("seeded-tz", "0 */6 * * *", "Asia/Tokyo")}
    assert boss.get_queue("seeded")["retry_limit"] == 7  # the transport's queue_options
    assert boss.get_queue(names.SEND_IT_QUEUE) is not None
    with boss.db.cursor() as cur:
        cur.execute(f'SELECT name, updated_on FROM "{boss.schema}".schedule')
        before = dict((r["name"], r["updated_on"]) for r in cur.fetchall())
    PgBossScheduler(app)  # a restart (or a second beat) rewrites nothing
    with boss.db.cursor() as cur:
        cur.execute(f'SELECT name, updated_on FROM "{boss.schema}".schedule')
        assert dict((r["name"], r["updated_on"]) for r in cur.fetchall()) == before


class RecordingScheduler(PgBossScheduler):
    """Records sends instead of publishing them."""

    sent: list[tuple[str, int]]

    def apply_async(self, entry: Any, producer: Any = None, advance: bool = True, **kwargs: Any) -> Any:
        self.sent.append((entry.name, entry.total_run_count))


def test_celery_beat_entries_are_sent_once_by_several_beats(app: Celery, boss: JobManager) -> None:
    app.conf.beat_schedule = {"ping": {"task": "t.ping", "schedule": 0.5}}
    beats = [RecordingScheduler(app) for _ in range(3)]
    sent: list[tuple[str, int]] = []
    for beat in beats:
        beat.sent = sent
    deadline = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=3)
    while dt.datetime.now(dt.UTC) < deadline:
        for beat in beats:
            beat.tick()
    runs = [count for name, count in sent if name == "ping"]
    assert 3 <= len(runs) <= 8  # every 0.5 s for 3 s, by whichever beat claimed it
    assert len(runs) == len(set(runs))  # never the same run twice
    late = RecordingScheduler(app)  # a beat started later adopts the shared state
    assert late.schedule["ping"].total_run_count == max(runs) + 1
