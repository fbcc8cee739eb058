"""What ``zeke run`` adds for the task suite: the offline demo, the first pull, and a story table.

``zeke run`` calls :func:`prepare` after ``zeke init`` (pg-boss schema, queues, schedules, app-database
migrations) and before it starts worker, beat and API::

    session = prepare(url, demo=None)      # None: decide (below)
    env.update(session.env)                # for the worker, beat and API
    ...start the children...
    session.kick(send)                     # ingest-pull and ingest-pull-youtube now, not in 5 minutes
    while running:
        report = session.poll()            # a table of the stories once the pipeline settles
    session.close()

**Demo mode** (``--demo``; by default only on the embedded database, and there only while it has no
sources besides demo ones, as on a fresh machine: a real ``DATABASE_PRIMARY_URL`` never gets demo data
unless ``--demo`` asks for it) serves the sample feeds and pages of :mod:`tasks.samples` on 127.0.0.1
(port ``ZEKE_SAMPLES_PORT``, default 8001, or any free one), registers them as sources marked
``metadata.demo`` (re-pointed at the server on later runs, so they are never duplicated), lets fetches
reach 127.0.0.1 (``ZEKE_ALLOWED_NETWORKS``), points ``YOUTUBE_FEED_BASE`` at the sample channel feed
and sets ``ZEKE_DEMO`` so the run's pulls take the demo sources. The first pull is forced, so every
run shows the pipeline working. Demo sources never outlive their run: :meth:`RunSession.close` pauses
them, and a process without ``ZEKE_DEMO`` never pulls one anyway (a run killed before it could
close). Without demo mode (real sources exist, a real database, or ``--no-demo``) demo sources are
paused, since nothing serves them, and the first pull takes only the sources that are due.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from tasks import db
from tasks.db.models import Highlight, Source, Story, StoryAnalysis
from tasks.lib.sources import DEMO_KEY
from tasks.registry_data import BY_ID
from tasks.samples import sample_sources, serve_samples, youtube_feed_base
from zeke.database import is_embedded

DEFAULT_SAMPLES_PORT = 8001
#: Networks the demo's fetches must reach (the sample server).
DEMO_NETWORK = "127.0.0.1/32"
#: Seconds between looks at the database.
POLL_INTERVAL = 1.5
#: A table is shown this long after the first pull even if the pipeline is still busy.
SHOW_AFTER = 60.0
#: Rows in the story table.
TABLE_ROWS = 20
PENDING_STATES = ("created", "retry", "active")


@dataclass
class Report:
    """A table for the terminal: a title line, rows and their columns."""

    title: str
    rows: list[dict[str, Any]]
    columns: tuple[str, ...]
    #: Commands to try on what the run produced, as ``(what, command)``; ``{zeke}`` stands for the
    #: ``zeke`` executable, which the caller knows.
    examples: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class RunSession:
    url: str
    demo: bool
    #: Extra environment for the worker, beat and API.
    env: dict[str, str] = field(default_factory=dict)
    #: Lines worth printing at start-up.
    notes: list[str] = field(default_factory=list)
    sample_url: str | None = None
    _stop_samples: Callable[[], None] | None = None
    _kicked_at: float | None = None
    _next_poll: float = 0.0
    _shown: tuple[int, ...] | None = None

    @property
    def sessions(self) -> sessionmaker[Session]:
        return db.session_factory(self.url)

    def kick(self, send: Callable[[str, dict[str, Any]], Any]) -> list[Any]:
        """Pull now: ``send(task_id, payload)`` for ingest-pull and ingest-pull-youtube."""
        payload = {"reason": "manual", "force": self.demo}
        sent = [send(task_id, payload) for task_id in ("ingest-pull", "ingest-pull-youtube")]
        self._kicked_at = time.monotonic()
        return sent

    def poll(self, now: float | None = None) -> Report | None:
        """A story table when the pipeline has settled on something not shown yet (or after
        :data:`SHOW_AFTER` seconds, settled or not); None otherwise. Cheap to call often."""
        now = time.monotonic() if now is None else now
        if self._kicked_at is None or now < self._next_poll:
            return None
        self._next_poll = now + POLL_INTERVAL
        pending = pending_jobs()
        counts = story_counts(self.sessions)
        elapsed = now - self._kicked_at
        settled = pending == 0
        if not (settled or (self._shown is None and elapsed >= SHOW_AFTER)):
            return None
        if counts == self._shown or (self._shown is not None and not settled):
            return None
        self._shown = counts
        stories, analysed, briefed, scored = counts
        state = "pipeline idle" if settled else f"{pending} jobs still queued or running"
        title = (
            f"{stories} stories, {analysed} analysed, {briefed} briefed, {scored} with scored highlights "
            f"({state}, {elapsed:.0f}s after the first pull)"
        )
        return Report(title, story_rows(self.sessions), STORY_COLUMNS, examples(self.sessions))

    def close(self) -> None:
        """Stop the sample server and pause the demo sources: nothing serves them any more."""
        if self._stop_samples is not None:
            self._stop_samples()
            self._stop_samples = None
        if self.demo:
            pause_demo_sources(self.sessions)


def prepare(url: str, demo: bool | None = None) -> RunSession:
    """Decide on demo mode (None: on the embedded database when it has no other sources), start the
    sample server and register its sources if so, or pause the demo sources if not."""
    sessions = db.session_factory(url)
    if demo is None:
        demo = is_embedded(url) and not other_sources(sessions)
    session = RunSession(url, demo)
    if not demo:
        paused = pause_demo_sources(sessions)
        active = other_sources(sessions)
        session.notes.append(f"{active} active sources; pulling the due ones now")
        if not active and not is_embedded(url):
            session.notes.append("no demo data on DATABASE_PRIMARY_URL unless asked: zeke run --demo")
        if paused:
            session.notes.append(f"{paused} demo sources paused (zeke run --demo serves them)")
        return session
    base, stop = _serve()
    session.sample_url, session._stop_samples = base, stop
    registered = register_demo_sources(sessions, base)
    networks = [n for n in os.environ.get("ZEKE_ALLOWED_NETWORKS", "").split(",") if n.strip()]
    session.env = {
        "ZEKE_ALLOWED_NETWORKS": ",".join(dict.fromkeys([*networks, DEMO_NETWORK])),
        "YOUTUBE_FEED_BASE": youtube_feed_base(base),
        "ZEKE_DEMO": "1",
    }
    provider = "OpenAI" if os.environ.get("OPENAI_API_KEY") else "the offline provider (no OPENAI_API_KEY)"
    session.notes.append(f"demo: sample feeds at {base}/ ({registered} demo sources); AI: {provider}")
    return session


def _serve() -> tuple[str, Callable[[], None]]:
    port = int(os.environ.get("ZEKE_SAMPLES_PORT", "").strip() or DEFAULT_SAMPLES_PORT)
    try:
        return serve_samples(port)
    except OSError:  # taken: any free port (the demo sources are re-pointed at it)
        return serve_samples(0)


# -- sources ---------------------------------------------------------------------------------------


def _is_demo() -> Any:
    return Source.metadata_.has_key(DEMO_KEY)


def other_sources(sessions: sessionmaker[Session]) -> int:
    """Active sources that are not demo sources."""
    with sessions() as session:
        query = select(func.count()).select_from(Source).where(~_is_demo(), Source.active.is_(True))
        return session.scalar(query) or 0


def pause_demo_sources(sessions: sessionmaker[Session]) -> int:
    with sessions.begin() as session:
        paused = update(Source).where(_is_demo(), Source.active.is_(True)).values(active=False)
        result = session.execute(paused)
        return result.rowcount or 0


def register_demo_sources(sessions: sessionmaker[Session], base_url: str) -> int:
    """The sample sources, pointed at ``base_url``: one row per sample across runs, whatever the port."""
    with sessions.begin() as session:
        rows = sample_sources(base_url)
        for row in rows:
            key = row["url"].removeprefix(base_url)
            source = session.scalars(select(Source).where(Source.metadata_[DEMO_KEY].astext == key)).first()
            if source is None:  # maybe registered by tasks.samples.seed_sources, unmarked
                source = session.scalars(
                    select(Source).where(Source.type == row["type"], Source.url == row["url"])
                ).first()
            if source is None:
                source = Source(check_interval_seconds=300, metadata_={})
                session.add(source)
            if source.url != row["url"]:
                source.etag = source.last_modified = source.next_check_at = None
            source.type, source.name, source.url, source.authority = (
                row["type"],
                row["name"],
                row["url"],
                row["authority"],
            )
            source.active = True
            source.metadata_ = {**(source.metadata_ or {}), DEMO_KEY: key}
        return len(rows)


# -- the report --------------------------------------------------------------------------------------

STORY_COLUMNS = ("title", "kind", "chili", "provider", "one_liner", "highlights")


def story_counts(sessions: sessionmaker[Session]) -> tuple[int, int, int, int]:
    """Stories; analysed; briefed; with every highlight scored (and at least one)."""
    unscored = (
        select(Highlight.id)
        .where(Highlight.story_id == Story.id, Highlight.relevance_score.is_(None))
        .exists()
    )
    any_highlight = select(Highlight.id).where(Highlight.story_id == Story.id).exists()
    with sessions() as session:
        stories = session.scalar(select(func.count()).select_from(Story)) or 0
        analysed = session.scalar(
            select(func.count()).select_from(StoryAnalysis).where(StoryAnalysis.analyzed_at.is_not(None))
        )
        briefed = session.scalar(
            select(func.count()).select_from(StoryAnalysis).where(StoryAnalysis.one_liner.is_not(None))
        )
        scored = session.scalar(select(func.count()).select_from(Story).where(any_highlight, ~unscored))
    return stories, analysed or 0, briefed or 0, scored or 0


def story_rows(sessions: sessionmaker[Session], limit: int = TABLE_ROWS) -> list[dict[str, Any]]:
    """The newest stories with their analysis and brief, for the terminal."""
    highlights = (
        select(func.count()).select_from(Highlight).where(Highlight.story_id == Story.id).scalar_subquery()
    )
    query = (
        select(Story, StoryAnalysis, highlights)
        .outerjoin(StoryAnalysis, StoryAnalysis.story_id == Story.id)
        .order_by(Story.published_at.desc().nulls_last(), Story.created_at.desc())
        .limit(limit)
    )
    with sessions() as session:
        return [
            {
                "title": _cut(story.title or story.url or str(story.id), 44),
                "kind": story.kind,
                "chili": analysis.chili if analysis else None,
                "provider": analysis.provider if analysis else None,
                "one_liner": _cut(analysis.one_liner, 72) if analysis else None,
                "highlights": count,
            }
            for story, analysis, count in session.execute(query)
        ]


def examples(sessions: sessionmaker[Session]) -> list[tuple[str, str]]:
    """Commands on real ids of this database: the newest story and the newest analyze-story job."""
    from transport.monitor import Monitor
    from zeke.client import get_manager

    with sessions() as session:
        newest = Story.published_at.desc().nulls_last(), Story.created_at.desc()
        story = session.scalar(select(Story.id).order_by(*newest).limit(1))
    out: list[tuple[str, str]] = []
    jobs = Monitor(get_manager()).recent_jobs(name="analyze-story", limit=1)
    if jobs:
        out.append(("an analyze-story job", f"{{zeke}} status {jobs[0]['id']}"))
    if story is not None:
        payload = json.dumps({"storyId": str(story)})
        out.append(("analyse a story again", f"{{zeke}} send analyze-story '{payload}'"))
    return out


def _cut(text: str | None, width: int) -> str | None:
    if text is None:
        return None
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def pending_jobs() -> int:
    """Jobs of the suite's queues not finished yet (created, retry, active)."""
    from transport.monitor import Monitor
    from zeke.client import get_manager

    monitor = Monitor(get_manager())
    return sum(
        row["count"]
        for task_id in BY_ID
        for row in monitor.state_counts(name=task_id)
        if row["state"] in PENDING_STATES
    )
