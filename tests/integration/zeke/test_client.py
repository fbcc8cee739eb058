"""zeke.client against a real PostgreSQL: send, bulk send, status, cancel, retry, the caller's
transaction (psycopg2 and SQLAlchemy 2), clear errors that leave nothing behind, and the embedded
pgserver database on a machine without DATABASE_PRIMARY_URL.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from transport import outputs
from transport.db import Database, dsn_from_url
from transport.exceptions import InvalidJobId, InvalidOption, InvalidPayload, InvalidQueueName, QueueNotFound
from transport.manager import JobManager
from zeke import client

pytestmark = pytest.mark.own_database("client")

ROOT = Path(__file__).resolve().parents[3]
TASK = "zeke.test-task"


@pytest.fixture
def boss(make_boss: Callable[..., JobManager]) -> Iterator[JobManager]:
    """The client's manager for this test: a fresh schema with one queue, TASK."""
    manager = make_boss()
    manager.create_queue(TASK)
    previous = client.set_manager(manager)
    yield manager
    client.set_manager(previous)


@pytest.fixture(scope="module")
def shared_boss(database: Database) -> Iterator[JobManager]:
    """One schema with TASK for the bad-input tests, which must leave it empty."""
    manager = JobManager(database, "t_" + uuid.uuid4().hex[:12])
    manager.create_queue(TASK)
    yield manager
    with database.cursor() as cur:
        cur.execute(f'DROP SCHEMA IF EXISTS "{manager.schema}" CASCADE')


@pytest.fixture
def quiet_boss(shared_boss: JobManager) -> Iterator[JobManager]:
    previous = client.set_manager(shared_boss)
    yield shared_boss
    client.set_manager(previous)


def count(boss: JobManager, table: str = "job") -> int:
    with boss.db.cursor() as cur:
        cur.execute(f'SELECT count(*) AS n FROM "{boss.schema}".{table}')
        return int(cur.fetchone()["n"])


