"""Where a publish to a named exchange goes: this connection's own bindings (Kombu's broker state)
and the durable queues' bindings every process stored (:mod:`transport.bindings`), matched with the
exchange type's own rules (direct, topic, fanout)."""

from __future__ import annotations

import time
from collections.abc import Container
from typing import Any

from kombu.transport.virtual import BrokerState
from kombu.transport.virtual.exchange import STANDARD_EXCHANGE_TYPES

from transport.bindings import Bindings

#: Seconds a cached list of durable bindings is trusted.
BINDING_CACHE_SECONDS = 2.0

Row = tuple[str, Any, str]

_EXCHANGE_TYPES = {name: cls(None) for name, cls in STANDARD_EXCHANGE_TYPES.items()}


def match(kind: str, table: list[Row], exchange: str, routing_key: str) -> set[str]:
    """The queues of ``table`` a message to ``exchange`` with ``routing_key`` reaches."""
    return set(_EXCHANGE_TYPES[kind].lookup(table, exchange, routing_key, None))


class Routes:
    def __init__(self, bindings: Bindings, state: BrokerState, transient: Container[str]) -> None:
        self.bindings = bindings
        #: This connection's exchanges and their tables (Kombu's, shared by its channels).
        self.state = state
        #: Names of this connection's transient queues (routed through the broadcast log instead).
        self.transient = transient
        self._cache: dict[str, tuple[float, str | None, list[Row]]] = {}

    def durable_bindings(self, exchange: str) -> tuple[str | None, list[Row]]:
        """The exchange's type and the durable bindings every process stored (cached briefly)."""
        cached = self._cache.get(exchange)
        now = time.monotonic()
        if cached is not None and cached[0] > now:
            return cached[1], cached[2]
        kind, rows = self.bindings.table(exchange)
        self._cache[exchange] = (now + BINDING_CACHE_SECONDS, kind, rows)
        return kind, rows

    def forget(self, exchange: str) -> None:
        self._cache.pop(exchange, None)

    def table(self, exchange: str) -> list[Row]:
        """This connection's bindings of ``exchange``, then the stored ones it has not."""
        local = list(self.state.exchanges.get(exchange, {}).get("table", []))
        _, durable = self.durable_bindings(exchange)
        seen = {row[2] for row in local}
        return local + [row for row in durable if row[2] not in seen]

    def durable_targets(self, exchange: str, routing_key: str, local_type: str | None) -> set[str]:
        """The durable queues a publish to ``exchange`` reaches."""
        kind, rows = self.durable_bindings(exchange)
        local = self.state.exchanges.get(exchange)
        table = [row for row in (local or {}).get("table", []) if row[2] not in self.transient]
        table += [row for row in rows if row not in table]
        if not table:
            return set()
        exchange_type = (local or {}).get("type") or kind or local_type or "direct"
        return match(exchange_type, table, exchange, routing_key)
