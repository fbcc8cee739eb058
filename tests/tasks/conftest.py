"""Fixtures for the task suite: an app database of our own (migrated with tasks.db.upgrade), emptied
before each test; a recording ctx; a local web server; a fake OpenAI server."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import delete
from sqlalchemy.orm import Session, sessionmaker

from tasks.db import dispose_all, session_factory, upgrade
from tasks.db.models import Base, RawItem, Source, Story
from tasks.lib.store import store_document
from tasks.lib.text import Extracted
from tasks.settings import TaskSettings
from tests.dbutil import created_database, unique_name
from tests.tasks.helpers import FakeOpenAI, RecordingContext


@pytest.fixture(scope="session")
def db_url(admin_url: str) -> Iterator[str]:
    """The app's tables in a database of this run's own (the transport's session database is shared
    with suites that make and drop schemas of their own)."""
    with created_database(admin_url, unique_name("zeke_test_tasks")) as url:
        yield url


@pytest.fixture(scope="session")
def app_db(db_url: str) -> Iterator[sessionmaker[Session]]:
    upgrade(db_url)
    yield session_factory(db_url)
    dispose_all()


@pytest.fixture
def sessions(app_db: sessionmaker[Session]) -> sessionmaker[Session]:
    with app_db.begin() as session:
        for table in reversed(Base.metadata.sorted_tables):
            session.execute(delete(table))
    return app_db


@pytest.fixture
def settings() -> TaskSettings:
    """Offline (no OpenAI key), local fetches allowed, short timeouts."""
    return TaskSettings(
        allow_private_urls=True, fetch_timeout=3.0, default_retry_after=5.0, openai_timeout=1.0
    )


@pytest.fixture
def ctx(settings: TaskSettings, sessions: sessionmaker[Session]) -> RecordingContext:
    return RecordingContext(settings, sessions)


@pytest.fixture(scope="session")
def _openai() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI()
    yield server
    server.close()


@pytest.fixture
def fake_openai(_openai: FakeOpenAI) -> FakeOpenAI:
    _openai.reset()
    return _openai


@pytest.fixture
def openai_ctx(ctx: RecordingContext, fake_openai: FakeOpenAI) -> RecordingContext:
    """A ctx whose settings point the real openai client at the fake server."""
    return ctx.with_settings(
        openai_api_key="sk-test-not-a-real-key",
        openai_base_url=fake_openai.base_url,
        openai_model="gpt-4o-mini",
    )


def add(session_factory: sessionmaker[Session], *rows: Any) -> None:
    with session_factory.begin() as session:
        session.add_all(rows)


def make_story(
    session_factory: sessionmaker[Session],
    text: str,
    *,
    title: str | None = "A story",
    url: str | None = "https://news.test/story",
    published_at: dt.datetime | None = None,
    authority: float | None = 0.8,
    kind: str = "article",
) -> uuid.UUID:
    """A source, raw item, content and story for ``text``; returns the story id."""
    with session_factory.begin() as session:
        source = Source(type="rss", url=f"https://feeds.test/{uuid.uuid4().hex}", authority=authority or 0.5)
        session.add(source)
        session.flush()
        raw = RawItem(
            source_id=source.id, external_id=uuid.uuid4().hex, url=url, canonical_url=url, title=title
        )
        session.add(raw)
        session.flush()
        stored = store_document(
            session, raw, Extracted(text, title), content_type="text", story_kind=kind, html_url=url
        )
        story = session.get_one(Story, stored.story_id)
        story.published_at = published_at
        if authority is None:  # no known source
            story.source_id = None
        return stored.story_id