def iso(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value is not None else None


# -- send_job / get_job_status ----------------------------------------------------------------------


def test_send_job_and_read_its_status(boss: JobManager) -> None:
    before = boss.now()
    sent = client.send_job(TASK, {"url": "https://example.org", "n": 3})
    after = boss.now()
    assert sent == {"id": sent["id"], "status": "created", "taskId": TASK}
    assert str(uuid.UUID(sent["id"])) == sent["id"]

    status = client.get_job_status(sent["id"])
    assert status is not None
    assert {k: status[k] for k in ("id", "status", "taskId", "data", "output")} == {
        "id": sent["id"],
        "status": "created",
        "taskId": TASK,
        "data": {"url": "https://example.org", "n": 3},
        "output": None,
    }
    # The queue's (seed) defaults, copied into the job.
    assert (status["retryLimit"], status["retryDelay"], status["retryBackoff"]) == (3, 1, True)
    assert (status["retryCount"], status["priority"], status["policy"]) == (0, 0, "standard")
    assert (status["expireInSeconds"], status["deleteAfterSeconds"]) == (3600, 7 * 24 * 3600)
    assert before <= iso(status["createdOn"]) <= after
    assert iso(status["startAfter"]) == iso(status["createdOn"])
    assert status["startedOn"] is None and status["completedOn"] is None
    assert iso(status["keepUntil"]) == iso(status["startAfter"]) + dt.timedelta(days=14)
    json.dumps(status)  # JSON as is


def test_send_job_options(boss: JobManager) -> None:
    boss.create_queue("dead")
    at = dt.datetime(2031, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    sent = client.send_job(
        TASK, {"a": 1}, priority=7, start_after=at, singleton_key="k", retry_limit=1, dead_letter="dead"
    )
    status = client.get_job_status(sent["id"])
    assert (status["priority"], status["singletonKey"], status["retryLimit"], status["deadLetter"]) == (
        7,
        "k",
        1,
        "dead",
    )
    assert iso(status["startAfter"]) == at


def test_send_job_with_own_id(boss: JobManager) -> None:
    job_id = str(uuid.uuid4())
    assert client.send_job(TASK, {}, id=job_id) == {"id": job_id, "status": "created", "taskId": TASK}
    # The same id again is deduplicated, like any other conflict.
    assert client.send_job(TASK, {}, id=job_id) == {"id": None, "status": "deduplicated", "taskId": TASK}


def test_deduplicated_send(boss: JobManager) -> None:
    first = client.send_job(TASK, {"i": 1}, singleton_key="feed", singleton_seconds=3600)
    second = client.send_job(TASK, {"i": 2}, singleton_key="feed", singleton_seconds=3600)
    assert first["status"] == "created"
    assert second == {"id": None, "status": "deduplicated", "taskId": TASK}
    assert count(boss) == 1


def test_status_follows_the_job(boss: JobManager) -> None:
    sent = client.send_job(TASK, {"x": 1})
    [job] = boss.fetch([TASK])
    running = client.get_job_status(sent["id"])
    assert running["status"] == "active" and running["startedOn"] is not None
    boss.complete(TASK, [(job.id, "done", job.retry_count)])
    done = client.get_job_status(sent["id"])
    assert (done["status"], done["output"]) == ("completed", {"value": "done"})
    assert iso(done["completedOn"]) >= iso(running["startedOn"])


def test_status_hides_the_celery_envelope(boss: JobManager) -> None:
    job_id = boss.send(TASK, {"a": 1, "__celery": {"task": "x", "args": []}})
    assert client.get_job_status(job_id)["data"] == {"a": 1}


def test_unknown_and_malformed_job_ids(boss: JobManager) -> None:
    unknown = str(uuid.uuid4())
    assert client.get_job_status(unknown) is None
    assert client.cancel_job(unknown) is None
    assert client.retry_job(unknown) is None
    for bad in ("nope", "", "1; DROP TABLE job", None):
        with pytest.raises(InvalidJobId):
            client.get_job_status(bad)


# -- cancel / retry -------------------------------------------------------------------------------


def test_cancel_job(boss: JobManager) -> None:
    sent = client.send_job(TASK, {})
    cancelled = client.cancel_job(sent["id"])
    assert (cancelled["status"], cancelled["changed"]) == ("cancelled", True)
    assert cancelled["completedOn"] is not None
    again = client.cancel_job(sent["id"])
    assert (again["status"], again["changed"]) == ("cancelled", False)


def test_cancel_active_job(boss: JobManager) -> None:
    sent = client.send_job(TASK, {})
    boss.fetch([TASK])
    assert client.cancel_job(sent["id"])["status"] == "cancelled"
    assert boss.complete(TASK, [(sent["id"], "late", 0)]) == []  # the worker's late result is ignored


def test_retry_job(boss: JobManager) -> None:
    sent = client.send_job(TASK, {}, retry_limit=0)
    not_failed = client.retry_job(sent["id"])
    assert (not_failed["status"], not_failed["changed"]) == ("created", False)
    boss.fetch([TASK])
    boss.fail(TASK, [sent["id"]], outputs.error_output(RuntimeError("nope")))
    assert client.get_job_status(sent["id"])["status"] == "failed"
    retried = client.retry_job(sent["id"])
    assert (retried["status"], retried["changed"], retried["retryLimit"]) == ("retry", True, 1)
    assert retried["completedOn"] is None
    assert retried["output"]["message"] == "nope"  # the last error stays until the job completes
    [job] = boss.fetch([TASK])
    assert (job.id, job.retry_count) == (sent["id"], 1)


# -- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [None, [1, 2], "text", 3, {"__celery": {"task": "evil"}}, {1: "key"}, {"x": float("nan")}, {"s": {1}}],
    ids=["none", "list", "str", "int", "reserved-key", "int-key", "nan", "set"],
)
def test_payload_must_be_a_json_object(quiet_boss: JobManager, payload: Any) -> None:
    with pytest.raises(InvalidPayload):
        client.send_job(TASK, payload)
    with pytest.raises(InvalidPayload):
        client.send_jobs(TASK, [{"ok": True}, payload])
    assert count(quiet_boss) == 0


def test_unknown_queue_is_not_created(quiet_boss: JobManager) -> None:
    with pytest.raises(QueueNotFound, match="no-such-task"):
        client.send_job("no-such-task", {})
    with pytest.raises(QueueNotFound):
        client.send_jobs("no-such-task", [{}, {}])
    assert (count(quiet_boss), count(quiet_boss, "queue")) == (0, 1)


@pytest.mark.parametrize("task_id", ["", "a b", "x'; DROP TABLE job; --", "__pgboss__send-it", "t" * 300])
def test_invalid_task_id(quiet_boss: JobManager, task_id: str) -> None:
    with pytest.raises(InvalidQueueName):
        client.send_job(task_id, {})
    assert (count(quiet_boss), count(quiet_boss, "queue")) == (0, 1)


@pytest.mark.parametrize(
    "options",
    [{"bogus": 1}, {"data": {}}, {"priority": "high"}, {"start_after": "soon"}, {"expire_in_seconds": 0}],
    ids=["unknown", "data", "priority", "start_after", "expire"],
)
def test_invalid_options(quiet_boss: JobManager, options: dict[str, Any]) -> None:
    with pytest.raises(InvalidOption):
        client.send_job(TASK, {}, **options)
    with pytest.raises(InvalidOption):
        client.send_jobs(TASK, [{}], **options)
    assert count(quiet_boss) == 0


# -- send_jobs ------------------------------------------------------------------------------------


def test_send_jobs_in_one_statement(boss: JobManager, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    send_many = boss.send_many

    def spy(name: str, jobs: Any, **kwargs: Any) -> list[str]:
        calls.append(len(jobs))
        return send_many(name, jobs, **kwargs)

    monkeypatch.setattr(boss, "send_many", spy)
    results = client.send_jobs(TASK, [{"i": i} for i in range(5)], priority=2)
    assert calls == [5]
    assert [r["status"] for r in results] == ["created"] * 5
    statuses = [client.get_job_status(r["id"]) for r in results]
    assert [s["data"] for s in statuses] == [{"i": i} for i in range(5)]
    assert {s["priority"] for s in statuses} == {2}
    assert len({s["createdOn"] for s in statuses}) == 1  # one statement, one transaction time
    assert client.send_jobs(TASK, []) == []


def test_send_jobs_reports_deduplicated_ones_in_order(boss: JobManager) -> None:
    payloads = [{"i": 0}, {"i": 1}, {"i": 2}]
    results = client.send_jobs(TASK, payloads, singleton_key="k", singleton_seconds=3600)
    assert [r["status"] for r in results] == ["created", "deduplicated", "deduplicated"]
    assert client.get_job_status(results[0]["id"])["data"] == {"i": 0}
    assert count(boss) == 1


# -- the caller's transaction ---------------------------------------------------------------------


@pytest.fixture
def orders(boss: JobManager) -> str:
    """An application table beside the job table, to show both commit or roll back together."""
    table = f'"{boss.schema}".orders'
    with boss.db.cursor() as cur:
        cur.execute(f"CREATE TABLE {table} (id serial PRIMARY KEY, job_id uuid)")
    return table


def order_count(boss: JobManager, table: str) -> int:
    with boss.db.cursor() as cur:
        cur.execute(f"SELECT count(*) AS n FROM {table}")
        return int(cur.fetchone()["n"])


@pytest.mark.parametrize("outcome", ["commit", "rollback"])
def test_psycopg2_transaction(boss: JobManager, orders: str, db_url: str, outcome: str) -> None:
    conn = psycopg2.connect(dsn_from_url(db_url))
    try:
        with conn.cursor() as cur:
            cur.execute(f"INSERT INTO {orders} DEFAULT VALUES")
        sent = client.send_job(TASK, {"order": 1}, conn=conn)
        assert client.get_job_status(sent["id"]) is None  # not visible outside yet
        assert client.get_job_status(sent["id"], conn=conn)["status"] == "created"  # visible inside
        getattr(conn, outcome)()
    finally:
        conn.close()
    expected = 1 if outcome == "commit" else 0
    assert (count(boss), order_count(boss, orders)) == (expected, expected)
    assert (client.get_job_status(sent["id"]) is not None) == (outcome == "commit")


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(dsn_from_url(db_url).replace("postgresql://", "postgresql+psycopg2://", 1))
    yield engine
    engine.dispose()


@pytest.mark.parametrize("outcome", ["commit", "rollback"])
def test_sqlalchemy_connection(boss: JobManager, orders: str, engine: sa.Engine, outcome: str) -> None:
    with engine.connect() as conn:
        conn.execute(sa.text(f"INSERT INTO {orders} DEFAULT VALUES"))
        sent = client.send_job(TASK, {"order": 1}, conn=conn)
        bulk = client.send_jobs(TASK, [{"order": 2}, {"order": 3}], conn=conn)
        assert client.get_job_status(sent["id"]) is None
        getattr(conn, outcome)()
    expected = 3 if outcome == "commit" else 0
    assert count(boss) == expected
    assert order_count(boss, orders) == (1 if outcome == "commit" else 0)
    assert (client.get_job_status(bulk[1]["id"]) is not None) == (outcome == "commit")


@pytest.mark.parametrize("outcome", ["commit", "rollback"])
def test_sqlalchemy_session(boss: JobManager, orders: str, engine: sa.Engine, outcome: str) -> None:
    with Session(engine) as session:
        session.execute(sa.text(f"INSERT INTO {orders} DEFAULT VALUES"))
        sent = client.send_job(TASK, {"order": 1}, conn=session)
        session.execute(
            sa.text(f"UPDATE {orders} SET job_id = :job_id"), {"job_id": sent["id"]}
        )  # the caller's work continues in the same transaction
        assert client.get_job_status(sent["id"]) is None
        getattr(session, outcome)()
    expected = 1 if outcome == "commit" else 0
    assert (count(boss), order_count(boss, orders)) == (expected, expected)


def test_sqlalchemy_session_with_an_exception_rolls_back(boss: JobManager, engine: sa.Engine) -> None:
    with pytest.raises(RuntimeError), Session(engine) as session, session.begin():
        client.send_job(TASK, {"doomed": True}, conn=session)
        raise RuntimeError("the caller's work failed")
    assert count(boss) == 0


def test_queue_made_in_the_same_transaction(boss: JobManager, db_url: str) -> None:
    """A deduplicated send on a queue created earlier in the caller's (uncommitted) transaction is
    reported as deduplicated, not as an unknown queue."""
    conn = psycopg2.connect(dsn_from_url(db_url))
    try:
        boss.create_queue("fresh", policy="short", conn=conn)
        first = client.send_job("fresh", {}, singleton_key="k", conn=conn)
        second = client.send_job("fresh", {}, singleton_key="k", conn=conn)
        conn.commit()
    finally:
        conn.close()
    assert (first["status"], second["status"]) == ("created", "deduplicated")


# -- the module-level manager -----------------------------------------------------------------------


def test_get_manager_is_built_once_from_the_environment(monkeypatch: pytest.MonkeyPatch, db_url: str) -> None:
    from zeke.settings import get_settings

    monkeypatch.setenv("DATABASE_PRIMARY_URL", db_url)
    monkeypatch.setenv("ZEKE_PGBOSS_SCHEMA", "zeke_client_probe")
    get_settings.cache_clear()
    previous = client.set_manager(None)
    try:
        manager = client.get_manager()
        assert client.get_manager() is manager
        assert manager.schema == "zeke_client_probe"
        expected = psycopg2.extensions.parse_dsn(dsn_from_url(db_url))
        # The process's hub for that database: its target, with the hub's session settings.
        params = psycopg2.extensions.parse_dsn(manager.db.dsn)
        assert {key: params[key] for key in expected} == expected
        assert "-c jit=off" in params["options"] and "-c statement_timeout=30000" in params["options"]
    finally:
        client.set_manager(previous)
        get_settings.cache_clear()
        manager.db.close()


# -- the embedded database --------------------------------------------------------------------------

EMBEDDED_SCRIPT = """
import json
from zeke import client
from zeke.database import database_url
manager = client.get_manager()
manager.create_queue("embedded-task")
sent = client.send_job("embedded-task", {"hello": "embedded"})
print(json.dumps({"url": database_url(), "sent": sent, "status": client.get_job_status(sent["id"])}))
"""


@pytest.fixture
def embedded_data_dir() -> Iterator[Path]:
    """ZEKE_DATA_DIR for a subprocess; a server left running (a failed test) is stopped afterwards.

    Not under pytest's tmp_path: under root, postgres runs as the ``pgserver`` user and needs the
    directory's parents open to it, and every pytest session closes /tmp/pytest-of-root again.
    """
    base = Path(tempfile.mkdtemp(prefix="zeke-embedded-"))
    data = base / "zeke-data"
    yield data
    if (data / "pgdata" / "postmaster.pid").exists():
        import pgserver

        user = "pgserver" if os.geteuid() == 0 else None  # pgserver runs postgres as this user under root
        pgserver.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=data / "pgdata", user=user, timeout=60)
    shutil.rmtree(base, ignore_errors=True)


def _embedded_env(data: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "CELERY_", "ZEKE_"))}
    env.update(ZEKE_DATA_DIR=str(data), PYTHONPATH=str(ROOT), **extra)
    return env


