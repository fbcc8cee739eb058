"""One setup's figures over the rounds of ``python -m bench.compare``: medians of rates, pooled pickups."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from bench.targets import Target


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


@dataclass
class Measures:
    target: Target
    enqueue: list[float] = field(default_factory=list)
    group: list[float] = field(default_factory=list)
    drain: list[float] = field(default_factory=list)
    pickups: list[float] = field(default_factory=list)
    rss_mib: list[float] = field(default_factory=list)
    connections: list[int] = field(default_factory=list)

    def value(self, metric: str) -> float | None:
        """The figure the tables show: rates, RSS and connections as medians of rounds, pickups as
        percentiles of every sample (ms)."""
        if metric == "p50":
            return statistics.median(self.pickups) * 1000 if self.pickups else None
        if metric == "p99":
            return percentile(self.pickups, 0.99) * 1000 if self.pickups else None
        if metric == "connections":
            return float(max(self.connections)) if self.connections else None
        return median(getattr(self, metric))
