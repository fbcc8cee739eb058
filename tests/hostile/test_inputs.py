"""Hostile input at every edge: the manager, the client, the HTTP API and the ``zeke send`` CLI.

Wrong types, strings PostgreSQL cannot store (NUL, unpaired surrogates), gigantic and deeply nested
payloads, queue names made of SQL, unicode or 300 characters: each gets a clear error (or is stored
and runs), the database is left as it was (every table's row count, ``pgboss.job`` still there), and
nothing answers 500 or leaves a job nobody can fetch.

SSRF and NUL characters in fetched content are in tests/unit/tasks/lib/test_netguard_hostile.py.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.hostile.conftest import ZEKE, ApiServer, cli_env, job_table_exists
from transport.db import Database
from transport.exceptions import InvalidJobId, InvalidOption, InvalidPayload, InvalidQueueName, QueueNotFound
from transport.manager import JobManager

Q = "hostile-q"
TEN_MB = 10 * 1024 * 1024

#: Queue names an attacker (or a careless caller) might try; none is valid.
HOSTILE_NAMES = [
    "x'; DROP TABLE pgboss.job; --",
    'q"; DELETE FROM pgboss.queue; --',
    "q); SELECT pg_sleep(30); --",
    "q%s",
    "q%(name)s",
    "q{schema}",
    "q\\",
    "café",  # \w is ASCII in pg-boss's (JavaScript) rule
    "очередь",
    "队列",
    "q\n",  # "$" must not match before a trailing newline
    "q\x00",
    "q\ud800",
    "a" * 300,
    "",
    " ",
    "__pgboss__x",
]

#: Job data that cannot be stored as sent.
HOSTILE_DATA = {
    "nul-in-value": {"a": "x\x00y"},
    "nul-in-key": {"\x00": 1},
    "lone-high-surrogate": {"a": "\ud800"},
    "lone-low-surrogate": {"a": ["ok", "\udc00"]},
    "nan": {"a": float("nan")},
    "infinity": {"a": float("-inf")},
    "object": {"a": object()},
    "bytes": {"a": b"\x00\xff"},
    "set": {"a": {1, 2}},
    "too-deep": None,  # built below: nested past the recursion limit
}


def _deep(levels: int) -> Any:
    value: Any = "bottom"
    for _ in range(levels):
        value = [value]
    return value


HOSTILE_DATA["too-deep"] = {"a": _deep(5000)}


@pytest.fixture
def boss(pgboss: JobManager) -> JobManager:
    pgboss.create_queue(Q)
    return pgboss


def assert_consistent(database: Database, before: dict[str, int], after: dict[str, int]) -> None:
    assert after == before
    assert job_table_exists(database)


# -- manager -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=lambda n: repr(n)[:24])
def test_manager_refuses_hostile_queue_names(
    boss: JobManager, counts: Callable[[], dict[str, int]], database: Database, name: str
) -> None:
    before = counts()
    for attempt in (
        lambda: boss.create_queue(name),
        lambda: boss.send(name, {"a": 1}),
        lambda: boss.send_many(name, [{"data": {"a": 1}}, {"data": {"a": 2}}]),
        lambda: boss.create_queue("fine", dead_letter=name),
        lambda: boss.send(Q, {"a": 1}, dead_letter=name),
    ):
        with pytest.raises(InvalidQueueName) as refused:
            attempt()
        assert "queue name" in str(refused.value)
    # Reading with such a name finds nothing (parameters, never SQL text); a NUL cannot even be sent.
    if "\x00" not in name and "\ud800" not in name:
        assert boss.fetch([name], 5) == [] and boss.get_queue(name) is None
    assert_consistent(database, before, counts())


def test_sql_in_names_reaches_the_database_only_as_a_parameter(
    boss: JobManager, counts: Callable[[], dict[str, int]], database: Database
) -> None:
    """Where no validation applies (a schedule-free read, a singleton key), SQL is just data."""
    before = counts()
    evil = "x'; DROP TABLE pgboss.job; --"
    assert boss.queue_size(evil) == 0 and boss.counts(evil) == [] and boss.list_jobs(name=evil) == []
    job = boss.send(Q, {"note": evil}, singleton_key=evil)
    assert job is not None
    stored = boss.get_job(job)
    assert stored is not None and stored["singleton_key"] == evil and stored["data"] == {"note": evil}
    boss.delete(Q, [job])
    assert_consistent(database, before, counts())


@pytest.mark.parametrize("kind", list(HOSTILE_DATA))
def test_manager_refuses_data_it_cannot_store(
    boss: JobManager, counts: Callable[[], dict[str, int]], database: Database, kind: str
) -> None:
    data = HOSTILE_DATA[kind]  # looked up here: a failure report never tries to print 5000 levels
    before = counts()
    with pytest.raises(InvalidPayload, match="job data must be JSON"):
        boss.send(Q, data)
    with pytest.raises(InvalidPayload):  # one bad job: the whole batch is refused
        boss.send_many(Q, [{"data": {"ok": i}} for i in range(50)] + [{"data": data}])
    assert_consistent(database, before, counts())


def test_storable_lookalikes_are_stored_exactly(boss: JobManager) -> None:
    """What only looks like NUL or a surrogate (escaped text, a real astral character) is fine."""
    data = {"escaped": "\\u0000 and \\ud800", "emoji": "🦆", "pair": "\ud83e\udd86", "deep": _deep(500)}
    job = boss.send(Q, data)
    stored = boss.get_job(job)
    assert stored is not None and stored["data"]["escaped"] == "\\u0000 and \\ud800"
    assert stored["data"]["emoji"] == "🦆" == stored["data"]["pair"] and stored["data"]["deep"] == _deep(500)


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"priority": "high"}, InvalidOption),
        ({"priority": 2**40}, InvalidOption),
        ({"priority": True}, InvalidOption),
        ({"retry_limit": -1}, InvalidOption),
        ({"retry_limit": 2**31}, InvalidOption),
        ({"retry_delay": 1.5}, InvalidOption),
        ({"expire_in_seconds": 0}, InvalidOption),
        ({"expire_in_seconds": 10**9}, InvalidOption),
        ({"heartbeat_seconds": 2**40}, InvalidOption),
        ({"singleton_seconds": "60"}, InvalidOption),
        ({"singleton_seconds": 0}, InvalidOption),
        ({"singleton_key": 42}, InvalidOption),
        ({"singleton_key": "k\x00"}, InvalidOption),
        ({"start_after": 1e300}, InvalidOption),
        ({"start_after": float("nan")}, InvalidOption),
        ({"start_after": "tomorrow'; DROP TABLE pgboss.job; --"}, InvalidOption),
        ({"start_after": object()}, InvalidOption),
        ({"keep_until": "10000-01-01T00:00:00"}, InvalidOption),
        ({"id": "'; DROP TABLE pgboss.job; --"}, InvalidJobId),
        ({"id": 12}, InvalidJobId),
        ({"dead_letter": "nope"}, QueueNotFound),
        ({"dead_letter": "x'; DROP TABLE pgboss.job; --"}, InvalidQueueName),
        ({"dead_letter": 42}, InvalidQueueName),
        ({"unknown": 1}, InvalidOption),
        ({"state": "completed"}, InvalidOption),
    ],
    # An object's repr holds its address: ids must be the same in every (xdist) process.
    ids=lambda v: re.sub(r" at 0x[0-9a-f]+", "", repr(v))[:40] if isinstance(v, dict) else v.__name__,
)
def test_manager_refuses_bad_send_options(
    boss: JobManager,
    counts: Callable[[], dict[str, int]],
    database: Database,
    options: dict[str, Any],
    error: type[Exception],
) -> None:
    before = counts()
    with pytest.raises(error):
        boss.send(Q, {"a": 1}, **options)
    with pytest.raises(error):
        boss.send_many(Q, [{"data": {"a": 1}}, {"data": {"a": 2}, **options}])
    assert_consistent(database, before, counts())


def test_gigantic_payload_is_stored_fetched_and_completed(boss: JobManager) -> None:
    """10 MB of job data: stored as sent, fetched whole, completed; no stuck job, no timeout."""
    data = {"title": "big", "body": "é" * (TEN_MB // 2), "items": list(range(50_000))}
    started = time.monotonic()
    job_id = boss.send(Q, data)
    assert job_id is not None
    [job] = boss.fetch([Q], 1)
    assert job.id == job_id and job.data == data
    assert boss.complete(Q, [(job.id, {"size": len(job.data["body"])}, job.retry_count)]) == [job_id]
    assert time.monotonic() - started < 30
    done = boss.get_job(job_id)
    assert done is not None and done["state"] == "completed" and done["output"] == {"size": TEN_MB // 2}


def test_gigantic_batch_is_all_or_nothing(boss: JobManager, counts: Callable[[], dict[str, int]]) -> None:
    before = counts()
    jobs = [{"data": {"chunk": "x" * (2 * 1024 * 1024), "n": i}} for i in range(5)]
    with pytest.raises(InvalidPayload):
        boss.send_many(Q, [*jobs, {"data": {"bad": "\x00"}}])
    assert counts() == before
    assert len(boss.send_many(Q, jobs)) == 5


BAD_JOB_IDS = ["'; DROP TABLE pgboss.job; --", "00000000-0000-0000-0000-00000000000g", "", None, 7, "\x00"]


@pytest.mark.parametrize("job_id", BAD_JOB_IDS, ids=repr)
def test_hostile_job_ids(
    boss: JobManager, counts: Callable[[], dict[str, int]], database: Database, job_id: Any
) -> None:
    before = counts()
    for attempt in (
        lambda: boss.get_job(job_id),
        lambda: boss.cancel(Q, [job_id]),
        lambda: boss.complete(Q, [(job_id, None, 0)]),
        lambda: boss.fail(Q, [job_id], {"message": "x"}),
        lambda: boss.delete(Q, [job_id]),
    ):
        with pytest.raises(InvalidJobId):
            attempt()
    assert_consistent(database, before, counts())


def test_outputs_the_database_cannot_store_are_refused_before_it(boss: JobManager) -> None:
    """A handler returning a NUL: a clear ValueError, and the job is still active for a fail()."""
    job_id = boss.send(Q, {"a": 1})
    [job] = boss.fetch([Q], 1)
    with pytest.raises(ValueError, match="NUL"):
        boss.complete(Q, [(job.id, {"text": "a\x00b"}, job.retry_count)])
    assert boss.get_job(job_id)["state"] == "active"
    failed = boss.fail(Q, [job_id], {"message": "output not storable"}, retry=False)
    assert [r["state"] for r in failed] == ["failed"]


# -- client --------------------------------------------------------------------------------------


@pytest.fixture
def client_on(boss: JobManager) -> Iterator[Any]:
    from zeke import client

    previous = client.set_manager(boss)
    try:
        yield client
    finally:
        client.set_manager(previous)


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=lambda n: repr(n)[:24])
def test_client_refuses_hostile_task_ids(
    client_on: Any, counts: Callable[[], dict[str, int]], database: Database, name: str
) -> None:
    before = counts()
    with pytest.raises(InvalidQueueName):
        client_on.send_job(name, {"a": 1})
    with pytest.raises(InvalidQueueName):
        client_on.send_jobs(name, [{"a": 1}])
    assert_consistent(database, before, counts())


BAD_PAYLOADS = {
    "none": None,
    "list": [],
    "str": "text",
    "int": 42,
    "int-key": {1: "a"},
    "celery-key": {"__celery": {"task": "x"}},
    **HOSTILE_DATA,
}


@pytest.mark.parametrize("kind", list(BAD_PAYLOADS))
def test_client_refuses_bad_payloads(
    client_on: Any, counts: Callable[[], dict[str, int]], database: Database, kind: str
) -> None:
    payload = BAD_PAYLOADS[kind]
    before = counts()
    with pytest.raises(InvalidPayload):
        client_on.send_job(Q, payload)
    with pytest.raises(InvalidPayload):  # all or none
        client_on.send_jobs(Q, [{"ok": 1}, payload, {"ok": 2}])
    assert_consistent(database, before, counts())


def test_client_reads_and_acts_only_on_job_ids(
    client_on: Any, counts: Callable[[], dict[str, int]], database: Database
) -> None:
    before = counts()
    for bad in ("x'; DROP TABLE pgboss.job; --", "1 OR 1=1", "\x00"):
        for call in (client_on.get_job_status, client_on.cancel_job, client_on.retry_job):
            with pytest.raises(InvalidJobId):
                call(bad)
    assert client_on.get_job_status(str(uuid.uuid4())) is None
    with pytest.raises(InvalidOption):
        client_on.send_job(Q, {"a": 1}, data={"b": 2})
    assert_consistent(database, before, counts())


def test_client_gigantic_batch(client_on: Any, boss: JobManager) -> None:
    results = client_on.send_jobs(Q, [{"blob": "x" * (TEN_MB // 10), "n": i} for i in range(10)])
    assert [r["status"] for r in results] == ["created"] * 10
    assert {j.data["n"] for j in boss.fetch([Q], 10)} == set(range(10))


# -- HTTP API ------------------------------------------------------------------------------------


def _post(api: ApiServer, auth: dict[str, str], body: Any, **kw: Any) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {**auth, "Content-Type": "application/json"}
    return httpx.post(api.url + "/api/jobs", content=content, headers=headers, timeout=60, **kw)


def test_api_hostile_task_ids(
    api: ApiServer, auth: dict[str, str], counts: Callable[[], dict[str, int]], database: Database
) -> None:
    before = counts()
    for name in HOSTILE_NAMES:
        response = _post(api, auth, {"taskId": name, "payload": {}})
        # Unknown task (404); "" fails the schema and an unpaired surrogate is not a string (422).
        assert response.status_code in (404, 422), (name, response.text)
        assert response.json()["detail"]
    assert_consistent(database, before, counts())


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"taskId": "hostile-echo", "payload": []}, 422),
        ({"taskId": "hostile-echo", "payload": "text"}, 422),
        ({"taskId": "hostile-echo", "payload": None}, 422),
        ({"taskId": "hostile-echo", "payload": {"message": 5}}, 422),
        ({"taskId": "hostile-echo", "payload": {"message": "x", "count": "1; DROP TABLE pgboss.job"}}, 422),
        ({"taskId": "hostile-echo", "payload": {"message": "x" * 5000}}, 422),
        ({"taskId": "hostile-echo", "payload": {"message": "\ud800"}}, 422),
        ({"taskId": 5, "payload": {}}, 422),
        ({"payload": {}}, 422),
        ({"taskId": "hostile-doc", "payload": {"title": "a\x00b"}}, 422),
        ({"taskId": "hostile-doc", "payload": {"body": {"\x00": 1}}}, 422),
        ({"taskId": "hostile-doc", "payload": {"body": ["\udfff"]}}, 422),
        ({"taskId": "hostile-doc", "payload": {"tags": ["ok", 5]}}, 422),
        ([1, 2, 3], 422),
        ("just a string", 422),
        (b"{not json", 422),
        (b'{"taskId": "hostile-doc", "payload": {"title": "\xff\xfe"}}', 400),
        (b"[" * 50_000 + b"]" * 50_000, 400),
        # Python's JSON parser takes NaN, Infinity and overflowing numbers; JSON has no such values.
        (b'{"taskId": NaN, "payload": {}}', 422),
        (b'{"taskId": "hostile-echo", "payload": Infinity}', 422),
        (b'{"taskId": "hostile-echo", "payload": {"message": "x", "count": NaN}}', 422),
        (b'{"taskId": "hostile-doc", "payload": {"body": [1, -Infinity]}}', 422),
        (b'{"taskId": "hostile-doc", "payload": {"body": {"n": 1e400}}}', 422),
        # Valid JSON nested deeper than pydantic writes (254 levels): refused, not a 500.
        (b'{"taskId": "hostile-doc", "payload": {"body": ' + b"[" * 300 + b"]" * 300 + b"}}", 422),
    ],
    ids=lambda v: repr(v)[:40] if not isinstance(v, int) else str(v),
)
def test_api_refuses_bad_bodies(
    api: ApiServer,
    auth: dict[str, str],
    pgboss: JobManager,
    counts: Callable[[], dict[str, int]],
    database: Database,
    body: Any,
    status: int,
) -> None:
    for task_id in ("hostile-doc", "hostile-echo"):  # the API creates a task's queue before sending
        pgboss.create_queue(task_id)
    before = counts()
    response = _post(api, auth, body)
    assert response.status_code == status, response.text
    assert strict_json(response.text)["detail"]
    assert_consistent(database, before, counts())


def strict_json(text: str) -> Any:
    """``json.loads`` that refuses NaN and Infinity, as every JSON parser but Python's does."""

    def refuse(constant: str) -> Any:
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def test_api_gigantic_payload_is_stored_whole(
    api: ApiServer, auth: dict[str, str], pgboss: JobManager
) -> None:
    body = {"taskId": "hostile-doc", "payload": {"title": "big", "body": {"text": "y" * TEN_MB}}}
    response = _post(api, auth, body)
    assert response.status_code == 201, response.text[:300]
    job_id = response.json()["id"]
    status = httpx.get(f"{api.url}/api/jobs/{job_id}", headers=auth, timeout=60).json()
    assert status["status"] == "created" and len(status["data"]["body"]["text"]) == TEN_MB
    [job] = pgboss.fetch(["hostile-doc"], 1)  # a worker can take it like any other
    assert job.id == job_id


