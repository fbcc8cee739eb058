"""Shared fixtures: a real PostgreSQL (DATABASE_PRIMARY_URL, else the embedded pgserver one, started for
the session and stopped after it when the session started it)."""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.acceptance.broker_workers import BrokerEnv, drop_env, make_env
from tests.cluster import ThrowawayCluster
from tests.dbutil import created_database, own_database, unique_name
from tests.node_fixtures import NodeBoss, installed_node_dir
from tests.tasks.helpers import WebServer
from transport.db import Database
from transport.manager import JobManager
from zeke import embedded
from zeke.database import configured_url

#: One database per pytest session (and per xdist worker), so sessions sharing a server never drop each
#: other's database. ZEKE_TEST_DB names it instead; it must not exist yet.
TEST_DB = os.environ.get("ZEKE_TEST_DB") or unique_name("zeke_test")


@pytest.fixture(scope="session")
def admin_url() -> Iterator[str]:
    url = configured_url()
    if url is not None:
        yield url
        return
    url, started = embedded.start()
    # Worker, beat and CLI processes of the tests inherit it.
    os.environ["DATABASE_PRIMARY_URL"] = url
    handed_over = started and _hand_over_embedded()
    try:
        yield url
    finally:
        os.environ.pop("DATABASE_PRIMARY_URL", None)
        if started and not handed_over:
            embedded.stop()


#: Under xdist: a file the controller made, which the worker that starts the embedded server writes
#: to. Workers end one by one, and the others still use the server; the controller stops it last.
_EMBEDDED_MARK = "ZEKE_TEST_EMBEDDED_STARTED"


def _hand_over_embedded() -> bool:
    mark = os.environ.get(_EMBEDDED_MARK)
    if not mark or not os.environ.get("PYTEST_XDIST_WORKER"):
        return False
    Path(mark).write_text("started")
    return True


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput") and configured_url() is None:  # the session's controller
        handle, mark = tempfile.mkstemp(prefix="zeke-embedded-")
        os.close(handle)
        os.unlink(mark)
        os.environ[_EMBEDDED_MARK] = mark
    config.addinivalue_line(
        "markers",
        "own_database(prefix): the module's db_url and database are a database of its own "
        "(zeke_<prefix>_<random>, dropped after the module) instead of the session's",
    )


def pytest_unconfigure(config: pytest.Config) -> None:
    mark = os.environ.get(_EMBEDDED_MARK)
    if mark and not hasattr(config, "workerinput") and os.path.exists(mark):
        os.unlink(mark)
        embedded.stop()  # a worker of this session started it


@pytest.fixture(scope="session")
def session_db_url(admin_url: str) -> Iterator[str]:
    """A fresh database for this test session, dropped at the end."""
    with created_database(admin_url, TEST_DB) as url:
        os.environ["ZEKE_TEST_DATABASE_URL"] = url
        yield url


@pytest.fixture(scope="session")
def session_database(session_db_url: str) -> Iterator[Database]:
    db = Database(session_db_url, max_connections=16, application_name="zeke-tests")
    yield db
    db.close()


def _own_database_prefix(request: pytest.FixtureRequest) -> str | None:
    """The prefix of a module marked ``own_database(prefix)``, else None."""
    marker = request.node.get_closest_marker("own_database")
    return None if marker is None else marker.args[0]


@pytest.fixture(scope="module")
def db_url(request: pytest.FixtureRequest, admin_url: str) -> Iterator[str]:
    """The test database: the session's, or one of the module's own when the module is marked
    ``pytest.mark.own_database(prefix)`` (its tests then never meet other modules' rows)."""
    prefix = _own_database_prefix(request)
    if prefix is None:
        yield request.getfixturevalue("session_db_url")
        return
    with own_database(admin_url, prefix) as url:
        yield url


@pytest.fixture(scope="module")
def database(request: pytest.FixtureRequest, db_url: str) -> Iterator[Database]:
    """A connection pool on :func:`db_url` (the session's pool unless the module has its own database)."""
    if _own_database_prefix(request) is None:
        yield request.getfixturevalue("session_database")
        return
    db = Database(db_url, max_connections=16, application_name="zeke-tests")
    yield db
    db.close()


@pytest.fixture
def make_boss(database: Database) -> Iterator[Callable[..., JobManager]]:
    """Factory: a JobManager on a schema of its own (created on first use, dropped afterwards)."""
    made: list[str] = []

    def make(schema: str | None = None) -> JobManager:
        schema = schema or "t_" + uuid.uuid4().hex[:12]
        made.append(schema)
        return JobManager(database, schema)

    yield make
    with database.cursor() as cur:
        for schema in made:
            cur.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            cur.execute(f'DROP SCHEMA IF EXISTS "{schema}_zeke" CASCADE')


@pytest.fixture
def boss(make_boss: Callable[..., JobManager]) -> JobManager:
    return make_boss()


@pytest.fixture(scope="session")
def _web() -> Iterator[WebServer]:
    server = WebServer()
    yield server
    server.close()


@pytest.fixture
def web(_web: WebServer) -> WebServer:
    """A local HTTP server serving tests/fixtures and routes a test adds (reset for each test)."""
    _web.reset()
    return _web


@pytest.fixture(scope="session")
def node_dir() -> Path:
    """tests/node with its node_modules installed (npm ci), or the test fails: never a skip."""
    return installed_node_dir()


@pytest.fixture(scope="session")
def node_boss(node_dir: Path) -> NodeBoss:
    return NodeBoss(node_dir)


@pytest.fixture
def scratch_db(admin_url: str) -> Iterator[Callable[[str], str]]:
    """Factory: a new empty database named ``<prefix>_<pid>_<random>``, returning its URL; each is
    dropped afterwards."""
    with contextlib.ExitStack() as made:

        def make(prefix: str = "zeke_scratch") -> str:
            return made.enter_context(created_database(admin_url, unique_name(prefix)))

        yield make


@pytest.fixture(scope="session")
def broker_env(
    session_db_url: str, session_database: Database, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BrokerEnv]:
    """One schema and two workers (w1, w2: prefork -c 2, task events on) for the whole session,
    shared by the acceptance and chaos modules."""
    env = make_env(session_db_url, session_database, tmp_path_factory.mktemp("broker-workers"))
    try:
        queues = ["celery", "fragile", "analyze-story", "story-routed"]
        workers = [env.worker(name, queues, args=["-E"]).start(wait=False) for name in ("w1", "w2")]
        for worker in workers:
            worker.wait_ready()
        yield env
    finally:
        drop_env(env)


@pytest.fixture(scope="module")
def cluster() -> Iterator[ThrowawayCluster]:
    """A PostgreSQL server of the module's own (see :mod:`tests.cluster`)."""
    server = ThrowawayCluster()
    try:
        yield server
    finally:
        server.remove()
