"""GET /api/jobs/stream/{runId}: Server-Sent Events pushed by NOTIFY, read with a real HTTP client."""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.app.conftest import ApiServer, wait_for
from transport.manager import JobManager


@dataclass
class Event:
    at: float
    event: str | None
    data: Any
    comment: bool = False


@dataclass
class SseReader:
    """Reads a stream in a thread, stamping each event with time.monotonic() on arrival."""

    url: str
    headers: dict[str, str]
    events: list[Event] = field(default_factory=list)
    status_code: int | None = None
    done: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> SseReader:
        threading.Thread(target=self._run, daemon=True).start()
        return self

    def _run(self) -> None:
        try:
            with httpx.stream("GET", self.url, headers=self.headers, timeout=30) as response:
                self.status_code = response.status_code
                event, data = None, []
                for line in response.iter_lines():
                    if self.stop.is_set():
                        break
                    if line.startswith(":"):
                        self.events.append(Event(time.monotonic(), None, line, comment=True))
                    elif line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:"):
                        data.append(line[5:].strip())
                    elif line == "" and (event or data):
                        text = "\n".join(data)
                        try:
                            value: Any = json.loads(text)
                        except ValueError:
                            value = text
                        self.events.append(Event(time.monotonic(), event, value))
                        event, data = None, []
        finally:
            self.done.set()

    def named(self, name: str | None = None) -> list[Event]:
        return [e for e in self.events if not e.comment and (name is None or e.event == name)]

    def wait_events(self, n: int, timeout: float = 10) -> list[Event]:
        wait_for(lambda: len(self.named()) >= n or self.done.is_set(), timeout)
        return self.named()


def _job(manager: JobManager, name: str = "t-echo") -> str:
    manager.create_queue(name, retry_limit=2, retry_delay=0, retry_backoff=False)
    job_id = manager.send(name, {"message": "hi"})
    assert job_id
    return job_id


def _stream(server: ApiServer, auth: dict, job_id: str) -> SseReader:
    return SseReader(f"{server.url}/api/jobs/stream/{job_id}", auth).start()


def test_each_change_arrives_within_100ms_of_its_commit(
    api_server: ApiServer, auth: dict, manager: JobManager
) -> None:
    job_id = _job(manager)
    reader = _stream(api_server, auth, job_id)
    [first] = reader.wait_events(1)
    assert first.event == "status" and first.data["status"] == "created" and first.data["taskId"] == "t-echo"

    commits: list[tuple[str, float]] = []
    time.sleep(0.2)
    [job] = manager.fetch(["t-echo"])
    commits.append(("active", time.monotonic()))
    time.sleep(0.2)
    manager.fail("t-echo", [job_id], {"message": "flaky"}, attempts={job_id: job.retry_count})
    commits.append(("retry", time.monotonic()))
    time.sleep(0.2)
    [job] = manager.fetch(["t-echo"])
    commits.append(("active", time.monotonic()))
    time.sleep(0.2)
    manager.complete("t-echo", [(job_id, {"echo": "hi"}, job.retry_count)])
    commits.append(("completed", time.monotonic()))

    events = reader.wait_events(6)
    statuses = [e for e in events if e.event == "status"][1:]
    assert [e.data["status"] for e in statuses] == [state for state, _ in commits]
    for event, (_, committed) in zip(statuses, commits, strict=True):
        assert event.at - committed < 0.1, f"{event.data['status']} arrived {event.at - committed:.3f}s late"
    assert statuses[-1].data["output"] == {"echo": "hi"} and statuses[-1].data["completedOn"]
    assert statuses[1].data["output"] == {"message": "flaky"}
    assert events[-1].event == "close" and events[-1].data == "complete"
    assert reader.done.wait(5)


def test_a_finished_job_gets_status_and_close(api_server: ApiServer, auth: dict, manager: JobManager) -> None:
    job_id = _job(manager)
    manager.cancel("t-echo", [job_id])
    reader = _stream(api_server, auth, job_id)
    assert reader.done.wait(5)
    assert [(e.event, e.data if e.event == "close" else e.data["status"]) for e in reader.named()] == [
        ("status", "cancelled"),
        ("close", "complete"),
    ]


