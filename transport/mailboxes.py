"""A connection's transient queues (remote-control mailboxes, replies, event receivers), fed from
the broadcast log (:mod:`transport.fanout`): what is published after the first declare is read,
matched against this connection's own bindings, and queued in memory (:mod:`transport.transient`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kombu.transport.virtual import BrokerState

from transport.fanout import BroadcastLog, Subscription
from transport.routes import match
from transport.transient import TransientQueue


class Mailboxes:
    def __init__(self, log: BroadcastLog, state: BrokerState, *, gap_timeout: float) -> None:
        self.log = log
        #: This connection's exchanges and their tables (Kombu's, shared by its channels).
        self.state = state
        self.gap_timeout = gap_timeout
        #: Queue name -> its buffer.
        self.queues: dict[str, TransientQueue] = {}
        #: A notice named an exchange this connection reads: read the log at the next pump.
        self.dirty = False
        self._subscription: Subscription | None = None
        self._wanted: set[str] | None = None

    def get(self, queue: str) -> TransientQueue | None:
        return self.queues.get(queue)

    def __contains__(self, queue: object) -> bool:
        return queue in self.queues

    def __bool__(self) -> bool:
        return bool(self.queues)

    def declare(self, queue: str, arguments: Mapping[str, Any], limit: int) -> None:
        self._wanted = None
        if queue not in self.queues:
            ttl = arguments.get("x-message-ttl")
            self.queues[queue] = TransientQueue(queue, ttl=ttl / 1000.0 if ttl else None, limit=limit)
        if self._subscription is None:
            # Start reading the log now: what is published after this declare is ours.
            self._subscription = Subscription(self.log, gap_timeout=self.gap_timeout)

    def delete(self, queue: str) -> None:
        self.queues.pop(queue, None)
        self._wanted = None

    def bindings_changed(self) -> None:
        """A binding or consumer changed: which exchanges to read is worked out again."""
        self._wanted = None

    def broadcast(self, exchange: str, routing_key: str, message: dict[str, Any]) -> None:
        self.log.publish(exchange, routing_key, message)

    @property
    def due(self) -> bool:
        """Whether the log should be read now (a notice, or a gap to look for again)."""
        return self.dirty or (self._subscription is not None and self._subscription.due)

    @property
    def waiting(self) -> bool:
        """Whether a gap in the log is being waited for (a blocking drain looks again soon)."""
        return self._subscription is not None and self._subscription.waiting

    def on_notice(self, exchange: str) -> None:
        """A broadcast to ``exchange`` was published somewhere."""
        if self.queues and exchange in self.wanted_exchanges():
            self.dirty = True

    def wanted_exchanges(self) -> set[str]:
        if self._wanted is None:
            wanted = {""}
            for name, exchange in self.state.exchanges.items():
                if any(row[2] in self.queues for row in exchange.get("table", [])):
                    wanted.add(name)
            self._wanted = wanted
        return self._wanted

    def read(self) -> int:
        """Route new broadcasts to these transient queues; returns how many were queued."""
        subscription = self._subscription
        if subscription is None or not self.queues:
            return 0
        self.dirty = False
        queued = 0
        for item in subscription.read(self.wanted_exchanges()):
            for queue in self._targets(item.exchange, item.routing_key):
                local = self.queues.get(queue)
                if local is not None and local.accepts(item.age):
                    local.push(item.message)
                    queued += 1
        return queued

    def _targets(self, exchange: str, routing_key: str) -> set[str]:
        if not exchange:
            return {routing_key} if routing_key in self.queues else set()
        local = self.state.exchanges.get(exchange)
        if local is None:
            return set()
        table = [row for row in local.get("table", []) if row[2] in self.queues]
        return match(local.get("type") or "direct", table, exchange, routing_key)