def test_api_hostile_paths(
    api: ApiServer, auth: dict[str, str], counts: Callable[[], dict[str, int]], database: Database
) -> None:
    before = counts()
    for path in (
        "/api/jobs/x'%3B%20DROP%20TABLE%20pgboss.job%3B%20--",
        "/api/jobs/%00",
        "/api/jobs/%ED%A0%80",
        "/api/jobs/" + "a" * 5000,
        "/api/jobs/..%2F..%2Fetc%2Fpasswd",
        "/api/jobs/stream/1%20OR%201%3D1",
    ):
        response = httpx.get(api.url + path, headers=auth, timeout=30)
        assert response.status_code in (404, 422), (path, response.status_code, response.text)
    for action in ("cancel", "retry"):
        response = httpx.post(f"{api.url}/api/jobs/1'%20OR%20'1'%3D'1/{action}", headers=auth, timeout=30)
        assert response.status_code == 422
        response = httpx.post(f"{api.url}/api/jobs/{uuid.uuid4()}/{action}", headers=auth, timeout=30)
        assert response.status_code == 404
    assert_consistent(database, before, counts())


def test_api_hostile_credentials(api: ApiServer, auth: dict[str, str]) -> None:
    key = auth["Authorization"].split(" ", 1)[1]
    for value in (
        "Bearer x'; DROP TABLE pgboss.job; --",
        "Bearer " + key[:-1],
        "Bearer " + key + key,
        "Basic " + key,
        "Bearer",
        "Bearer " + "a" * 60_000,
        "Bearer clé".encode(),  # not ASCII: sent as raw UTF-8 bytes
    ):
        response = httpx.get(f"{api.url}/api/tasks", headers={"Authorization": value}, timeout=30)
        assert response.status_code == 401, (value[:40], response.status_code)
    assert httpx.get(f"{api.url}/api/tasks", headers=auth, timeout=30).status_code == 200


