"""The broadcast log: how remote control, replies and events travel over PostgreSQL.

Every publish to a named exchange (fanout ``celery.pidbox``, direct ``reply.celery.pidbox``, topic
``celeryev``...) appends ONE row to ``<schema>_zeke.broadcast`` and NOTIFYs the broker channel with
the exchange name, whatever the number of subscribers. Consumers keep their last-seen id in memory,
read the rows after it for the exchanges they have local bindings on, and route them to their own
transient queues with the exchange's own matching rules. Nothing per subscriber is stored, so a
stopped worker leaves nothing behind, and a sweeper deletes rows older than a minute or so.

Ids are taken at INSERT but become visible at COMMIT, so a reader may see id 10 before id 9. The
reader remembers such gaps and asks for them again on its next reads for a few seconds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from kombu.utils.json import dumps, loads

from transport import names
from transport.manager import JobManager

logger = logging.getLogger(__name__)

#: Rows per read; a reader loops while a read comes back full.
READ_LIMIT = 1000
#: At most this many missing ids are remembered (larger holes are sequence jumps, not commits).
MAX_GAPS = 1000
#: Seconds between reads that only look for missing ids.
GAP_RECHECK = 0.05


@dataclass(frozen=True, slots=True)
class Broadcast:
    id: int
    exchange: str
    routing_key: str
    message: dict[str, Any]
    #: Seconds since it was appended (database clock).
    age: float


class BroadcastLog:
    """Owner of the broadcast table: append, read, sweep."""

    def __init__(self, manager: JobManager) -> None:
        self.manager = manager
        self.channel = names.broker_channel(manager.schema)

    def publish(self, exchange: str, routing_key: str, message: dict[str, Any]) -> int:
        params = {
            "exchange": exchange,
            "routing_key": routing_key or "",
            "payload": dumps(message),  # Kombu's JSON: bytes bodies, datetimes in headers survive
            "channel": self.channel,
            "notice": names.EXCHANGE_NOTICE + exchange,
        }
        return self.manager.exchanges.publish(params)

    def head(self) -> int:
        return self.manager.exchanges.head()

    def read(self, after: int, gaps: Iterable[int], exchanges: Iterable[str]) -> list[dict[str, Any]]:
        params = {"after": after, "gaps": list(gaps), "exchanges": list(exchanges), "limit": READ_LIMIT}
        return self.manager.exchanges.read(params)

    def sweep(self, retention_seconds: float) -> int:
        return self.manager.exchanges.sweep(retention_seconds)


class Subscription:
    """One consumer's position in the log: last-seen id plus the gaps it is still waiting for."""

    def __init__(self, log: BroadcastLog, *, gap_timeout: float = 5.0) -> None:
        self.log = log
        self.gap_timeout = gap_timeout
        self.last_id = log.head()
        self._gaps: dict[int, float] = {}
        self._last_read = 0.0

    @property
    def waiting(self) -> bool:
        """Whether some ids are still missing (worth reading again even without a notice)."""
        return bool(self._gaps)

    @property
    def due(self) -> bool:
        """Whether missing ids should be looked for again now (throttled)."""
        return bool(self._gaps) and time.monotonic() - self._last_read >= GAP_RECHECK

    def read(self, exchanges: Iterable[str]) -> list[Broadcast]:
        """New broadcasts of ``exchanges`` (and late commits of earlier ids), oldest first."""
        wanted = list(exchanges)
        found: list[Broadcast] = []
        self._last_read = time.monotonic()
        while True:
            rows = self.log.read(self.last_id, self._gaps, wanted)
            for row in rows:
                self._advance(row["id"], row["age"])
                if row["payload"] is not None:
                    message = loads(row["payload"])
                    found.append(
                        Broadcast(row["id"], row["exchange"], row["routing_key"], message, row["age"])
                    )
            if len(rows) < READ_LIMIT:
                break
        self._expire_gaps()
        return found

    def _advance(self, row_id: int, age: float) -> None:
        if row_id in self._gaps:
            del self._gaps[row_id]
            return
        if row_id <= self.last_id:
            return
        missing = row_id - self.last_id - 1
        # A hole before a row older than the gap timeout is not a transaction still committing
        # (its id was taken before that row's): those rows were swept or rolled back.
        if 0 < missing <= MAX_GAPS and len(self._gaps) < MAX_GAPS and age < self.gap_timeout:
            now = time.monotonic()
            for gap in range(self.last_id + 1, row_id):
                self._gaps[gap] = now
        self.last_id = row_id

    def _expire_gaps(self) -> None:
        if not self._gaps:
            return
        cutoff = time.monotonic() - self.gap_timeout
        for gap in [g for g, seen in self._gaps.items() if seen < cutoff]:
            del self._gaps[gap]
