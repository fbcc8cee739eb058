"""A busy worker's fetches, run on a thread of their own so the event loop keeps feeding the pool.

A loop that blocks in a fetch hands no task to a pool child meanwhile: during a drain that was
about a quarter of its time. While the worker holds jobs (its children have work), the next fetch
goes to this thread; the loop delivers what it returns once the transport's waker wakes it. An idle
worker fetches inline: there the hand-off between threads would only add to a pickup's latency.

One fetch is out at a time, from its request until the loop has collected its jobs, so nothing
fetched here exceeds the prefetch budget the fetch was sized to. A fetch's error is handed to the
loop with its result and raised there, as an inline fetch's would be. What the loop never collects
(it stopped meanwhile) :meth:`Fetcher.stop` returns, for the transport to hand back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from transport.service import Service

logger = logging.getLogger(__name__)

#: (queues, limit, concurrency limits) -> fetched jobs
FetchFunction = Callable[[list[str], int, Mapping[str, int]], list[Any]]


@dataclass
class Fetched:
    """One fetch's outcome, for the channel that asked for it."""

    channel: Any
    queues: list[str]
    limit: int
    jobs: list[Any] = field(default_factory=list)
    error: BaseException | None = None


class Fetcher(Service):
    thread_name = "pgboss-fetch"

    def __init__(
        self, fetch: FetchFunction, wake: Callable[[], None], prepare: Callable[[], None] | None = None
    ) -> None:
        super().__init__(logger, "pg-boss fetch")
        self.fetch = fetch
        #: Wakes the event loop (called from this thread once a result is ready).
        self.wake_loop = wake
        #: Run first on the thread (open its connection while the server takes new ones, so the
        #: worker's fetches need no new connection later, as the loop's inline ones do not).
        self.prepare = prepare
        self._request: tuple[Any, list[str], int, Mapping[str, int]] | None = None
        self._result: Fetched | None = None
        self._out = False

    @property
    def busy(self) -> bool:
        """A fetch is requested, running, or done but not collected yet."""
        return self._out

    @property
    def done(self) -> bool:
        return self._result is not None

    def submit(self, channel: Any, queues: list[str], limit: int, limits: Mapping[str, int]) -> None:
        with self.lock:
            assert not self._out, "one fetch at a time"
            self._out = True
            self._request = (channel, queues, limit, limits)
            self.lock.notify_all()

    def collect(self) -> Fetched | None:
        """The finished fetch (the loop delivers it), freeing the way for the next one."""
        with self.lock:
            result, self._result = self._result, None
            if result is not None:
                self._out = False
            return result

    def stop(self, timeout: float | None = 60.0, *, join: bool = True) -> Fetched | None:  # type: ignore[override]
        """Stop once the fetch under way (if any) has returned; the fetch that was out, uncollected:
        what it fetched, or nothing (no jobs) when it was asked for but never started."""
        with self.lock:
            request, self._request = self._request, None
        super().stop(timeout, join=join)
        result = self.collect()
        if result is None and request is not None:
            channel, queues, limit, _limits = request
            result = Fetched(channel, queues, limit)
        self._out = False
        return result

    def run(self) -> None:
        if self.prepare is not None:
            try:
                self.prepare()
            except Exception as exc:  # the first fetch tries again, and raises on the loop
                logger.debug("fetch thread could not connect yet: %r", exc)
        while self.wait_until(lambda: self._request is not None):
            with self.lock:
                request, self._request = self._request, None
            if request is None:
                continue
            channel, queues, limit, limits = request
            fetched = Fetched(channel, queues, limit)
            try:
                fetched.jobs = self.fetch(queues, limit, limits)
            except BaseException as exc:  # raised on the loop, as an inline fetch's error would be
                fetched.error = exc
            with self.lock:
                self._result = fetched
            self.wake_loop()
