"""zeke.api.sse's job_events without a database: a notified state is reported even when the job
cannot be re-read, and a failed re-read does not end the stream."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from transport.errors import DatabaseUnavailable
from zeke.api.sse import job_events


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
