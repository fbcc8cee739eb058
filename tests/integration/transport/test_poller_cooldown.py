"""transport.poller.Poller's notice cooldown: a queue's insert notices wait ``fetch_cooldown``
seconds after a notice-driven fetch of it found nothing, coalesced into one fetch then; a fetch
that finds jobs, or a quiet spell, lets the next notice fetch at once."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import kombu
import psycopg2
import pytest
from kombu.asynchronous import Hub

from tests.dbutil import pgboss_url

QUEUE = "cooled"
COOLDOWN = 0.6


def options(**extra: Any) -> dict[str, Any]:
    return {
        "schema": "c_" + uuid.uuid4().hex[:12],
        "polling_interval": 60,  # only notices (and the cooldown's end) bring jobs here
        "supervise": False,
        "settle_on_ack": True,
        "fetch_cooldown": COOLDOWN,
        **extra,
    }


class Consumer:
    """A connection consuming QUEUE, what it got, and how many fetches it made."""

    def __init__(self, conn: kombu.Connection) -> None:
        self.conn = conn
        self.got: list[Any] = []
        self.fetches = 0
        claims = conn.transport.claims
        fetch = claims.fetch

        def counted(*args: Any, **kwargs: Any) -> list[Any]:
            self.fetches += 1
            return fetch(*args, **kwargs)

        claims.fetch = counted

    @property
    def poller(self) -> Any:
        return self.conn.transport.poller

    def announce(self, times: int = 1) -> None:
        """Insert notices for QUEUE with no job behind them (another consumer took it)."""
        conn = psycopg2.connect(self.conn.transport.url)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                for _ in range(times):
                    cur.execute("SELECT pg_notify(%s, %s)", (self.poller.manager.channel, QUEUE))
        finally:
            conn.close()

    def settle_idle(self) -> None:
        """Drain until nothing is left to fetch (the first look at every consumed queue)."""
        with pytest.raises(TimeoutError):
            self.conn.drain_events(timeout=0.3)


@pytest.fixture
def transport_options() -> dict[str, Any]:
    return options()


@pytest.fixture
def consumer(db_url: str, transport_options: dict[str, Any]) -> Iterator[Consumer]:
    queue = kombu.Queue(QUEUE, routing_key=QUEUE)
    with kombu.Connection(pgboss_url(db_url), transport_options=transport_options) as conn:
        c = Consumer(conn)
        with conn.Consumer(queue, callbacks=[lambda body, message: c.got.append(message)]):
            c.settle_idle()
            yield c


def publish(db_url: str, transport_options: dict[str, Any], n: int = 1) -> None:
    queue = kombu.Queue(QUEUE, routing_key=QUEUE)
    with kombu.Connection(pgboss_url(db_url), transport_options=transport_options) as conn:
        with conn.Producer() as producer:
            for i in range(n):
                producer.publish({"n": i}, routing_key=QUEUE, declare=[queue], retry=True)


def wait_for(done: Callable[[], bool], step: Callable[[], None], timeout: float) -> float:
    """Seconds until ``done``, running ``step`` meanwhile; fails after ``timeout``."""
    started = time.monotonic()
    while not done():
        assert time.monotonic() - started < timeout, "timed out"
        step()
    return time.monotonic() - started


def drain_step(consumer: Consumer) -> Callable[[], None]:
    def step() -> None:
        try:
            consumer.conn.drain_events(timeout=0.05)
        except TimeoutError:
            pass

    return step


def test_a_notice_burst_after_an_empty_fetch_becomes_one_fetch_within_the_cooldown(
    db_url: str, transport_options: dict[str, Any], consumer: Consumer
) -> None:
    before = consumer.fetches
    consumer.announce()
    wait_for(lambda: consumer.fetches > before, drain_step(consumer), 5)  # found nothing: cooling
    assert consumer.fetches == before + 1
    step = drain_step(consumer)
    for _ in range(4):  # notices spread over the cooldown, each heard on its own
        consumer.announce(times=5)
        step()
    publish(db_url, transport_options)
    published = time.monotonic()
    wait_for(lambda: len(consumer.got) == 1, step, 10)
    waited = time.monotonic() - published
    # Twenty-one notices (the job's among them) made one fetch, no later than the cooldown's end.
    assert consumer.fetches == before + 2
    assert waited < COOLDOWN + 0.5
    consumer.got[0].ack()


def test_a_notice_after_a_quiet_spell_is_fetched_at_once(
    db_url: str, transport_options: dict[str, Any], consumer: Consumer
) -> None:
    consumer.announce()
    wait_for(lambda: bool(consumer.poller._cooldown_until), drain_step(consumer), 5)
    time.sleep(COOLDOWN + 0.1)  # the cooldown runs out unused
    publish(db_url, transport_options)
    published = time.monotonic()
    wait_for(lambda: len(consumer.got) == 1, drain_step(consumer), 10)
    assert time.monotonic() - published < COOLDOWN / 2
    consumer.got[0].ack()


def test_a_fetch_that_finds_jobs_lets_the_next_notice_fetch_at_once(
    db_url: str, transport_options: dict[str, Any], consumer: Consumer
) -> None:
    for n in range(1, 4):
        publish(db_url, transport_options)
        published = time.monotonic()
        wait_for(lambda n=n: len(consumer.got) == n, drain_step(consumer), 10)
        assert time.monotonic() - published < COOLDOWN / 2
        assert not consumer.poller._cooldown_until
    for message in consumer.got:
        message.ack()


@pytest.mark.parametrize("transport_options", [options(fetch_cooldown=0)])
def test_without_a_cooldown_each_notice_after_an_empty_fetch_fetches(consumer: Consumer) -> None:
    for _ in range(3):
        before = consumer.fetches
        consumer.announce()
        wait_for(lambda before=before: consumer.fetches > before, drain_step(consumer), 5)
    assert not consumer.poller._cooldown_until and not consumer.poller._deferred


def test_on_an_event_loop_the_cooldowns_end_wakes_the_loop_to_fetch(db_url: str) -> None:
    transport_options = options()
    queue = kombu.Queue(QUEUE, routing_key=QUEUE)
    conn = kombu.Connection(pgboss_url(db_url), transport_options=transport_options)
    hub = Hub()
    try:
        conn.transport.register_with_event_loop(conn.connection, hub)
        c = Consumer(conn)
        kombu_consumer = conn.Consumer(queue, callbacks=[lambda body, message: c.got.append(message)])
        kombu_consumer.consume()
        # The first look at the queue and the loop's first safety poll (the next one is a minute away).
        wait_for(
            lambda: not c.poller.dirty and c.poller._next_safety > time.monotonic() + 30, hub.run_once, 5
        )
        before = c.fetches
        c.announce()
        wait_for(lambda: c.fetches > before, hub.run_once, 5)
        assert c.poller._cooldown_until  # empty: cooling
        publish(db_url, transport_options)
        published = time.monotonic()
        wait_for(lambda: len(c.got) == 1, hub.run_once, 10)  # the cooldown's timer, not a poll
        assert time.monotonic() - published < COOLDOWN + 0.5
        assert c.fetches == before + 2
        c.got[0].ack()
        wait_for(lambda: not conn.transport.settler.pending, hub.run_once, 5)
    finally:
        conn.close()
        hub.close()


class FakeTimer:
    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeLoop:
    """The loop calls the cooldown makes: the timers it armed."""

    def __init__(self) -> None:
        self.timers: list[FakeTimer] = []

    def call_later(self, delay: float, callback: Callable[[], None]) -> FakeTimer:
        self.timers.append(FakeTimer(delay))
        return self.timers[-1]

    def armed(self) -> list[FakeTimer]:
        return [t for t in self.timers if not t.cancelled]


def test_a_notice_deferred_to_an_earlier_end_moves_the_cooldown_timer_earlier(consumer: Consumer) -> None:
    poller = consumer.poller
    loop = FakeLoop()
    poller._loop = loop
    try:
        now = time.monotonic()
        poller._cooldown_until.update({QUEUE: now + 30, "other": now + 0.2})
        poller._noticed_insert(QUEUE)
        assert [t.delay > 20 for t in loop.armed()] == [True]
        poller._noticed_insert("other")  # cooled down sooner: its notice must not wait for QUEUE's end
        assert [t.delay < 1 for t in loop.armed()] == [True]
        poller._noticed_insert(QUEUE)  # a later end leaves the earlier timer as it is
        assert [t.delay < 1 for t in loop.armed()] == [True]
    finally:
        poller._loop, poller._cooldown_timer = None, None
        poller._deferred.clear()
        poller._cooldown_until.clear()


def test_a_fetch_asked_for_but_not_started_leaves_its_queue_dirty_once_off_the_loop(db_url: str) -> None:
    from transport.fetcher import Fetcher

    conn = kombu.Connection(pgboss_url(db_url), transport_options=options())
    hub = Hub()
    try:
        conn.transport.register_with_event_loop(conn.connection, hub)
        c = Consumer(conn)
        conn.Consumer(kombu.Queue(QUEUE, routing_key=QUEUE), callbacks=[c.got.append]).consume()
        poller = c.poller
        wait_for(lambda: not poller.dirty, hub.run_once, 5)
        running, poller.fetcher = poller.fetcher, Fetcher(lambda *_: [], lambda: None)  # never started
        assert running is not None
        running.stop()
        channel = conn.default_channel
        poller.fetch_started([QUEUE])
        poller.fetcher.submit(channel, [QUEUE], 4, {})
        poller.dirty.discard(QUEUE)  # as the channel does when it hands a fetch to the fetch thread
        poller.unregister(hub)
        assert QUEUE in poller.dirty  # the next registration fetches it, without waiting for a poll
    finally:
        conn.close()
        hub.close()
