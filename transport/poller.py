"""The transport's loop: what wakes a consumer, and the pump that fetches and delivers then.

One :class:`Poller` per connection (as Kombu's Redis transport has its ``MultiChannelPoller``):

* the notices: this connection's channels on the hub's LISTEN connection (pg-boss's insert channel
  and the broker channel); the listener thread queues what arrives and wakes the loop;
* the dirty queues: consumed durable queues that may have runnable jobs (a notice, a freed slot,
  a timer, the safety poll), which the channels fetch from at the next pump;
* the notice cooldown: every consumer of a queue hears each insert's NOTIFY, and all but one find
  the job taken. After a notice-driven fetch of a queue found nothing, the queue's next notices
  wait ``fetch_cooldown`` seconds (coalesced into one fetch then); a fetch that finds jobs, or a
  quiet spell longer than the cooldown, lets the next notice fetch at once. Notices that arrive
  while a fetch is out coalesce into one follow-up fetch (the dirty set holds a queue once);
* the timers: one at the next ``start_after`` of the consumed queues, and the safety poll;
* the worker's event loop (``register``/``unregister``, ``on_readable``, ``on_tick``, the waker),
  with the fetch thread, the settle thread and the supervisor a worker runs beside it;
* ``drain_events`` for blocking consumers (``celery inspect``, Flower's event thread, SimpleQueue).

The transport (:mod:`transport.broker`) owns the connection's parts; the poller reads them from it.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from transport import outage, timer_sweep
from transport.errors import DatabaseUnavailable
from transport.fetcher import Fetcher
from transport.listener import Subscription as Listening
from transport.maintenance import Supervisor
from transport.names import EXCHANGE_NOTICE, TIMER_NOTICE
from transport.settle import Held
from transport.shared import PREPARED_STATEMENTS
from transport.waker import Waker

logger = logging.getLogger(__name__)

#: A start_after timer fires this much late, so the database clock surely agrees.
TIMER_SLACK = 0.005

#: This process's consumer connections across Celery's restarts (backoff and one log line per outage).
RECONNECTS = outage.Reconnects(logging.getLogger("transport.broker"), "pg-boss consumer")


class Poller:
    def __init__(self, transport: Any) -> None:
        #: The :class:`transport.broker.Transport` whose channels this pumps (its options and parts).
        self.transport = transport
        self.manager = transport.manager
        #: Consumed durable queues that may have runnable jobs.
        self.dirty: set[str] = set()
        #: The next ``start_after`` timer must be worked out again.
        self.timers_stale = True
        self._consumed: set[str] | None = None
        #: This transport's channels on the hub's LISTEN connection, and what arrived on them (the
        #: listener thread appends; the event loop or a blocking drain takes).
        self._listener: Listening | None = None
        self._notices: collections.deque[tuple[str, str]] = collections.deque()
        #: Queues :meth:`wake` was told about, for the next pump to mark dirty.
        self._woken: collections.deque[str] = collections.deque()
        self._listen_lost: BaseException | None = None
        self._notified = threading.Event()
        #: A busy worker's fetches, off its event loop (None outside an event loop).
        self.fetcher: Fetcher | None = None
        self._loop: Any = None
        self._loop_entries: list[Any] = []
        self._start_timer: Any = None
        self._next_start: float | None = None
        self._next_safety = 0.0
        self._skew = 0.0
        self._supervisor: Supervisor | None = None
        self._waker: Waker | None = None
        #: A byte is in the waker's pipe, not read by the loop yet.
        self._wake_pending = False
        self._pid = os.getpid()
        self._notify_checked: set[str] = set()
        #: Until when (monotonic) Node may insert into a consumed queue without NOTIFY.
        self._unheard_until = 0.0
        #: Queues dirtied by a notice since their last fetch; those of the fetch that is out.
        self._noticed: set[str] = set()
        self._fetching_noticed: set[str] = set()
        #: Queue -> until when (monotonic) its notices wait: its last notice-driven fetch was empty.
        self._cooldown_until: dict[str, float] = {}
        #: Noticed queues waiting for their cooldown to end, and the loop timer that ends it.
        self._deferred: set[str] = set()
        self._cooldown_timer: Any = None
        #: When (monotonic) the armed cooldown timer fires.
        self._cooldown_at = math.inf

    # -- what to look at --------------------------------------------------------------------------

    def mark_dirty(self, queues: Iterable[str]) -> None:
        consumed = self.consumed_durable()
        self.dirty.update(q for q in queues if q in consumed)
        self.timers_stale = True

    def consumers_changed(self) -> None:
        self._consumed = None
        self.transport.mailboxes.bindings_changed()

    def consumed_durable(self) -> set[str]:
        if self._consumed is None:
            self._consumed = {q for channel in self.transport.channels for q in channel._durable}
        return self._consumed

    def mark_all_dirty(self) -> None:
        self.dirty.update(self.consumed_durable())
        self.transport.mailboxes.dirty = True
        self.timers_stale = True

    def wake(self, queue: str) -> None:
        """Tell every consumer (Node's too) that jobs of ``queue`` are runnable; this one fetches at
        its next pump. Any thread may call it (the settle thread does): the dirty set and the
        consumed-queue cache are the loop's, so the queue reaches them through :attr:`_woken`."""
        self.transport.publisher.announce(queue)
        self._woken.append(queue)
        self._signal()

    def enable_notify(self, queue: str) -> None:
        """Make a queue this process consumes NOTIFY on every insert, Node's too. Node's
        ``createQueue`` leaves pg-boss's ``notify`` off, and then its sends would wake no one: they
        would wait for the safety poll."""
        if queue in self._notify_checked:
            return
        if not self.transport.notify_queues or not self.manager.info.has("notify"):
            self._unheard_until = math.inf  # Node's sends never wake us: poll as often as Node does
        elif self.manager.enable_notify(queue):
            logger.info("pg-boss notify turned on for queue %r: jobs Node sends now wake this worker", queue)
            # Node processes already running see it at their next queue-cache refresh.
            self._unheard_until = max(
                self._unheard_until, time.monotonic() + self.transport.node_cache_seconds
            )
        self._notify_checked.add(queue)

    # -- notices ----------------------------------------------------------------------------------

    def _on_notices(self, notices: Iterable[tuple[str, str]]) -> None:
        for channel, payload in notices:
            if channel == self.manager.channel:
                if payload in self.consumed_durable():
                    self._noticed_insert(payload)
            elif payload.startswith(EXCHANGE_NOTICE):
                self.transport.mailboxes.on_notice(payload[len(EXCHANGE_NOTICE) :])
            elif payload.startswith(TIMER_NOTICE):
                if payload[len(TIMER_NOTICE) :] in self.consumed_durable():
                    self.timers_stale = True

    def _noticed_insert(self, queue: str) -> None:
        """An insert notice for ``queue``: fetch at the next pump, or once its cooldown is over."""
        until = self._cooldown_until.get(queue)
        if until is not None and time.monotonic() < until:
            if queue not in self.dirty:  # a fetch that is due anyway serves this notice too
                self._deferred.add(queue)
                self._arm_cooldown(until)
            return
        self._cooldown_until.pop(queue, None)
        self._deferred.discard(queue)  # its cooldown is over: this fetch serves a deferred notice too
        self.dirty.add(queue)
        self._noticed.add(queue)

    # -- the notice cooldown ----------------------------------------------------------------------

    def fetch_started(self, queues: Iterable[str]) -> None:
        """A channel fetches ``queues`` now (inline, or handed to the fetch thread)."""
        taken = self._noticed.intersection(queues)
        self._noticed.difference_update(taken)
        self._fetching_noticed = taken

    def fetch_ended(self, found: int | None) -> None:
        """The fetch :meth:`fetch_started` announced returned ``found`` jobs (None: it failed)."""
        noticed, self._fetching_noticed = self._fetching_noticed, set()
        if found is None:
            self._noticed |= noticed  # its queues stay dirty; the retry is notice-driven still
        elif found:
            for queue in noticed:
                self._cooldown_until.pop(queue, None)
        elif noticed and self.transport.fetch_cooldown > 0:
            until = time.monotonic() + self.transport.fetch_cooldown
            for queue in noticed:
                self._cooldown_until[queue] = until

    def _arm_cooldown(self, until: float) -> None:
        """A loop timer at ``until`` (one at a time: one armed later is moved earlier)."""
        if self._loop is None or (self._cooldown_timer is not None and self._cooldown_at <= until):
            return
        if self._cooldown_timer is not None:
            self._cooldown_timer.cancel()
        self._cooldown_at = until
        self._cooldown_timer = self._loop.call_later(max(until - time.monotonic(), 0.0), self._cooled)
        self._wake_loop()  # the loop may have chosen its poll timeout before this timer existed

    def _cooled(self) -> None:
        self._cooldown_timer, self._cooldown_at = None, math.inf
        self.release_cooled()
        if self.dirty:
            self._wake_loop()  # the tick that follows fetches

    def release_cooled(self) -> None:
        """Deferred notices whose cooldown is over become dirty queues (each one fetch)."""
        if not self._deferred:
            return
        now = time.monotonic()
        consumed = self.consumed_durable()
        for queue in list(self._deferred):
            if self._cooldown_until.get(queue, 0.0) <= now:
                self._deferred.discard(queue)
                self._cooldown_until.pop(queue, None)
                if queue in consumed:
                    self.dirty.add(queue)
                    self._noticed.add(queue)
        if self._deferred:
            self._arm_cooldown(min(self._cooldown_until.get(q, now) for q in self._deferred))

    def cooldown_due(self) -> float | None:
        """When (monotonic) the earliest deferred notice is due, if any."""
        if not self._deferred:
            return None
        return min(self._cooldown_until.get(q, 0.0) for q in self._deferred)

    def ensure_listener(self) -> Listening:
        """This transport's channels on the hub's LISTEN connection, listened on before it returns
        (raises a connection error when the database cannot be reached)."""
        if self._pid != os.getpid():  # inherited across fork: start afresh, never touch the parent's
            self._listener, self._pid = None, os.getpid()
        if self._listener is None or self._listener.closed:
            transport = self.transport
            transport.hub.ensure_installed(self.manager, PREPARED_STATEMENTS)
            self._listen_lost = None
            listening = transport.hub.listener.subscribe(
                (self.manager.channel, transport.log.channel), self._on_notice, on_lost=self._on_listen_lost
            )
            try:
                listening.wait(transport.connect_timeout)
            except BaseException:
                listening.close()
                raise
            self._listener = listening
            self._skew = (self.manager.now() - _utcnow()).total_seconds()
            self.mark_all_dirty()  # whatever was NOTIFYed while not listening is lost
        return self._listener

    # Called on the listener thread: queue and wake, nothing more.

    def _on_notice(self, channel: str, payload: str) -> None:
        self._notices.append((channel, payload))
        self._signal()

    def _on_listen_lost(self, exc: BaseException) -> None:
        self._listen_lost = exc
        self._signal()

    def _signal(self) -> None:
        self._notified.set()
        self._wake_loop()

    def _poll_listener(self) -> list[tuple[str, str]]:
        """New notices; once the LISTEN connection was lost, drop the pool's idle connections and
        raise, so Celery reconnects (listening again, all queues dirty) instead of failing once per
        dead pooled connection."""
        lost = self._listen_lost
        if lost is not None:
            if self._listener is not None:
                self._listener.close()
            self.manager.db.close()  # idle ones only; the pool reopens on next use
            raise DatabaseUnavailable(f"the LISTEN connection was lost: {lost}")
        self._notified.clear()
        notices = []
        while self._notices:
            notices.append(self._notices.popleft())
        return notices

    # -- one pass: what both the event loop and blocking drain_events run --------------------------

    def pump(self) -> int:
        transport = self.transport
        settler = transport.settler
        if settler.pending and not settler.batching:
            settler.flush()  # a write that failed earlier
        while self._woken:
            self.mark_dirty([self._woken.popleft()])
        delivered = 0
        if self.fetcher is not None and self.fetcher.done:
            delivered += self._deliver_fetched()
        if self._deferred:
            self.release_cooled()
        mailboxes = transport.mailboxes
        if mailboxes.due:
            mailboxes.read()
        if mailboxes:
            for channel in transport.channels:
                delivered += channel.pump_transient()
        if self.dirty:
            for channel in list(transport.channels):
                delivered += channel.pump_durable(self.dirty)
        if self.timers_stale and not self.dirty:
            self._schedule_next_start()
        if delivered and len(transport.heartbeat):
            transport.heartbeat.start()
        return delivered

    def _deliver_fetched(self) -> int:
        assert self.fetcher is not None
        fetched = self.fetcher.collect()
        if fetched is None:
            return 0
        self.fetch_ended(None if fetched.error is not None else len(fetched.jobs))
        if fetched.error is not None:
            self.dirty.update(fetched.queues)  # marked clean when the fetch was asked for
            raise fetched.error
        if len(fetched.jobs) >= fetched.limit:
            self.dirty.update(fetched.queues)  # a full fetch may have left more
        if fetched.channel.closed:
            self.hand_back(fetched.jobs)
            return 0
        return fetched.channel.deliver_jobs(fetched.jobs)

    def hand_back(self, jobs: Iterable[Any]) -> None:
        """Jobs fetched for a consumer that is gone: back to ``created``, fenced on their attempt."""
        for job in jobs:
            self.transport.settler.restore(Held.of(job))

    def soon(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` in the event loop's next round (at once without an event loop)."""
        if self._loop is not None:
            self._loop.call_soon(callback)
        else:
            callback()

    def _wake_loop(self) -> None:
        """Make the event loop go round at once (any thread; nothing without an event loop). One
        byte at a time is enough: until the loop has read it, the loop is bound to go round anyway."""
        waker = self._waker  # read once: close() may drop it meanwhile on another thread
        if waker is not None and not self._wake_pending:
            self._wake_pending = True
            waker.wake()

    # -- timers -----------------------------------------------------------------------------------

    def _schedule_next_start(self) -> None:
        self.timers_stale = False
        queues = self.consumed_durable()
        if not queues:
            return
        at = self.manager.next_start_after(sorted(queues))
        if at is None:
            self._set_start_timer(None)
            return
        delay = (at - _utcnow()).total_seconds() - self._skew + TIMER_SLACK
        self._set_start_timer(max(delay, 0.0))

    def _set_start_timer(self, delay: float | None) -> None:
        if self._loop is not None:
            if self._start_timer is not None:
                self._start_timer.cancel()
                self._start_timer = None
            if delay is not None:
                self._start_timer = self._loop.call_later(delay, self._on_start_due)
                # The hub chose this iteration's poll timeout before the tick added the timer.
                self._wake_loop()
        else:
            self._next_start = None if delay is None else time.monotonic() + delay

    def _on_start_due(self) -> None:
        self._start_timer = None
        self._next_start = None
        self.dirty.update(self.consumed_durable())
        self.timers_stale = True

    def safety_interval(self) -> float:
        """Seconds to the next safety poll: the transport's ``polling_interval``, at most Node's own
        while Node may send without NOTIFY or a consumed queue is group-limited."""
        transport = self.transport
        # Nothing announces a group slot that a Node worker frees: look as often as Node's workers.
        if time.monotonic() < self._unheard_until or not transport.groups.limits.keys().isdisjoint(
            self.consumed_durable()
        ):
            return min(transport.polling_interval, transport.node_polling_interval)
        return transport.polling_interval

    def _safety_poll(self) -> None:
        self._next_safety = time.monotonic() + self.safety_interval()
        self.mark_all_dirty()

    def _safety_tick(self) -> None:
        if time.monotonic() >= self._next_safety:
            self._safety_poll()

    # -- blocking consumers -----------------------------------------------------------------------

    def drain_events(self, timeout: float | None = None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        self.ensure_listener()
        while True:
            self._on_notices(self._poll_listener())
            now = time.monotonic()
            if now >= self._next_safety:
                self._safety_poll()
            if self._next_start is not None and now >= self._next_start:
                self._on_start_due()
            if self.pump():
                return
            wait = self._next_safety - time.monotonic()
            if self._next_start is not None:
                wait = min(wait, self._next_start - time.monotonic())
            cooled = self.cooldown_due()
            if cooled is not None:
                wait = min(wait, cooled - time.monotonic())
            if self.transport.mailboxes.waiting:
                wait = min(wait, 0.05)
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError()
                wait = min(wait, remaining)
            self._notified.wait(max(wait, 0.0))

    # -- the worker's event loop ------------------------------------------------------------------

    def register(self, loop: Any) -> None:
        transport = self.transport
        if self._loop is not None:
            self.unregister(self._loop)
        if self._waker is None or not self._waker.owned:
            self._waker = Waker()
        self._wake_pending = False
        try:
            self.ensure_listener()
        except transport.connection_errors as exc:
            RECONNECTS.lost(exc)
            raise
        self._loop = loop
        if transport.settle_batch:
            transport.settler.start()
        # The listener thread wakes the loop through the waker when a notification arrives.
        loop.add_reader(self._waker.fileno(), self._on_wake)
        self.fetcher = Fetcher(transport.claims.fetch, self._wake_loop, prepare=transport.claims.open_session)
        self.fetcher.start()
        loop.on_tick.add(self.on_tick)
        # A tick finer than either interval, so each poll comes within a quarter of its due time.
        tick = min(transport.polling_interval, transport.node_polling_interval) / 4
        self._loop_entries = [loop.call_repeatedly(tick, self._safety_tick), timer_sweep.sweep_every(loop)]
        if transport.supervise and self._supervisor is None:
            self._supervisor = Supervisor(
                self.manager,
                supervise_interval=transport.supervise_interval,
                monitor_interval=transport.monitor_interval,
                maintenance_interval=transport.maintenance_interval,
                broadcast_retention=transport.broadcast_retention,
                on_jobs_moved=lambda: loop.call_soon(self.mark_all_dirty),
            )
            self._supervisor.start()

    def unregister(self, loop: Any) -> None:
        if self._waker is not None and self._waker.owned:
            try:
                loop.remove_reader(self._waker.fileno())
            except (KeyError, ValueError, OSError):
                pass
        loop.on_tick.discard(self.on_tick)
        for entry in self._loop_entries:
            entry.cancel()
        self._loop_entries = []
        if self._start_timer is not None:
            self._start_timer.cancel()
            self._start_timer = None
        if self._cooldown_timer is not None:
            self._cooldown_timer.cancel()
            self._cooldown_timer, self._cooldown_at = None, math.inf
        if self.fetcher is not None:
            fetcher, self.fetcher = self.fetcher, None
            leftover = fetcher.stop()
            if leftover is not None:
                # Its queues were marked clean when it was asked for: whether it never started or its
                # jobs go back now, they are to be fetched again by whoever consumes them next.
                self.fetch_ended(None)
                self.dirty.update(leftover.queues)
                self.hand_back(leftover.jobs)  # written by the settler's stop below
        try:
            self.transport.settler.stop()
        except Exception as exc:  # the database is unreachable: the rest of closing must still run
            logger.warning(
                "pg-boss: acks and hand-backs not written on close (%r); their jobs are retried "
                "once their heartbeat or expiry runs out",
                exc,
            )
        self._loop = None

    def _on_wake(self) -> None:
        assert self._waker is not None
        self._waker.drain()
        # Cleared once the pipe is empty: a wake that found it set came before the drain, and what
        # it announced is seen by this round of the loop (this callback, then the next tick).
        self._wake_pending = False
        if self._notices or self._listen_lost is not None:
            self.on_readable()

    def on_readable(self) -> None:
        try:
            self._on_notices(self._poll_listener())
            # Fetch right here rather than in the next tick: what is delivered from a reader callback
            # reaches the pool in the very next loop iteration.
            self.pump()
        except self.transport.connection_errors as exc:
            RECONNECTS.lost(exc)  # Celery reconnects; the next connection waits a backoff delay
            raise

    def on_tick(self) -> None:
        try:
            if self._notices or self._listen_lost is not None:
                self._on_notices(self._poll_listener())
            delivered = self.pump()
        except self.transport.connection_errors as exc:
            RECONNECTS.lost(exc)  # Celery reconnects; the next connection waits a backoff delay
            raise
        RECONNECTS.working()
        if delivered:
            # Other tick callbacks (the prefork pool's, which writes tasks to its children) may have
            # run before ours in this iteration: make the loop go round again instead of sleeping.
            self._wake_loop()

    # -- closing ----------------------------------------------------------------------------------

    def close(self) -> None:
        """The connection closes: off the loop, the supervisor stopped, the LISTEN channels and the
        waker let go (both pid-guarded)."""
        if self._loop is not None:
            self.unregister(self._loop)
        if self._supervisor is not None:
            self._supervisor.stop()
            self._supervisor = None
        if self._listener is not None:
            self._listener.close()  # pid-guarded
            self._listener = None
        if self._waker is not None:
            self._waker.close()  # pid-guarded
            self._waker = None

    @property
    def listening(self) -> bool:
        return self._listener is not None


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
