"""The result waiter's re-read pace (transport.backend._Pace): fast while nothing announced a job
(a Node worker may settle it at any moment and notifies nothing), slow once a zeke worker announced
it running (it announces the end), and slowing down for a job that stays unchanged; and ending a
wait never blocks on the waiter's lock (Celery ends waits from ``AsyncResult.__del__``)."""

from __future__ import annotations

import threading
import uuid

import pytest

from transport.backend import (
    PENDING_OPS_MAX,
    REREAD_FAST_MAX,
    REREAD_FAST_WINDOW,
    REREAD_FIRST,
    REREAD_GROWTH,
    REREAD_INTERVAL,
    PgBossResultConsumer,
    _Pace,
)


def test_an_unannounced_job_is_reread_fast_and_the_gap_grows_to_the_fast_cap() -> None:
    pace = _Pace(due=REREAD_FIRST, since=0.0)
    pace.after_read(0.0, "PENDING")  # first read: the state is news
    assert pace.gap == REREAD_FIRST
    gaps = []
    for n in range(1, 10):
        pace.after_read(n * 0.1, "PENDING")
        gaps.append(pace.gap)
    assert gaps[0] == pytest.approx(REREAD_FIRST * REREAD_GROWTH)
    assert gaps == sorted(gaps) and gaps[-1] == REREAD_FAST_MAX
    assert pace.due == pytest.approx(0.9 + REREAD_FAST_MAX)


def test_a_change_of_state_starts_over() -> None:
    pace = _Pace(due=0.0, since=0.0, status="PENDING", gap=REREAD_FAST_MAX)
    pace.after_read(5.0, "STARTED")  # a Node worker took it: its end may come at any moment
    assert (pace.gap, pace.since, pace.status) == (REREAD_FIRST, 5.0, "STARTED")


def test_a_job_a_zeke_worker_announced_is_left_to_its_notify() -> None:
    pace = _Pace(due=0.0, since=0.0, status="STARTED", announced=True)
    pace.after_read(1.0, "STARTED")
    assert pace.gap == REREAD_INTERVAL


def test_a_job_unchanged_for_long_is_reread_slowly_again() -> None:
    pace = _Pace(due=0.0, since=0.0, status="PENDING", gap=REREAD_FAST_MAX)
    pace.after_read(REREAD_FAST_WINDOW + 1, "PENDING")
    assert REREAD_FAST_MAX < pace.gap <= REREAD_INTERVAL
    for n in range(20):
        pace.after_read(REREAD_FAST_WINDOW + 2 + n, "PENDING")
    assert pace.gap == REREAD_INTERVAL


def _consumer() -> PgBossResultConsumer:
    """A result waiter without a backend: what ending a wait does touches no database."""
    return PgBossResultConsumer(None, None, None, {}, None)


def _end_wait_in_thread(consumer: PgBossResultConsumer, task_id: str, hold_lock: bool) -> bool:
    """End ``task_id``'s wait on another thread, inside the waiter's lock when ``hold_lock`` (as a
    garbage collection running ``AsyncResult.__del__`` there would); whether it returned."""

    def end() -> None:
        if hold_lock:
            with consumer._lock:
                consumer.cancel_for(task_id)
        else:
            consumer.cancel_for(task_id)

    thread = threading.Thread(target=end, daemon=True)
    thread.start()
    thread.join(5)
    return not thread.is_alive()


def test_a_wait_ended_inside_the_waiters_lock_does_not_deadlock_and_is_forgotten() -> None:
    consumer = _consumer()
    task_id = str(uuid.uuid4())
    consumer.subscribed[task_id] = task_id
    consumer._paces[task_id] = _Pace(due=0.0, since=0.0)
    assert _end_wait_in_thread(consumer, task_id, hold_lock=True)
    with consumer._locked():  # the next holder of the lock forgets it
        assert task_id not in consumer.subscribed and task_id not in consumer._paces


def test_a_wait_ended_outside_the_lock_is_forgotten_by_the_next_holder() -> None:
    consumer = _consumer()
    task_id = str(uuid.uuid4())
    consumer.subscribed[task_id] = task_id
    assert _end_wait_in_thread(consumer, task_id, hold_lock=False)
    with consumer._locked():
        assert task_id not in consumer.subscribed and not consumer._ops


def test_waits_begun_and_ended_apply_in_their_order() -> None:
    consumer = _consumer()
    consumer._present = True  # as if held already: no listener here
    ended, again = str(uuid.uuid4()), str(uuid.uuid4())
    consumer._ops.extend([("join", ended, 1.0), ("join", again, 1.0), ("leave", again)])
    consumer._ops.extend([("leave", ended), ("join", again, 2.0)])  # a group member waited for again
    with consumer._locked():
        assert set(consumer.subscribed) == {again} and set(consumer._paces) == {again}
        assert consumer._paces[again].since == 2.0


def test_a_publish_noted_before_the_listen_connection_was_lost_does_not_count() -> None:
    consumer = _consumer()
    before, after = str(uuid.uuid4()), str(uuid.uuid4())
    consumer._ops.append(("published", before, consumer._generation))
    consumer._on_lost(ConnectionError("gone"))  # announcements may have been lost meanwhile
    consumer._ops.append(("published", after, consumer._generation))
    with consumer._locked():
        assert consumer._published == {after: False}


def test_noted_waits_are_applied_once_many_are_pending_even_with_no_one_waiting() -> None:
    consumer = _consumer()
    for _ in range(PENDING_OPS_MAX + 1):
        consumer.cancel_for(str(uuid.uuid4()))
    assert not consumer._ops  # applied by the note that went past the bound
