"""A transient queue: an in-memory, priority-ordered buffer in the one process that declared it.

Remote-control mailboxes, reply queues, event receivers and ``SimpleBuffer`` are ``auto_delete``,
``exclusive`` or non-durable: they live as long as their consumer, like Redis pub/sub subscribers.
Broadcasts routed to them from the log wait here until consumed; ``x-message-ttl`` drops stale ones
and a size limit drops the oldest when a consumer stops reading.
"""

from __future__ import annotations

import heapq
import itertools
import time
from typing import Any


class TransientQueue:
    def __init__(self, name: str, *, ttl: float | None = None, limit: int = 10_000) -> None:
        self.name = name
        #: Seconds a message may wait before it is dropped (None: forever).
        self.ttl = ttl
        self.limit = limit
        self._heap: list[tuple[int, int, float, dict[str, Any]]] = []
        self._seq = itertools.count()
        self._front = itertools.count(-1, -1)

    def __len__(self) -> int:
        return len(self._heap)

    def __bool__(self) -> bool:
        return bool(self._heap)

    def accepts(self, age: float) -> bool:
        """Whether a broadcast already ``age`` seconds old is still worth queueing."""
        return self.ttl is None or age <= self.ttl

    def push(self, message: dict[str, Any]) -> None:
        self._push(message, next(self._seq))

    def push_front(self, message: dict[str, Any]) -> None:
        """Requeue ahead of everything of the same priority (a rejected or restored message)."""
        self._push(message, next(self._front))

    def _push(self, message: dict[str, Any], seq: int) -> None:
        properties = dict(message.get("properties") or {})
        properties["delivery_info"] = dict(properties.get("delivery_info") or {})
        payload = dict(message, properties=properties)
        priority = _priority(payload["properties"].get("priority"))
        heapq.heappush(self._heap, (-priority, seq, time.monotonic(), payload))
        if len(self._heap) > self.limit:
            # Drop the oldest arrival (smallest sequence) of the lowest priority.
            victim = max(range(len(self._heap)), key=lambda i: (self._heap[i][0], -self._heap[i][1]))
            self._heap[victim] = self._heap[-1]
            self._heap.pop()
            heapq.heapify(self._heap)

    def pop(self) -> dict[str, Any] | None:
        while self._heap:
            _, _, queued_at, payload = heapq.heappop(self._heap)
            if self.ttl is None or time.monotonic() - queued_at <= self.ttl:
                return payload
        return None

    def clear(self) -> int:
        count = len(self._heap)
        self._heap.clear()
        return count


def _priority(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0
