"""Job status over Server-Sent Events, pushed by PostgreSQL NOTIFY instead of polled.

Every job transition made through :class:`transport.manager.JobManager` NOTIFYs ``"<job id> <state>"``
on ``names.state_channel(schema)`` (a claim's ``active`` while some session holds the state presence,
which the hub does while it listens). One :class:`StateHub` per API process subscribes to that channel
on the process's one LISTEN connection (:mod:`transport.listener`, owned by the process's hub) and
fans each notification out to the streams watching that job through asyncio queues, so a thousand
open streams cost no database connection of their own and no polling.

A stream (:func:`job_events`) sends the current status at once, then one ``status`` event per change,
``close`` after a terminal state, ``error`` when the job vanishes, a keep-alive comment every
``sse_keepalive_seconds``, and ``timeout`` once ``sse_max_seconds`` have passed. A slow safety re-read
(``sse_reread_seconds``) catches changes made without a NOTIFY (Node pg-boss, hand-written SQL), and
the hub tells every stream to re-read once it listens (again, after a lost connection), because
notifications sent while nobody listened are lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from transport.errors import DatabaseUnavailable
from transport.listener import Listener, Subscription
from transport.manager import JobManager

log = logging.getLogger("zeke.api.sse")

#: Put on every stream's queue when the hub (re)connects: notifications may have been missed.
RESYNC = "resync"
TERMINAL_STATES = frozenset({"completed", "failed", "cancelled"})


class StateHub:
    """The state channel of the process's LISTEN connection, fanned out to per-job asyncio queues."""

    def __init__(self, manager: JobManager, listener: Listener | None = None) -> None:
        self.manager = manager
        self.channel = manager.state_channel
        #: The process's LISTEN connection for the manager's database (the hub's); a manager from
        #: elsewhere gets one of its own.
        self.listener = listener if listener is not None else Listener(manager.db)
        self._subscribers: dict[str, set[asyncio.Queue[str]]] = {}
        #: Streams that want every job's changes (the dashboard's live view), bounded: a slow reader
        #: loses notifications rather than growing memory, and is told to re-read (RESYNC).
        self._watchers: set[asyncio.Queue[str]] = set()
        self._subscription: Subscription | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.listening = asyncio.Event()

    # -- subscriptions (event loop thread only) --------------------------------------------------

    def subscribe(self, job_id: str) -> asyncio.Queue[str]:
        queue: asyncio.Queue[str] = asyncio.Queue()
        self._subscribers.setdefault(job_id, set()).add(queue)
        return queue

    def unsubscribe(self, job_id: str, queue: asyncio.Queue[str]) -> None:
        queues = self._subscribers.get(job_id)
        if queues is not None:
            queues.discard(queue)
            if not queues:
                del self._subscribers[job_id]

    def watch_all(self, maxsize: int = 1000) -> asyncio.Queue[str]:
        """A queue of every notification as ``"<job id> <state>"`` (plus RESYNC after a reconnect)."""
        queue: asyncio.Queue[str] = asyncio.Queue(maxsize)
        self._watchers.add(queue)
        return queue

    def unwatch_all(self, queue: asyncio.Queue[str]) -> None:
        self._watchers.discard(queue)

    def _tell_watchers(self, message: str) -> None:
        for queue in self._watchers:
            try:
                queue.put_nowait(message)
            except asyncio.QueueFull:
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()  # make room for the resync that covers what was dropped
                queue.put_nowait(RESYNC)

    @property
    def subscriber_count(self) -> int:
        return sum(len(q) for q in self._subscribers.values())

    def dispatch(self, payload: str) -> None:
        job_id, _, state = payload.partition(" ")
        for queue in self._subscribers.get(job_id, ()):
            queue.put_nowait(state)
        if self._watchers:
            self._tell_watchers(payload)

    def _broadcast(self, message: str) -> None:
        for queues in self._subscribers.values():
            for queue in queues:
                queue.put_nowait(message)
        self._tell_watchers(message)

    # -- the LISTEN connection -------------------------------------------------------------------

    async def start(self) -> None:
        if self._subscription is None:
            self._loop = asyncio.get_running_loop()
            # Claims announce jobs running only while a session holds the presence; the listener
            # takes it before on_listen, so the streams' re-read then sees any claim made before.
            self.listener.hold(self.manager.state_presence)
            self._subscription = self.listener.subscribe(
                (self.channel,), self._on_notice, on_listen=self._on_listen, on_lost=self._on_lost
            )

    async def stop(self) -> None:
        subscription, self._subscription = self._subscription, None
        if subscription is not None:
            subscription.close()
            self.listener.release(self.manager.state_presence)
        self.listening.clear()

    # Called on the listener thread: handed to the event loop.

    def _on_notice(self, channel: str, payload: str) -> None:
        self._call_soon(self.dispatch, payload)

    def _on_listen(self) -> None:
        self._call_soon(self._listened)

    def _on_lost(self, exc: BaseException) -> None:
        # Streams fall back to their re-reads until the listener is back.
        self._call_soon(self.listening.clear)

    def _call_soon(self, callback: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(callback, *args)

    def _listened(self) -> None:
        # Listening (again): notifications sent while nobody listened are lost, so every stream re-reads.
        self.listening.set()
        self._broadcast(RESYNC)


# -- one stream -------------------------------------------------------------------------------------

ReadJob = Callable[[str], Awaitable[dict[str, Any] | None]]


def format_event(event: str | None, data: Any) -> str:
    """One SSE frame; ``data`` is JSON unless it is already a string."""
    text = data if isinstance(data, str) else json.dumps(data, default=str, separators=(",", ":"))
    head = f"event: {event}\n" if event else ""
    return head + "".join(f"data: {line}\n" for line in text.split("\n")) + "\n"


def stream_payload(job: dict[str, Any]) -> dict[str, Any]:
    """What a ``status`` event carries: the job status without its (possibly large) input data."""
    return {k: v for k, v in job.items() if k != "data"}


async def job_events(
    job: dict[str, Any],
    hub: StateHub,
    queue: asyncio.Queue[str],
    read_job: ReadJob,
    *,
    keepalive_seconds: float,
    reread_seconds: float,
    max_seconds: float,
) -> AsyncIterator[str]:
    """The event stream of one job, whose first status ``job`` was read after ``queue`` subscribed.

    Subscribing before that first read means no change can fall between the read and the LISTEN.
    The caller unsubscribes ``queue`` when the stream ends (also when the client disconnects, which
    cancels this generator).
    """
    loop = asyncio.get_running_loop()
    job_id = job["id"]
    task_id = job.get("taskId")
    yield "retry: 3000\n\n"
    yield format_event("status", stream_payload(job))
    last = job["status"]
    if last in TERMINAL_STATES:
        yield format_event("close", "complete")
        return

    started = loop.time()
    deadline = started + max_seconds
    next_reread = started + reread_seconds
    next_keepalive = started + keepalive_seconds
    while True:
        now = loop.time()
        wait = min(deadline, next_reread, next_keepalive) - now
        message: str | None = None
        if wait > 0:
            try:
                message = await asyncio.wait_for(queue.get(), wait)
            except TimeoutError:
                message = None
        now = loop.time()
        if message is None and now >= deadline:
            yield format_event("timeout", {"message": "Stream timeout"})
            return
        if message is None and now < next_reread:
            next_keepalive = now + keepalive_seconds
            yield ": keep-alive\n\n"
            continue

        # A notified state, a resync, or the safety re-read: read the row for output and timestamps.
        try:
            current = await read_job(job_id)
        except DatabaseUnavailable as exc:
            # The database is away (a restart, a failover): the stream lives on, a notified state is
            # still reported, and the next re-read tries again.
            log.warning("SSE re-read of job %s failed (will retry): %s", job_id, exc)
            if message is None or message == RESYNC:
                continue
            current = {"id": job_id, "status": message, "taskId": task_id}
        finally:
            next_reread = loop.time() + reread_seconds
        if message is not None and message != RESYNC:
            if current is None or current["status"] != message:
                # The job moved on (or was deleted) already: report the state we were told about, in
                # order; the next notification (or the re-read) carries the newer one.
                current = {"id": job_id, "status": message, "taskId": task_id}
        elif current is None:
            yield format_event("error", {"error": "Job not found"})
            return
        if current["status"] != last:
            yield format_event("status", stream_payload(current))
            last = current["status"]
        if last in TERMINAL_STATES:
            yield format_event("close", "complete")
            return
