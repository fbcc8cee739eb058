"""The whole suite through real queues: `zeke init`, the sample feeds on a local server, a real
`celery -A zeke worker` (prefork, -c 2) on pg-boss's tables, the offline provider, then one worker on a
fake OpenAI server for a structured answer, a 429 with Retry-After and a malformed answer."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from tasks.db import session_factory
from tasks.db.models import Highlight, RawItem, Source, Story, StoryAnalysis
from tasks.registry_data import BY_ID
from tasks.samples import seed_sources, serve_samples, youtube_feed_base
from tests.e2e.conftest import ROOT, Worker, zeke_env
from tests.tasks.helpers import ANALYSIS_REPLY, FakeOpenAI
from transport.db import Database
from transport.manager import JobManager

#: The samples: 13 feed items + 2 videos; the Ferrite article is linked from two feeds.
RAW_ITEMS, STORIES = 15, 14
PENDING = ("created", "retry", "active")


@pytest.fixture(scope="module")
def samples() -> Iterator[str]:
    base, stop = serve_samples()
    yield base
    stop()


@pytest.fixture(scope="module")
def manager(fresh_url: str) -> Iterator[JobManager]:
    db = Database(fresh_url, application_name="zeke-e2e")
    yield JobManager(db, "pgboss")
    db.close()


@pytest.fixture(scope="module")
def sessions(fresh_url: str) -> sessionmaker[Session]:
    return session_factory(fresh_url)


def wait_for(
    what: str, predicate: Callable[[], Any], timeout: float, workers: tuple[Worker, ...] = ()
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        for worker in workers:
            assert worker.proc.poll() is None, f"worker exited:\n{worker.output()[-4000:]}"
        if time.monotonic() > deadline:
            logs = "\n".join(w.output()[-4000:] for w in workers)
            raise AssertionError(f"{what}: not within {timeout}s\n{logs}")
        time.sleep(0.1)


def job_states(manager: JobManager) -> dict[str, dict[str, int]]:
    """{task id: {state: count}} over the suite's queues."""
    with manager.db.cursor() as cur:
        cur.execute("SELECT name, state::text AS state, count(*) AS n FROM pgboss.job GROUP BY 1, 2")
        rows = cur.fetchall()
    out: dict[str, dict[str, int]] = {}
    for row in rows:
        out.setdefault(row["name"], {})[row["state"]] = row["n"]
    return out


def settled(manager: JobManager) -> dict[str, dict[str, int]] | None:
    """The job states once nothing is created, retrying or active any more."""
    states = job_states(manager)
    if any(state in PENDING for counts in states.values() for state in counts):
        return None
    return states


def counts(sessions: sessionmaker[Session]) -> dict[str, int]:
    unscored = select(Highlight.id).where(Highlight.relevance_score.is_(None)).exists()
    with sessions() as session:
        return {
            "raw_items": session.scalar(select(func.count()).select_from(RawItem)),
            "stories": session.scalar(select(func.count()).select_from(Story)),
            "analysed": session.scalar(
                select(func.count()).select_from(StoryAnalysis).where(StoryAnalysis.analyzed_at.is_not(None))
            ),
            "briefed": session.scalar(
                select(func.count()).select_from(StoryAnalysis).where(StoryAnalysis.one_liner.is_not(None))
            ),
            "highlighted": session.scalar(select(func.count(func.distinct(Highlight.story_id)))),
            "unscored": int(session.scalar(select(unscored))),
        }


def job(manager: JobManager, job_id: str) -> dict[str, Any]:
    found = manager.get_job(job_id)
    assert found is not None
    return found