def test_unknown_and_malformed_ids(api_server: ApiServer, auth: dict) -> None:
    r = httpx.get(f"{api_server.url}/api/jobs/stream/{uuid.uuid4()}", headers=auth)
    assert r.status_code == 404 and r.json() == {"detail": "Job not found"}
    assert httpx.get(f"{api_server.url}/api/jobs/stream/nope", headers=auth).status_code == 422
    assert api_server.api.state.hub.subscriber_count == 0


def test_error_when_the_job_vanishes(make_api, auth: dict, manager: JobManager) -> None:
    server = make_api(sse_reread_seconds=0.3)
    job_id = _job(manager)
    reader = _stream(server, auth, job_id)
    reader.wait_events(1)
    manager.delete("t-echo", [job_id])  # no NOTIFY: found by the safety re-read
    assert reader.done.wait(5)
    last = reader.named()[-1]
    assert last.event == "error" and last.data == {"error": "Job not found"}


def test_keepalive_comments_and_bounded_lifetime(make_api, auth: dict, manager: JobManager) -> None:
    server = make_api(sse_keepalive_seconds=0.2, sse_max_seconds=1.0)
    reader = _stream(server, auth, _job(manager))
    assert reader.done.wait(5)
    assert sum(e.comment for e in reader.events) >= 3
    last = reader.named()[-1]
    assert last.event == "timeout" and last.data == {"message": "Stream timeout"}
    wait_for(lambda: server.api.state.hub.subscriber_count == 0, timeout=5)


def test_client_going_away_ends_the_stream(api_server: ApiServer, auth: dict, manager: JobManager) -> None:
    hub = api_server.api.state.hub
    job_id = _job(manager)
    with httpx.stream("GET", f"{api_server.url}/api/jobs/stream/{job_id}", headers=auth, timeout=10) as r:
        lines = r.iter_lines()
        assert next(lines) == "retry: 3000"
        assert hub.subscriber_count == 1
    wait_for(lambda: hub.subscriber_count == 0, timeout=5)


def test_one_listen_connection_serves_every_stream(
    api_server: ApiServer, auth: dict, manager: JobManager, database: Any
) -> None:
    jobs = [_job(manager) for _ in range(5)]
    readers = [_stream(api_server, auth, job_id) for job_id in jobs]
    for reader in readers:
        reader.wait_events(1)
    with database.cursor() as cur:
        cur.execute(
            "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND query LIKE %s",
            (f'%LISTEN "{manager.state_channel}"',),
        )
        assert cur.fetchone()["n"] == 1
    for _ in jobs:
        [job] = manager.fetch(["t-echo"])
        manager.complete("t-echo", [(job.id, None, None)])
    for reader in readers:
        assert reader.done.wait(5)
        assert [e.event for e in reader.named()] == ["status", "status", "status", "close"]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"}])
def test_stream_needs_a_key(api_server: ApiServer, manager: JobManager, headers: dict) -> None:
    assert httpx.get(f"{api_server.url}/api/jobs/stream/{_job(manager)}", headers=headers).status_code == 401


def test_streams_survive_a_lost_listen_connection(
    api_server: ApiServer, auth: dict, manager: JobManager, database: Any
) -> None:
    def listener_pid() -> int | None:
        with database.cursor() as cur:
            cur.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query LIKE %s",
                (f'%LISTEN "{manager.state_channel}"',),
            )
            row = cur.fetchone()
            return row["pid"] if row else None

    job_id = _job(manager)
    reader = _stream(api_server, auth, job_id)
    reader.wait_events(1)
    old = listener_pid()
    assert old is not None
    with database.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(%s)", (old,))
    # A change while nobody listens is caught by the re-read every stream makes after the reconnect.
    manager.fetch(["t-echo"])
    wait_for(lambda: (pid := listener_pid()) is not None and pid != old, timeout=10)
    assert [e.data["status"] for e in reader.wait_events(2)] == ["created", "active"]
    manager.complete("t-echo", [(job_id, None, None)])
    committed = time.monotonic()
    events = reader.wait_events(4)
    assert events[2].data["status"] == "completed" and events[2].at - committed < 0.1