# -- CLI -----------------------------------------------------------------------------------------


def zeke(env: dict[str, str], *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ZEKE, *args], env=env, input=stdin, capture_output=True, text=True, timeout=120, errors="replace"
    )


def test_cli_send_edges(
    db_url: str, pgboss: JobManager, counts: Callable[[], dict[str, int]], database: Database
) -> None:
    env = cli_env(db_url, pgboss.schema)
    pgboss.create_queue("hostile-doc")
    before = counts()

    evil = zeke(env, "send", "x'; DROP TABLE pgboss.job; --", "{}")
    assert evil.returncode == 1 and "unknown task" in evil.stderr, evil.stderr
    long_name = zeke(env, "send", "é" * 300, '{"a": 1}')
    assert long_name.returncode == 1 and "unknown task" in long_name.stderr, long_name.stderr
    not_json = zeke(env, "send", "hostile-doc", "{'title': 1}")
    assert not_json.returncode == 2 and "not JSON" in not_json.stderr, not_json.stderr
    nul = zeke(env, "send", "hostile-doc", "-", stdin='{"title": "a\\u0000b"}')
    assert nul.returncode == 1 and "NUL" in nul.stderr and "Traceback" not in nul.stderr, nul.stderr
    # Not stored as null: refused, with where.
    nan = zeke(env, "send", "hostile-doc", '{"body": {"n": NaN}}')
    assert nan.returncode == 1 and "body.n" in nan.stderr and "Traceback" not in nan.stderr, nan.stderr
    # --json stays JSON when the refused input is not.
    inf = zeke(env, "send", "hostile-doc", "--json", '{"title": Infinity}')
    assert inf.returncode == 1 and strict_json(inf.stdout)["errors"][0]["loc"] == ["title"], inf.stdout
    deep = zeke(env, "send", "hostile-doc", "-", stdin='{"body": ' + "[" * 300 + "]" * 300 + "}")
    assert deep.returncode == 1 and "deep" in deep.stderr and "Traceback" not in deep.stderr, deep.stderr
    assert_consistent(database, before, counts())

    big = zeke(env, "send", "hostile-doc", "--json", "-", stdin=json.dumps({"body": "z" * TEN_MB}))
    assert big.returncode == 0, big.stderr[-2000:]
    job = pgboss.get_job(json.loads(big.stdout)["id"])
    assert job is not None and len(job["data"]["body"]) == TEN_MB
