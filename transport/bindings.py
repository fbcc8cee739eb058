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
    queries = manager.queries  # the schema is read (and installed) first, on a connection of its own
    with manager.db.cursor() as cur:
        # The lock every creator of the <schema>_zeke schema takes (result store, beat store): two
        # CREATE SCHEMA IF NOT EXISTS at once fail one of them (a worker died of it at start-up).
        cur.execute(queries["advisory_lock"], {"schema": manager.schema, "key": "zeke-aux"})
        cur.execute(queries["broker_install"])


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
        with self.manager.db.cursor() as cur:
            cur.execute(self.manager.queries["binding_add"], params)

    def table(self, exchange: str) -> tuple[str | None, list[Row]]:
        """The exchange's type as recorded (None when unknown) and its durable bindings."""
        with self.manager.db.cursor() as cur:
            cur.execute(self.manager.queries["binding_list"], {"exchange": exchange})
            rows = cur.fetchall()
        kind = rows[0]["type"] if rows else None
        return kind, [(r["routing_key"], r["pattern"], r["queue"]) for r in rows]

    def remove(self, exchange: str, queue: str, routing_key: str) -> None:
        params = {"exchange": exchange, "queue": queue, "routing_key": routing_key or ""}
        with self.manager.db.cursor() as cur:
            cur.execute(self.manager.queries["binding_remove"], params)

    def remove_queue(self, queue: str) -> None:
        with self.manager.db.cursor() as cur:
            cur.execute(self.manager.queries["binding_remove_queue"], {"queue": queue})
