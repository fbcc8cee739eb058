"""zeke.api.sse's job_events without a database: a notified state is reported even when the job
cannot be re-read, and a failed re-read does not end the stream."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.app.conftest import wait_for
from transport.errors import DatabaseUnavailable
from zeke.api.sse import job_events


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


def _frames_of(read_job: Any, notices: list[str]) -> list[str]:
    """Every frame job_events sends for an active job, given a reader and the notified states."""

    async def run() -> list[str]:
        queue: asyncio.Queue[str] = asyncio.Queue()
        for notice in notices:
            queue.put_nowait(notice)
        job = {"id": str(uuid.uuid4()), "status": "active", "taskId": "t-echo"}
        no_hub: Any = None  # job_events reads the queue it is given, not the hub
        stream = job_events(
            job,
            no_hub,
            queue,
            read_job,
            keepalive_seconds=10,
            reread_seconds=0.05,
            max_seconds=5,
        )
        return [frame async for frame in stream]

    return asyncio.run(run())


def test_a_failed_re_read_does_not_end_the_stream() -> None:
    """The database goes away for a moment (a restart): the stream keeps going and the next re-read
    reports the job's end."""
    reads: list[str] = []

    async def read_job(job_id: str) -> dict[str, Any] | None:
        reads.append(job_id)
        if len(reads) == 1:
            raise DatabaseUnavailable("server closed the connection unexpectedly")
        return {"id": job_id, "status": "completed", "taskId": "t-echo", "output": {"value": 1}}

    frames = _frames_of(read_job, [])
    assert len(reads) == 2
    assert frames[-2].startswith("event: status") and '"completed"' in frames[-2]
    assert frames[-1] == "event: close\ndata: complete\n\n"


def test_a_notified_state_is_reported_while_the_database_cannot_be_read() -> None:
    async def read_job(job_id: str) -> dict[str, Any] | None:
        raise DatabaseUnavailable("could not connect to server")

    frames = _frames_of(read_job, ["completed"])
    assert frames[-2].startswith("event: status") and '"completed"' in frames[-2]
    assert frames[-1] == "event: close\ndata: complete\n\n"
