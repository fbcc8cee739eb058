"""transport/timer_sweep.py: cancelled entries leave a Kombu hub's timer heap; live ones still fire."""

from __future__ import annotations

import time

from kombu.asynchronous import Hub

from transport import timer_sweep


def _fire_due(hub: Hub) -> None:
    """Run every timer of ``hub`` that is due now (as one turn of the event loop would)."""
    while True:
        delay, entry = next(hub.scheduler)
        if entry is None:
            return
        entry()


def test_sweep_drops_cancelled_entries_and_keeps_the_rest_in_order() -> None:
    hub = Hub()
    fired: list[int] = []
    hub.scheduler  # noqa: B018  (the scheduler generator exists before the sweep, as in a worker)
    entries = [hub.call_later(0.01 * (i % 7), fired.append, i) for i in range(300)]
    hour_away = [hub.call_later(3600, fired.append, -1) for _ in range(1000)]  # a task's time limits
    for entry in hour_away + entries[::2]:
        entry.cancel()
    # Each entry's due time as the heap holds it (creating 300 may take longer than their spacing).
    due = {id(item[2]): item[0] for item in hub.timer._queue}

    assert timer_sweep.sweep(hub.timer) == 1000 + 150
    assert len(hub.timer) == 150
    assert timer_sweep.sweep(hub.timer) == 0

    time.sleep(0.08)
    _fire_due(hub)
    kept = [i for i in range(300) if i % 2]
    assert sorted(fired) == kept  # every live entry fired, no cancelled one
    assert fired == sorted(kept, key=lambda i: due[id(entries[i])])  # in due order (the heap was rebuilt)
    assert len(hub.timer) == 0


def test_sweep_every_repeats_on_the_hub_and_stops_when_cancelled() -> None:
    hub = Hub()
    repeating = timer_sweep.sweep_every(hub, interval=0.01)
    for _ in range(50):
        hub.call_later(3600, lambda: None).cancel()
    time.sleep(0.02)
    _fire_due(hub)
    assert len(hub.timer) == 1  # only the sweep itself, rescheduled

    repeating.cancel()
    for _ in range(5):
        hub.call_later(3600, lambda: None).cancel()
    time.sleep(0.02)
    _fire_due(hub)
    assert len(hub.timer) == 5  # no sweep any more: they stay until due
