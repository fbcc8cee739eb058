"""transport.service.Service: the background-thread base of the settle, fetch, heartbeat and
supervisor threads (start/stop, wake, the stop test, outages logged once, fork safety)."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable

import psycopg2
import pytest

from transport.outage import Backoff
from transport.service import Service

logger = logging.getLogger("tests.service")


class Ticker(Service):
    """Counts its rounds; each round waits up to ``interval`` or until woken."""

    thread_name = "pgboss-test-ticker"

    def __init__(self, interval: float | None = None, **kwargs: object) -> None:
        super().__init__(logger, "test ticker", **kwargs)  # type: ignore[arg-type]
        self.interval = interval
        self.rounds = 0
        self.ended = threading.Event()

    def run(self) -> None:
        while self.idle(self.interval):
            self.rounds += 1
        self.ended.set()


def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def threads_named(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == name and t.is_alive()]


def test_start_runs_one_named_thread_and_stop_ends_it() -> None:
    ticker = Ticker()
    ticker.start()
    ticker.start()  # already running: still one thread
    try:
        assert ticker.running and len(threads_named(Ticker.thread_name)) == 1
    finally:
        ticker.stop()
    assert ticker.ended.is_set() and not ticker.running  # stop joined the thread
    assert not threads_named(Ticker.thread_name)


def test_wake_ends_an_idle_wait_at_once() -> None:
    ticker = Ticker(interval=None)  # waits for ever unless woken
    ticker.start()
    try:
        ticker.wake()
        assert eventually(lambda: ticker.rounds >= 1, timeout=2)
    finally:
        ticker.stop()


def test_a_wake_before_the_wait_is_not_lost() -> None:
    ticker = Ticker(interval=None)
    ticker.wake()  # before the thread waits: its first idle returns at once
    ticker.start()
    try:
        assert eventually(lambda: ticker.rounds >= 1, timeout=2)
    finally:
        ticker.stop()


def test_a_restarted_service_ends_its_old_thread() -> None:
    ticker = Ticker(interval=0.01)
    ticker.start()
    first = threads_named(Ticker.thread_name)
    ticker.stop(join=False)
    ticker.start()  # the old thread, perhaps still in a round, sees it is no longer current
    try:
        assert eventually(lambda: not any(t.is_alive() for t in first))
        assert len(threads_named(Ticker.thread_name)) == 1
    finally:
        ticker.stop()


def test_stopping_from_its_own_thread_does_not_join_itself() -> None:
    class Quitter(Service):
        thread_name = "pgboss-test-quitter"

        def run(self) -> None:
            self.stop()  # would deadlock if it joined itself
            assert self.stopping

    quitter = Quitter(logger, "quitter")
    quitter.start()
    assert eventually(lambda: not threads_named(Quitter.thread_name))
    assert not quitter.running


class Steps(Service):
    """Runs the given steps through :meth:`attempt` on its thread, timing them."""

    thread_name = "pgboss-test-steps"

    def __init__(self, steps: list[Callable[[], None]], **kwargs: object) -> None:
        super().__init__(logger, "test part", **kwargs)  # type: ignore[arg-type]
        self.steps = steps
        self.results: list[bool] = []
        self.took: list[float] = []

    def run(self) -> None:
        for step in self.steps:
            started = time.monotonic()
            self.results.append(self.attempt(step))
            self.took.append(time.monotonic() - started)


def run_steps(service: Steps) -> None:
    service.start()
    assert eventually(lambda: len(service.results) == len(service.steps))
    service.stop()


def test_an_outage_is_logged_once_and_waited_out_with_the_backoff(caplog: pytest.LogCaptureFixture) -> None:
    def failing() -> None:
        raise psycopg2.OperationalError("server closed the connection unexpectedly")

    service = Steps([failing, failing, lambda: None], backoff=Backoff(first=0.05, cap=0.05))
    with caplog.at_level(logging.DEBUG, logger="tests.service"):
        run_steps(service)
    assert service.results == [False, False, True]
    assert all(took >= 0.025 for took in service.took[:2])  # each failure waited its backoff delay
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and r.name == logger.name]
    assert len(warnings) == 1 and "test part: database unavailable" in warnings[0].getMessage()
    assert any("database available again" in r.getMessage() for r in caplog.records)
    assert not service.outage.down and service.backoff is not None and service.backoff.attempts == 0


def test_another_error_is_logged_and_followed_by_its_pause(caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> None:
        raise ValueError("a bug")

    service = Steps([broken], error_pause=0.05)
    with caplog.at_level(logging.WARNING, logger="tests.service"):
        run_steps(service)
    assert service.results == [False] and service.took[0] >= 0.045  # the pause (a clock tick of slack)
    ours = [r.getMessage() for r in caplog.records if r.name == logger.name]  # not other tests' threads
    assert ours == ["test part failed (will retry): ValueError('a bug')"]
    assert not service.outage.down  # not an outage


def test_a_pause_ends_when_the_service_stops() -> None:
    paused = threading.Event()

    class Sleeper(Service):
        thread_name = "pgboss-test-sleeper"

        def run(self) -> None:
            self.pause(60)
            paused.set()

    sleeper = Sleeper(logger, "sleeper")
    sleeper.start()
    started = time.monotonic()
    sleeper.stop(timeout=5)
    assert paused.is_set() and time.monotonic() - started < 5


def test_a_bug_in_run_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    class Buggy(Service):
        thread_name = "pgboss-test-buggy"

        def run(self) -> None:
            raise RuntimeError("oops")

    buggy = Buggy(logger, "buggy part")
    with caplog.at_level(logging.ERROR, logger="tests.service"):
        buggy.start()
        assert eventually(lambda: not threads_named(Buggy.thread_name))
    assert any(r.getMessage() == "buggy part thread failed" and r.exc_info for r in caplog.records)
    buggy.stop()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_starts_afresh_and_never_joins_its_parents_thread() -> None:
    ticker = Ticker(interval=0.01)
    ticker.start()
    try:
        pid = os.fork()
        if pid == 0:  # the child: the parent's thread is not here
            code = 1
            try:
                if not ticker.running:
                    ticker.stop()  # returns at once: nothing of the parent's to join
                    ticker.start()
                    rounds = ticker.rounds
                    code = 0 if eventually(lambda: ticker.rounds > rounds, timeout=2) else 2
                    ticker.stop()
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert ticker.running  # the parent's thread runs on
    finally:
        ticker.stop()


def exit_code_within(pid: int, timeout: float) -> int | None:
    """The forked child's exit code, or None (the child killed) if it has not ended in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_wakes_and_locks_its_own_service_not_the_parents() -> None:
    ticker = Ticker(interval=None)
    ticker.start()
    held, release = threading.Event(), threading.Event()

    def hold_the_lock() -> None:  # another thread of the parent holds the lock at fork
        with ticker.lock:
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold_the_lock, name="pgboss-test-holder", daemon=True)
    holder.start()
    try:
        assert held.wait(5)
        pid = os.fork()
        if pid == 0:  # the child: the holder is not here, so the parent's lock would never come free
            code = 1
            try:
                ticker.wake()
                with ticker.lock:
                    ticker.lock.notify_all()
                code = 0 if not ticker.running else 2
            finally:
                os._exit(code)
        assert exit_code_within(pid, timeout=5) == 0  # None: the child hung on the parent's lock
    finally:
        release.set()
        holder.join(5)
    assert ticker.running  # the parent's service runs on, its lock its own
    ticker.wake()
    assert eventually(lambda: ticker.rounds >= 1, timeout=2)
    ticker.stop()
