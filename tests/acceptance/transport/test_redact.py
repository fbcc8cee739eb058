"""A database password in the URL shows nowhere: not in the worker's banner and logs, ``celery inspect
stats|conf|active_queues``, ``celery report``, events, Flower's worker API, kombu's ``as_uri`` and
``repr``, the result backend's URI, the CLI's output and errors (an unreachable server, a malformed
URL), nor in job output.

The worker runs as a role of the test's own with a password, over TCP to 127.0.0.1 when the test
server is reached that way (the server's pg_hba may trust it; the password is in the URL either way,
which is what must not leak).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg2
import pytest

from tests.acceptance.broker_workers import Output
from tests.dbutil import admin_execute, with_database
from transport.db import dsn_from_url

ROOT = Path(__file__).resolve().parents[3]
TOKEN = uuid.uuid4().hex[:10]
ROLE = f"zeke_secret_{TOKEN}"
#: Characters that URLs percent-encode, so both spellings are looked for.
PASSWORD = f"S3cr@t/{TOKEN}:pw"
FORMS = (PASSWORD, quote(PASSWORD, safe=""), quote(PASSWORD))


def _with_credentials(url: str, user: str, password: str) -> str:
    parts = urlsplit(dsn_from_url(url))
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:{quote(password, safe='')}@{host}"))


@pytest.fixture(scope="module")
def secret_url(admin_url: str) -> Iterator[str]:
    name = f"zeke_secret_{TOKEN}"
    admin_execute(admin_url, f"CREATE ROLE \"{ROLE}\" LOGIN PASSWORD '{PASSWORD}'")
    admin_execute(admin_url, f'CREATE DATABASE "{name}" OWNER "{ROLE}"')
    try:
        yield _with_credentials(with_database(admin_url, name), ROLE, PASSWORD)
    finally:
        admin_execute(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin_execute(admin_url, f'DROP ROLE IF EXISTS "{ROLE}"')


def _env(url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CELERY_", "ZEKE_", "DATABASE_"))}
    env.update(
        DATABASE_PRIMARY_URL=url,
        ZEKE_TASK_MODULES="tests.app.sample_tasks",
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
        FLOWER_UNAUTHENTICATED_API="true",
        **extra,
    )
    return env


def _run(env: dict[str, str], *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


CELERY = (sys.executable, "-m", "celery", "-A", "zeke")
ZEKE = (sys.executable, "-m", "zeke.cli")


def _wait(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def _stop(proc: subprocess.Popen[str]) -> str:
    if proc.poll() is None:
        proc.terminate()
    try:
        return proc.communicate(timeout=30)[0]
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()[0]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _assert_secret_free(shown: dict[str, str]) -> None:
    leaks = [name for name, text in shown.items() for form in FORMS if form in text]
    assert not leaks, f"the password shows in: {sorted(set(leaks))}"


def test_no_password_in_what_a_running_worker_shows(secret_url: str) -> None:
    env = _env(secret_url)
    shown: dict[str, str] = {}
    init = _run(env, *ZEKE, "init", "--json")
    assert init.returncode == 0, init.stderr
    shown["zeke init"] = init.stdout + init.stderr

    worker = subprocess.Popen(
        [*CELERY, "worker", "-n", "secret@test", "-E", "-c", "1", "-l", "info"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    events = flower = None
    try:

        def pong() -> bool:
            done = _run(env, *CELERY, "inspect", "ping", "--timeout", "2", "--json")
            return done.returncode == 0 and "pong" in done.stdout

        _wait(pong, 60, "the worker to answer ping")
        events = subprocess.Popen(
            [*CELERY, "events", "--dump"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        port = _free_port()
        flower = subprocess.Popen(
            [*CELERY, "flower", f"--port={port}", "--address=127.0.0.1"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        sent = [
            json.loads(_run(env, *ZEKE, "send", task, payload, "--json").stdout)["id"]
            for task, payload in (("t-echo", '{"message": "hi"}'), ("t-boom", '{"message": "kaput"}'))
        ]

        def settled() -> bool:
            states = [json.loads(_run(env, *ZEKE, "status", job, "--json").stdout)["status"] for job in sent]
            return states == ["completed", "failed"]

        _wait(settled, 60, "both jobs to settle")
        for command in ("stats", "conf", "active_queues", "registered"):
            done = _run(env, *CELERY, "inspect", command, "--timeout", "3", "--json")
            assert done.returncode == 0, done.stderr
            shown[f"inspect {command}"] = done.stdout + done.stderr
        stats = json.loads(shown["inspect stats"].strip().splitlines()[-1])
        broker = stats["secret@test"]["broker"]
        assert ROLE in json.dumps(broker)  # the broker is reported, only without its password
        done = _run(env, *CELERY, "report")
        shown["celery report"] = done.stdout + done.stderr

        def workers() -> str | None:
            try:
                url = f"http://127.0.0.1:{port}/api/workers?refresh=1"
                with urllib.request.urlopen(url, timeout=10) as response:
                    body = response.read().decode()
            except OSError:
                return None
            return body if "secret@test" in body else None

        shown["flower /api/workers"] = _wait(workers, 30, "Flower's worker API")
        shown["zeke jobs"] = _run(env, *ZEKE, "jobs", "--json").stdout
    finally:
        if flower is not None:
            shown["flower output"] = _stop(flower)
        if events is not None:
            shown["celery events --dump"] = _stop(events)
        shown["worker log"] = _stop(worker)
    assert "secret@test ready" in shown["worker log"]
    assert "worker-heartbeat" in shown["celery events --dump"] or "heartbeat" in shown["celery events --dump"]
    with psycopg2.connect(dsn_from_url(secret_url)) as conn, conn.cursor() as cur:
        cur.execute("SELECT coalesce(output::text, '') FROM pgboss.job")
        shown["job output"] = "\n".join(row[0] for row in cur.fetchall())
    conn.close()
    assert "kaput" in shown["job output"]
    _assert_secret_free(shown)


def test_no_password_in_uris_or_connection_errors(secret_url: str) -> None:
    from celery import Celery

    import transport  # noqa: F401  (the pgboss:// alias)

    broker = "pgboss://" + secret_url.split("://", 1)[1]
    app = Celery("secrets", broker=broker, backend=broker, set_as_current=False)
    conn = app.connection()
    info = {k: v for k, v in conn.info().items() if k != "password"}  # Celery drops it, as kombu allows
    shown = {
        "as_uri": conn.as_uri(),
        "repr": repr(conn),
        "info": json.dumps(info, default=str),
        "clone as_uri": conn.clone().as_uri(),
        "backend as_uri": app.backend.as_uri(),
        "conf (censored)": json.dumps(app.conf.table(censored=True), default=str),
    }
    assert conn.info()["password"] == PASSWORD  # kept where kombu keeps it, to connect with

    host = urlsplit(dsn_from_url(secret_url)).hostname or "127.0.0.1"
    unreachable = f"postgresql://{ROLE}:{quote(PASSWORD, safe='')}@{host}:1/nowhere"
    malformed = f"postgresql://{ROLE}:{quote(PASSWORD, safe='')}%zz@{host}/nowhere"  # libpq quotes it
    for name, url in (("unreachable", unreachable), ("malformed", malformed)):
        env = _env(url)
        done = _run(env, *ZEKE, "jobs")
        assert done.returncode != 0
        shown[f"zeke jobs, {name}"] = done.stdout + done.stderr
        done = _run(env, *CELERY, "inspect", "ping", "--timeout", "1", timeout=90)
        shown[f"inspect ping, {name}"] = done.stdout + done.stderr
    worker = subprocess.Popen(
        [*CELERY, "worker", "-n", "nowhere@test", "-c", "1", "-l", "info"],
        cwd=ROOT, env=_env(unreachable), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    output = Output(worker)
    try:
        # Two errors: the first attempt's and a retry's (each names the URL).
        retried = lambda text: text.count("Cannot connect to pgboss://") >= 2  # noqa: E731
        output.wait_for(retried, 60, what="the worker's connect errors")
    finally:
        shown["worker log, unreachable"] = log = output.stop()
    assert f"Cannot connect to pgboss://{ROLE}@" in log  # the URL is named, without its password
    _assert_secret_free(shown)
