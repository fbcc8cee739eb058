"""One background thread of the transport: the base the settle, fetch, heartbeat and supervisor
threads share.

A :class:`Service` is a daemon thread that runs :meth:`Service.run` until it is stopped. It gives its
subclass a condition to wait on (:meth:`Service.idle`, :meth:`Service.wait_until`), a way to wake it
(:meth:`Service.wake`), the test for "stop now" (:attr:`Service.stopping`) and :meth:`Service.attempt`,
which runs one step and logs a database outage once (:mod:`transport.outage`), waiting a backoff delay
after each failed attempt when the service has one.

A service belongs to the thread that is its current thread: stopping it (or starting it again) makes
an old thread see :attr:`stopping` even if it has not noticed yet. Fork-safe: a forked child has
none of its parent's threads, so a service inherited across a fork starts afresh (a new lock too: the
parent's may have been held at fork) and never joins the parent's thread. Every entry point checks
the pid (start, stop, :meth:`wake`, :attr:`lock` and the waits), so a child that only wakes an
inherited service, or takes its lock, uses a lock of its own.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from transport import pids
from transport.db import CONNECTION_ERRORS
from transport.outage import Backoff, Outage


class Service:
    #: The thread's name (``pgboss-...``: tests and operators find the transport's threads by it).
    thread_name = "pgboss-service"

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        *,
        backoff: Backoff | None = None,
        error_pause: float = 0.0,
    ) -> None:
        self.logger = logger
        #: How the service names itself in log lines ("pg-boss settle", ...).
        self.what = what
        #: Waited after each attempt that met a database outage (None: no pause).
        self.backoff = backoff
        #: Seconds waited after an attempt that failed otherwise.
        self.error_pause = error_pause
        self.outage = Outage(logger, what)
        self._reset()

    def _reset(self) -> None:
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._woken = False
        self._pid = pids.current()

    def _check_pid(self) -> None:
        if self._pid != pids.current():  # inherited across fork: the thread and lock are the parent's
            self._reset()

    # -- life cycle -------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop` in the process that started it."""
        return self._thread is not None and self._pid == pids.current()

    def start(self) -> None:
        """Start the thread unless it runs already."""
        if self.running:  # the common case (called per delivery by the heartbeat's owner): no lock
            return
        self._check_pid()
        with self._cond:
            if self._thread is not None:
                return
            thread = threading.Thread(target=self._main, name=self.thread_name, daemon=True)
            self._thread = thread
        thread.start()

    def stop(self, timeout: float | None = 10.0, *, join: bool = True) -> None:
        """Tell the thread to stop and, with ``join``, wait up to ``timeout`` seconds for it to end
        (never from the thread itself)."""
        if self._pid != pids.current():
            self._reset()
            return
        with self._cond:
            thread, self._thread = self._thread, None
            self._cond.notify_all()
        if join and thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    @property
    def stopping(self) -> bool:
        """On the service's thread: whether it must end (stopped, or replaced by a newer start)."""
        return self._thread is not threading.current_thread()

    def _main(self) -> None:
        try:
            self.run()
        except Exception:  # a bug: logged, never silent
            self.logger.exception("%s thread failed", self.what)

    def run(self) -> None:
        """The thread's body; returns once :attr:`stopping`."""
        raise NotImplementedError

    # -- waiting ----------------------------------------------------------------------------------

    def wake(self) -> None:
        """End the thread's current :meth:`idle` early."""
        with self.lock:
            self._woken = True
            self._cond.notify_all()

    def idle(self, seconds: float | None) -> bool:
        """Wait up to ``seconds`` (None: for ever) or until woken or stopped; False once stopping."""
        with self.lock:
            if not self._woken and not self.stopping:
                self._cond.wait(seconds)
            self._woken = False
            return not self.stopping

    def wait_until(self, ready: Callable[[], bool], timeout: float | None = None) -> bool:
        """Wait until ``ready()`` (checked under the service's lock) or stopping; False once stopping."""
        with self.lock:
            self._cond.wait_for(lambda: self.stopping or ready(), timeout)
            return not self.stopping

    def pause(self, seconds: float) -> None:
        """Sleep ``seconds`` unless stopped meanwhile (wakes do not end it)."""
        with self.lock:
            self._cond.wait_for(lambda: self.stopping, seconds)

    @property
    def lock(self) -> threading.Condition:
        """The condition :meth:`idle` and :meth:`wait_until` wait on (notify it under its lock); this
        process's own (a forked child's is new, as is the rest of its state)."""
        self._check_pid()
        return self._cond

    # -- one step ---------------------------------------------------------------------------------

    def attempt(self, step: Callable[[], Any]) -> bool:
        """Run ``step``; a database outage is logged once and waited out with the backoff, any other
        error logged and followed by ``error_pause``. True when the step worked."""
        try:
            step()
        except CONNECTION_ERRORS as exc:
            self.outage.failed(exc)
            if self.backoff is not None:
                self.pause(self.backoff.next())
            return False
        except Exception as exc:
            self.logger.warning("%s failed (will retry): %r", self.what, exc)
            if self.error_pause:
                self.pause(self.error_pause)
            return False
        if self.outage.down:
            if self.backoff is not None:
                self.backoff.reset()
            self.outage.succeeded()
        return True
