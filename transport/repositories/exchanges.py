"""The broker's ``{aux}`` tables (``sql/broker.sql``): durable queues' bindings to named exchanges
(:mod:`transport.bindings`), the broadcast log (:mod:`transport.fanout`) and the wake NOTIFY."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from transport.executor import Executor


class ExchangeStore:
    def __init__(self, sql: Executor, schema: str) -> None:
        self.sql = sql
        self.schema = schema

    def install(self) -> None:
        """Create the transport's schema (``<schema>_zeke``) and tables if absent. Every creator of
        that schema (result store, beat store) takes the same lock: two CREATE SCHEMA IF NOT EXISTS
        at once fail one of them."""
        self.sql.locked(self.schema, "zeke-aux", "broker_install")

    def wake(self, channel: str, payload: str) -> None:
        self.sql.rows("wake", {"channel": channel, "payload": payload})

    # -- bindings ------------------------------------------------------------------------------

    def add_binding(self, params: Mapping[str, Any]) -> None:
        self.sql.rows("binding_add", params)

    def bindings(self, exchange: str) -> list[Any]:
        return self.sql.rows("binding_list", {"exchange": exchange})

    def remove_binding(self, params: Mapping[str, Any]) -> None:
        self.sql.rows("binding_remove", params)

    def remove_queue_bindings(self, queue: str) -> None:
        self.sql.rows("binding_remove_queue", {"queue": queue})

    # -- the broadcast log ---------------------------------------------------------------------

    def publish(self, params: Mapping[str, Any]) -> int:
        """Append a broadcast (and NOTIFY its readers); its id."""
        return int(self.sql.one("broadcast_publish", params)["id"])

    def head(self) -> int:
        return int(self.sql.one("broadcast_head")["id"])

    def read(self, params: Mapping[str, Any]) -> list[Any]:
        return self.sql.rows("broadcast_read", params)

    def sweep(self, retention_seconds: float) -> int:
        return self.sql.run("broadcast_sweep", {"seconds": retention_seconds})
