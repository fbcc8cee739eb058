"""In-process checks of what the end-to-end tests run through: the 13 Celery tasks and their limits,
the seed schedules, the wrapper's context and error mapping, and the demo's sources."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery
from celery.exceptions import Retry
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from tasks import celery_tasks, demo
from tasks.db import session_factory, upgrade
from tasks.db.models import Source
from tasks.lib.context import TaskEnv
from tasks.lib.errors import FetchFailed, RetryLater
from tasks.registry_data import BY_ID, CONCURRENCY
from tasks.samples import SOURCES
from zeke.registry import registry
from zeke.schema_task import RunInfo, TaskContext, TaskLogger


def test_every_seed_task_is_a_schema_task_with_its_limit() -> None:
    assert set(celery_tasks.CELERY_TASKS) == set(BY_ID)
    for task_id, limit in CONCURRENCY.items():
        task = registry.get(task_id)
        assert task is celery_tasks.CELERY_TASKS[task_id]
        assert task.concurrency_limit == limit and registry.concurrency_limits[task_id] == limit
        assert task.schema is BY_ID[task_id].load().PAYLOAD
        assert task.queue_options == {}  # the seed's queue defaults: 3 retries with backoff, 1 h expiry


def test_seed_schedules_in_the_cron_time_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    from zeke.app import app

    entries = {e["name"]: e for e in app.conf.pgboss_schedules}
    assert entries["ingest-pull"] == {"name": "ingest-pull", "cron": "*/5 * * * *", "tz": "UTC", "data": {}}
    assert entries["ingest-pull-youtube"]["cron"] == "0 */6 * * *"
    monkeypatch.setenv("JOBS_CRON_TZ", "Europe/Paris")
    assert {e["tz"] for e in celery_tasks.schedules()} == {"Europe/Paris"}

    other = Celery("other")
    other.conf.pgboss_schedules = [
        {"name": "ingest-pull", "cron": "0 * * * *"},
        {"name": "x", "cron": "1 * * * *"},
    ]
    celery_tasks.install_schedules(other)
    crons = {e["name"]: (e["cron"], e.get("tz")) for e in other.conf.pgboss_schedules}
    assert crons == {
        "ingest-pull": ("0 * * * *", None),  # the app's own entry wins
        "x": ("1 * * * *", None),
        "ingest-pull-youtube": ("0 */6 * * *", "Europe/Paris"),
    }


class FakeTask:
    """What the wrapper uses of the Celery task: retry() and fail_for_good()."""

    def __init__(self) -> None:
        self.retries: list[dict[str, Any]] = []
        self.failed: list[tuple[str, BaseException]] = []

    def retry(self, **options: Any) -> Retry:
        self.retries.append(options)
        return Retry("retry", exc=options.get("exc"), when=options.get("countdown"))

    def fail_for_good(self, job_id: str, exc: BaseException) -> None:
        self.failed.append((job_id, exc))


@pytest.fixture
def run_with(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Run the analyze-story wrapper with ``behaviour`` as the module's run(); returns the fake task."""

    def run(behaviour: Any) -> tuple[FakeTask, list[Any]]:
        monkeypatch.setattr(BY_ID["analyze-story"].load(), "run", behaviour)
        fake = FakeTask()
        ctx = TaskContext("analyze-story", TaskLogger("analyze-story", "job-1"), RunInfo("job-1", 0), fake)
        payload = celery_tasks.analyze_story.validate({"storyId": str(uuid.uuid4())})
        seen: list[Any] = []
        try:
            seen.append(celery_tasks.analyze_story.fn(payload, ctx))
        except BaseException as exc:
            seen.append(exc)
        return fake, seen

    yield run


