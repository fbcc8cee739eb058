"""Durable queues' bindings to named exchanges, kept in the database so every process routes alike.

Celery itself never needs them (it publishes tasks through the anonymous exchange), but plain Kombu
does: ``SimpleQueue`` publishes through a direct exchange named like the queue, and a producer in
another process must find the queue a consumer bound. Transient queues (pidbox, replies, events)
are not stored here: their consumers match broadcasts against their own in-memory bindings
(:mod:`transport.fanout`).
"""

from __future__ import annotations

from transport.manager import JobManager

#: (routing_key, pattern, queue), Kombu's exchange table row.
Row = tuple[str, str, str]


def install(manager: JobManager) -> None:
    """Create the transport's schema (``<schema>_zeke``) and tables if they are absent."""
    manager.exchanges.install()


class Bindings:
    """Owner of the binding table."""

    def __init__(self, manager: JobManager) -> None:
        self.manager = manager

    def add(self, exchange: str, queue: str, routing_key: str, pattern: str, type: str) -> None:
        params = {
            "exchange": exchange,
            "queue": queue,
            "routing_key": routing_key or "",
            "pattern": pattern or "",
            "type": type,
        }
        self.manager.exchanges.add_binding(params)

    def table(self, exchange: str) -> tuple[str | None, list[Row]]:
        """The exchange's type as recorded (None when unknown) and its durable bindings."""
        rows = self.manager.exchanges.bindings(exchange)
        kind = rows[0]["type"] if rows else None
        return kind, [(r["routing_key"], r["pattern"], r["queue"]) for r in rows]

    def remove(self, exchange: str, queue: str, routing_key: str) -> None:
        params = {"exchange": exchange, "queue": queue, "routing_key": routing_key or ""}
        self.manager.exchanges.remove_binding(params)

    def remove_queue(self, queue: str) -> None:
        self.manager.exchanges.remove_queue_bindings(queue)