def test_pipeline_through_a_real_worker(
    fresh_url: str,
    samples: str,
    manager: JobManager,
    sessions: sessionmaker[Session],
    start_worker: Callable[..., Worker],
    fake_openai: FakeOpenAI,
) -> None:
    started = time.monotonic()
    offline = zeke_env(
        fresh_url,
        ZEKE_ALLOWED_NETWORKS="127.0.0.1/32",
        YOUTUBE_FEED_BASE=youtube_feed_base(samples),
        ZEKE_FETCH_TIMEOUT="5",
    )
    # zeke init: pg-boss schema, a queue per task with its options, the seed schedules, migrations.
    init = subprocess.run(
        [sys.executable, "-m", "zeke.cli", "init", "--json"],
        cwd=ROOT,
        env=offline,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert init.returncode == 0, init.stderr
    report = json.loads(init.stdout)
    assert sorted(report["queues"]) == sorted(BY_ID)
    assert report["schedules"] == ["ingest-pull */5 * * * *", "ingest-pull-youtube 0 */6 * * *"]
    assert report["migrations"]["tasks"]
    with manager.db.cursor() as cur:
        cur.execute("SELECT name, cron, timezone, data FROM pgboss.schedule ORDER BY name")
        assert [tuple(r.values()) for r in cur.fetchall()] == [
            ("ingest-pull", "*/5 * * * *", "UTC", {}),
            ("ingest-pull-youtube", "0 */6 * * *", "UTC", {}),
        ]
    assert manager.get_queue("fetch-content")["retry_limit"] == 3

    assert len(seed_sources(sessions, samples)) == 4
    worker = start_worker(offline, name="offline")

    # Round one, as Node's boss.send() or the cron would send it: the payload only.
    manager.send("ingest-pull", {"reason": "manual"})
    manager.send("ingest-pull-youtube", {"reason": "manual"})
    states = wait_for("the pipeline to settle", lambda: _done(manager, sessions), 60, (worker,))
    assert all(set(by_state) == {"completed"} for by_state in states.values()), states
    done = {name: by_state["completed"] for name, by_state in states.items()}
    assert done["ingest-pull"] == done["ingest-pull-youtube"] == 1
    assert done["ingest-source"] == 3
    assert done["analyze-story"] == done["generate-brief"] == done["extract-highlights"] == STORIES
    assert done["score-relevance"] >= 1
    made = counts(sessions)
    assert made["raw_items"] == RAW_ITEMS
    assert made["stories"] == made["analysed"] == made["briefed"] == STORIES
    assert made["highlighted"] >= STORIES - 2 and made["unscored"] == 0
    with sessions() as session:
        assert {a.provider for a in session.scalars(select(StoryAnalysis))} == {"offline"}
        assert all(s.next_check_at is not None for s in session.scalars(select(Source)))
    round_one = time.monotonic() - started

    # Round two: a forced pull fetches every feed again; nothing is stored twice.
    before = sum(done.values())
    manager.send("ingest-pull", {"reason": "manual", "force": True})
    manager.send("ingest-pull-youtube", {"reason": "manual", "force": True})
    wait_for(
        "the second round to settle", lambda: settled(manager) and _total(manager) > before, 30, (worker,)
    )
    states = job_states(manager)
    assert all(set(by_state) == {"completed"} for by_state in states.values()), states
    assert states["ingest-pull"]["completed"] == 2 and states["ingest-source"]["completed"] == 6
    after = counts(sessions)
    assert after["raw_items"] == RAW_ITEMS and after["stories"] == STORIES and after["briefed"] == STORIES
    worker.stop()

    # One worker on a (fake) OpenAI: structured output through the real client.
    openai = {
        **offline,
        "OPENAI_API_KEY": "sk-test-not-a-real-key",
        "OPENAI_BASE_URL": fake_openai.base_url,
        "OPENAI_TIMEOUT": "5",
    }
    worker = start_worker(openai, name="openai")
    with sessions() as session:
        story_id = str(session.scalars(select(Story.id).order_by(Story.created_at)).first())
    analysed = manager.send("analyze-story", {"storyId": story_id, "trigger": "manual"})
    assert wait_for("analysis by OpenAI", lambda: _finished(manager, analysed), 30, (worker,)) == "completed"
    assert job(manager, analysed)["output"]["status"] == "analyzed"
    wait_for("the follow-ups", lambda: settled(manager), 30, (worker,))
    with sessions() as session:
        analysis = session.get_one(StoryAnalysis, uuid.UUID(story_id))
        assert analysis.provider == "openai" and analysis.why_it_matters == ANALYSIS_REPLY["why_it_matters"]
    assert fake_openai.headers[0]["authorization"] == "Bearer sk-test-not-a-real-key"

    # A 429 with Retry-After: the same job row waits in `retry` until then, and then completes.
    fake_openai.mode, fake_openai.retry_after = "rate_limit", "3"
    limited = manager.send("analyze-story", {"storyId": story_id, "trigger": "manual"})
    waiting = wait_for("the retry", lambda: _in_state(manager, limited, "retry"), 20, (worker,))
    fake_openai.mode = "ok"
    wait_seconds = (waiting["start_after"] - waiting["started_on"]).total_seconds()
    assert 2.5 <= wait_seconds <= 4.0, waiting
    assert waiting["retry_count"] == 0  # Task.retry(countdown=...), not pg-boss's retry policy
    assert wait_for("the retried job", lambda: _finished(manager, limited), 20, (worker,)) == "completed"
    finished = job(manager, limited)
    assert finished["started_on"] >= waiting["start_after"] - dt.timedelta(milliseconds=50)
    assert finished["output"]["status"] == "analyzed"
    wait_for("the follow-ups", lambda: settled(manager), 30, (worker,))

    # A malformed answer is permanent: failed at once, the queue's 3 retries unused.
    fake_openai.mode = "garbage"
    garbage = manager.send("analyze-story", {"storyId": story_id, "trigger": "manual"})
    assert wait_for("the failure", lambda: _finished(manager, garbage), 20, (worker,)) == "failed"
    failed = job(manager, garbage)
    assert failed["retry_count"] == 0 and failed["retry_limit"] == 3
    assert failed["output"]["name"] == "ProviderResponseInvalid"
    states = job_states(manager)
    assert not any(state in PENDING for by_state in states.values() for state in by_state), states
    assert states["analyze-story"] == {"completed": STORIES + 2, "failed": 1}
    print(f"e2e: round one {round_one:.1f}s, whole test {time.monotonic() - started:.1f}s")


def _done(manager: JobManager, sessions: sessionmaker[Session]) -> dict[str, dict[str, int]] | None:
    """Job states once every story is analysed, briefed, highlighted and scored, and no job is left."""
    now = counts(sessions)
    if now["stories"] < STORIES or now["briefed"] < STORIES or now["unscored"]:
        return None
    return settled(manager)


def _total(manager: JobManager) -> int:
    return sum(n for by_state in job_states(manager).values() for n in by_state.values())


def _finished(manager: JobManager, job_id: str) -> str | None:
    state = job(manager, job_id)["state"]
    return state if state in ("completed", "failed", "cancelled") else None


def _in_state(manager: JobManager, job_id: str, state: str) -> dict[str, Any] | None:
    found = job(manager, job_id)
    return found if found["state"] == state else None