def test_the_wrapper_builds_the_task_env(run_with: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from zeke.database import database_url
    from zeke.schema_task import tasks as all_tasks

    monkeypatch.setenv("ZEKE_ALLOWED_NETWORKS", "127.0.0.1/32")
    celery_tasks.task_settings.cache_clear()
    sent: list[tuple[str, Any, dict[str, Any]]] = []
    monkeypatch.setattr(all_tasks, "trigger", lambda t, p=None, **o: sent.append((t, p, o)) or "id")

    def behaviour(payload: Any, env: TaskEnv) -> dict[str, Any]:
        assert isinstance(env.logger, TaskLogger) and env.logger.job_id == "job-1"
        assert env.session_factory is session_factory(database_url())
        assert env.settings.allowed_networks == ("127.0.0.1/32",)
        env.trigger("generate-brief", {"storyId": str(payload.story_id)}, countdown=5)
        return {"ok": True}

    try:
        fake, seen = run_with(behaviour)
    finally:
        celery_tasks.task_settings.cache_clear()
    assert seen == [{"ok": True}] and not fake.retries and not fake.failed
    assert sent[0][0] == "generate-brief" and sent[0][2] == {"countdown": 5}


def test_retry_later_is_a_celery_retry_after_those_seconds(run_with: Any) -> None:
    def behaviour(payload: Any, env: TaskEnv) -> None:
        raise RetryLater(7, "rate limited")

    fake, seen = run_with(behaviour)
    assert isinstance(seen[0], Retry)
    (options,) = fake.retries
    assert options["countdown"] == 7 and isinstance(options["exc"], RetryLater)
    assert options["max_retries"] == celery_tasks.RETRY_LATER_LIMIT
    assert not fake.failed


def test_permanent_errors_fail_for_good_and_others_propagate(run_with: Any) -> None:
    def permanent(payload: Any, env: TaskEnv) -> None:
        raise FetchFailed("gone", status=410)

    fake, seen = run_with(permanent)
    assert isinstance(seen[0], FetchFailed) and fake.failed == [("job-1", seen[0])] and not fake.retries

    def bug(payload: Any, env: TaskEnv) -> None:
        raise KeyError("oops")

    fake, seen = run_with(bug)
    assert isinstance(seen[0], KeyError) and not fake.failed and not fake.retries  # pg-boss's retry policy


# -- the demo's sources ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sessions(fresh_url: str) -> sessionmaker[Session]:
    upgrade(fresh_url)
    return session_factory(fresh_url)


def test_demo_sources_follow_the_sample_server(fresh_url: str, sessions: sessionmaker[Session]) -> None:
    assert demo.other_sources(sessions) == 0
    assert demo.register_demo_sources(sessions, "http://127.0.0.1:8001") == len(SOURCES)
    with sessions.begin() as session:
        byteline = session.scalars(select(Source).where(Source.name == "Byteline Dispatch")).one()
        byteline.etag = '"abc"'
    # Another run, another port: the same rows, re-pointed, their validators dropped.
    assert demo.register_demo_sources(sessions, "http://127.0.0.1:9999") == len(SOURCES)
    with sessions() as session:
        rows = session.scalars(select(Source)).all()
        assert len(rows) == len(SOURCES) and all(r.active for r in rows)
        byteline = next(r for r in rows if r.name == "Byteline Dispatch")
        assert byteline.url == "http://127.0.0.1:9999/feeds/byteline.xml" and byteline.etag is None
        assert byteline.metadata_ == {"demo": "/feeds/byteline.xml"}
    assert demo.other_sources(sessions) == 0

    with sessions.begin() as session:
        session.add(Source(type="rss", url="https://example.com/feed.xml", name="Real"))
    assert demo.other_sources(sessions) == 1
    run = demo.prepare(fresh_url, None)
    assert not run.demo and run.env == {} and run.sample_url is None
    assert any("demo sources paused" in note for note in run.notes)
    with sessions() as session:
        active = session.scalars(select(Source.name).where(Source.active)).all()
        assert active == ["Real"]


def test_demo_stays_demo_on_a_real_database(
    fresh_url: str, sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    """A DATABASE_PRIMARY_URL gets demo sources only when asked for (--demo), and never keeps them active."""
    from tasks.lib.sources import claim_due_sources
    from zeke.database import is_embedded

    # The suite may itself run on the embedded server: another data directory makes it "a real one".
    monkeypatch.setenv("ZEKE_DATA_DIR", str(tmp_path))
    assert not is_embedded(fresh_url)
    assert is_embedded(f"postgresql://postgres:@/postgres?host={tmp_path}/pgdata")
    with sessions.begin() as session:  # no real sources either: still no demo by default
        session.execute(update(Source).values(active=False))
    run = demo.prepare(fresh_url, None)
    assert not run.demo and run.sample_url is None
    assert any("zeke run --demo" in note for note in run.notes)
    with sessions() as session:
        assert session.scalars(select(Source).where(Source.active)).all() == []

    monkeypatch.setenv("ZEKE_SAMPLES_PORT", "0")
    run = demo.prepare(fresh_url, True)  # asked for explicitly
    try:
        assert run.demo and run.env["ZEKE_DEMO"] == "1"
        with sessions.begin() as session:
            assert len(session.scalars(select(Source).where(Source.active)).all()) == len(SOURCES)
            # Only a demo run's own processes pull demo sources; a later worker leaves them alone.
            assert claim_due_sources(session, "rss", force=True) == []
            assert len(claim_due_sources(session, "rss", force=True, include_demo=True)) > 0
    finally:
        run.close()
    with sessions() as session:
        assert session.scalars(select(Source.name).where(Source.active)).all() == []
