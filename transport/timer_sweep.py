"""Cancelled timers taken out of a worker's event loop, so they do not pile up until they are due.

Every delivery carries a time limit (its job's expiry bounds it, :func:`transport.envelope.
expiry_time_limits`), and Celery's prefork pool arms a timer on the worker's event loop for each task
it hands to a child: the soft or hard limit, an hour away with pg-boss's default expiry. The task ends
long before; the pool cancels the timer, but Kombu's timer only marks a cancelled entry and keeps it
in its heap until its time comes. A busy worker would hold every task of the last hour that way (the
entry, its arguments, the heap slot) and push each new timer into an ever larger heap. A sweep every
few seconds drops the cancelled entries, so what is held is bounded by a few seconds of tasks.
"""

from __future__ import annotations

import heapq
from typing import Any

#: Seconds between sweeps.
SWEEP_INTERVAL = 5.0


def sweep(timer: Any) -> int:
    """Drop the cancelled entries of a Kombu ``Timer``'s heap; returns how many were dropped.

    The heap list is changed in place: the timer's scheduler (a generator) holds that very list.
    """
    queue = timer._queue
    live = [item for item in queue if not item[2].canceled]
    dropped = len(queue) - len(live)
    if dropped:
        heapq.heapify(live)
        queue[:] = live
    return dropped


def sweep_every(hub: Any, interval: float | None = None) -> Any:
    """Sweep ``hub``'s timer every ``interval`` seconds (:data:`SWEEP_INTERVAL`); returns the repeating
    entry (cancel it to stop)."""
    return hub.call_repeatedly(interval or SWEEP_INTERVAL, sweep, hub.timer)
