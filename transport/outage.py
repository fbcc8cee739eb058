"""Riding out a database outage: exponential backoff with jitter, and one log line per outage.

Everything that reconnects (a worker's consumer, a result waiter, a pool child writing a result,
heartbeats, the supervisor, the settle thread) waits :class:`Backoff` delays between attempts, so
a server refusing connections (restarting, or out of ``max_connections``) is not hammered by every
process at once and in step. :class:`Outage` logs when a part loses the database and when it has
it back, not once per attempt.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable

#: Seconds a part must work again before an outage counts as over (flapping is one outage).
STABLE_SECONDS = 10.0


class Backoff:
    """Delays ``first``, 2×, 4×… up to ``cap`` seconds, each drawn from its upper half at random
    (so processes that lost the server together do not retry together)."""

    def __init__(self, first: float = 0.2, cap: float = 10.0) -> None:
        self.first = first
        self.cap = cap
        self.attempts = 0

    def next(self) -> float:
        ceiling = min(self.cap, self.first * 2 ** min(self.attempts, 30))
        self.attempts += 1
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    def reset(self) -> None:
        self.attempts = 0


class Outage:
    """One warning when ``what`` loses the database, one info line when it is back."""

    def __init__(self, logger: logging.Logger, what: str) -> None:
        self.logger = logger
        self.what = what
        self._lock = threading.Lock()
        self._since: float | None = None
        self._attempts = 0
        self._healthy_since: float | None = None

    @property
    def down(self) -> bool:
        return self._since is not None

    def failed(self, exc: BaseException) -> None:
        """An attempt failed: logged only when it starts an outage."""
        with self._lock:
            self._healthy_since = None
            self._attempts += 1
            if self._since is not None:
                self.logger.debug("%s: still no database (%s)", self.what, _first_line(exc))
                return
            self._since = time.monotonic()
        self.logger.warning(
            "%s: database unavailable (%s); retrying with backoff, logged again once it is back",
            self.what,
            _first_line(exc),
        )

    def succeeded(self, *, stable: float = 0.0) -> None:
        """An attempt worked. The outage is over (and logged so) once attempts have kept working
        for ``stable`` seconds: a server that accepts one connection and refuses the next is still
        one outage."""
        if self._since is None:
            return
        with self._lock:
            if self._since is None:
                return
            now = time.monotonic()
            if self._healthy_since is None:
                self._healthy_since = now
            if now - self._healthy_since < stable:
                return
            lasted, attempts = now - self._since, self._attempts
            self._since, self._healthy_since, self._attempts = None, None, 0
        self.logger.info(
            "%s: database available again after %.1f s (%d failed attempts)", self.what, lasted, attempts
        )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


class Reconnects:
    """A worker's consumer connection across restarts: once it has lost the database, every new
    connection waits a :class:`Backoff` delay first (Celery restarts its consumer at once after each
    connection error, several times a second while a server refuses connections), until a
    connection has worked for :data:`STABLE_SECONDS`."""

    def __init__(self, logger: logging.Logger, what: str, *, first: float = 0.5, cap: float = 30.0) -> None:
        self.outage = Outage(logger, what)
        self.backoff = Backoff(first, cap)
        self.troubled = False

    def lost(self, exc: BaseException) -> None:
        self.outage.failed(exc)
        self.troubled = True

    def working(self) -> None:
        """The connection did its work (cheap when all is well: called on every loop tick)."""
        if self.troubled:
            self.outage.succeeded(stable=STABLE_SECONDS)
            if not self.outage.down:
                self.troubled = False
                self.backoff.reset()

    def delay(self) -> float:
        """Seconds to wait before connecting again: 0 unless the database was lost lately."""
        return self.backoff.next() if self.troubled else 0.0


def sleep(seconds: float, check: Callable[[], None] | None = None) -> None:
    """Sleep in short slices, calling ``check`` between them (Celery's shutdown check raises)."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        if check is not None:
            check()
        time.sleep(min(left, 0.5))