def test_embedded_database_in_development_without_a_url(embedded_data_dir: Path) -> None:
    """With no URL, a development process starts the embedded server, uses it, and stops it on exit."""
    env = _embedded_env(embedded_data_dir, ZEKE_ENV="development")
    argv = [sys.executable, "-c", EMBEDDED_SCRIPT]
    done = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert "127.0.0.1:5432" not in result["url"]  # not the test server: the embedded one
    assert (embedded_data_dir / "pgdata" / "PG_VERSION").exists()
    assert result["sent"]["status"] == "created"
    status = result["status"]
    assert (status["id"], status["status"], status["taskId"], status["data"]) == (
        result["sent"]["id"],
        "created",
        "embedded-task",
        {"hello": "embedded"},
    )
    # The process that started the server stopped it: nothing outlives the command.
    assert not (embedded_data_dir / "pgdata" / "postmaster.pid").exists()


def test_without_a_url_production_refuses_in_one_line(embedded_data_dir: Path) -> None:
    env = _embedded_env(embedded_data_dir)  # ZEKE_ENV unset: production
    argv = [sys.executable, "-c", EMBEDDED_SCRIPT]
    done = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "DATABASE_PRIMARY_URL is not set" in done.stderr
    assert not embedded_data_dir.exists()  # no server, no data directory
    for argv in (
        [sys.executable, "-m", "zeke.cli", "jobs"],
        [sys.executable, "-m", "celery", "-A", "zeke", "inspect", "ping"],
        [sys.executable, "-m", "celery", "-A", "zeke", "worker"],
    ):
        done = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert done.returncode == 3, (argv, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr
        assert done.stderr.strip().splitlines()[-1].startswith("Error: DATABASE_PRIMARY_URL is not set"), argv
    assert not embedded_data_dir.exists()


def test_zeke_db_commands_manage_the_embedded_server(embedded_data_dir: Path) -> None:
    env = _embedded_env(embedded_data_dir)

    def zeke_db(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "zeke.cli", "db", *args]
        return subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)

    assert zeke_db("status").returncode == 1
    assert zeke_db("url").returncode == 1
    started = zeke_db("start")
    assert started.returncode == 0, started.stderr
    url = started.stdout.strip()
    assert str(embedded_data_dir / "pgdata") in url  # its socket lives in the data directory
    # It outlives `zeke db start` (that is what it is for) and serves other processes.
    assert zeke_db("url").stdout.strip() == url
    status = json.loads(zeke_db("status", "--json").stdout)
    assert status == {"running": True, "url": url, "data": str(embedded_data_dir / "pgdata")}
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT 1")
        assert cur.fetchone() == (1,)
    conn.close()
    # A development process attaches to it and leaves it running: it did not start it.
    dev = _embedded_env(embedded_data_dir, ZEKE_ENV="development")
    argv = [sys.executable, "-c", EMBEDDED_SCRIPT]
    done = subprocess.run(argv, env=dev, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["url"] == url
    assert zeke_db("status").returncode == 0
    stopped = zeke_db("stop")
    assert stopped.returncode == 0, stopped.stderr
    assert zeke_db("status").returncode == 1
    assert not (embedded_data_dir / "pgdata" / "postmaster.pid").exists()
