"""The comparison's tables: zeke's setup against Celery+Redis with the issue's targets, and every setup."""

from __future__ import annotations

from collections.abc import Callable

from bench.measures import Measures
from bench.targets import MEMORY, PGBOSS, REDIS_OFF, REDIS_ON, ZEKE

#: (metric, column, higher is better, format)
METRICS = (
    ("drain", "drain tasks/s", True, "{:,.0f}"),
    ("enqueue", "enqueue `delay()`/s", True, "{:,.0f}"),
    ("p50", "pickup p50 ms", False, "{:.2f}"),
    ("p99", "pickup p99 ms", False, "{:.2f}"),
    ("group", "`group()` tasks/s", True, "{:,.0f}"),
    ("rss_mib", "worker RSS MiB", False, "{:.0f}"),
    ("connections", "connections", False, "{:.0f}"),
)


def _fmt(value: float | None, spec: str) -> str:
    return "–" if value is None else spec.format(value)


def _ratio(value: float | None, base: float | None) -> str:
    return "–" if value is None or not base else f"{value / base:.2f}×"


def _by_key(measures: list[Measures]) -> dict[str, Measures]:
    return {m.target.key: m for m in measures}


def _base(m: Measures, keyed: dict[str, Measures]) -> Measures | None:
    """Celery+Redis with the same results setting: results on for setups that store results."""
    return keyed.get(REDIS_ON if m.target.results else REDIS_OFF)


def every_setup(measures: list[Measures]) -> str:
    keyed = _by_key(measures)
    memory = keyed.get(MEMORY)
    header = ["setup"]
    for _, column, _, _ in METRICS:
        header += [column, "×"] if column != "connections" else [column]
    header.append("`group()` vs memory://")
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    for m in measures:
        base = _base(m, keyed)
        cells = [m.target.label]
        for metric, column, _, spec in METRICS:
            value = m.value(metric)
            cells.append(_fmt(value, spec))
            if column != "connections":
                cells.append(_ratio(value, base.value(metric) if base and base is not m else None))
        group, ceiling = m.value("group"), memory.value("group") if memory else None
        cells.append("–" if group is None or not ceiling else f"{group / ceiling:.0%}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def headline(measures: list[Measures], concurrency: int = 2) -> str:
    """zeke's default setup against Celery+Redis with results on, and the issue's targets."""
    keyed = _by_key(measures)
    ours, redis_on = keyed.get(ZEKE), keyed.get(REDIS_ON)
    if ours is None or redis_on is None:
        return "(needs the zeke and Celery+Redis results-on setups)"
    lines = [
        f"| | {redis_on.target.label} | {ours.target.label} | × |",
        "|---|---:|---:|---:|",
    ]
    for metric, column, _, spec in METRICS:
        a, b = redis_on.value(metric), ours.value(metric)
        lines.append(f"| {column} | {_fmt(a, spec)} | {_fmt(b, spec)} | {_ratio(b, a)} |")
    return "\n".join(lines) + "\n\n" + verdicts(keyed, concurrency)


def verdicts(keyed: dict[str, Measures], concurrency: int) -> str:
    ours, redis_on = keyed[ZEKE], keyed[REDIS_ON]
    broker, memory = keyed.get(PGBOSS), keyed.get(MEMORY)

    def rel(metric: str, other: Measures | None) -> Callable[[], float | None]:
        def value() -> float | None:
            a, b = ours.value(metric), other.value(metric) if other else None
            return None if a is None or not b else a / b

        return value

    checks: list[tuple[str, Callable[[], float | None], float, bool, str]] = [
        ("drain ≥ 1.5× Celery+Redis (results on)", rel("drain", redis_on), 1.5, True, "{:.2f}×"),
        ("drain ≥ 85% of the pgboss broker alone", rel("drain", broker), 0.85, True, "{:.0%}"),
        ("`group()` ≥ 80% of memory://", rel("group", memory), 0.8, True, "{:.0%}"),
        ("`group()` ≥ 2× Celery+Redis (results on)", rel("group", redis_on), 2.0, True, "{:.2f}×"),
        ("pickup p50 ≤ 1.2× Celery+Redis", rel("p50", redis_on), 1.2, False, "{:.2f}×"),
        ("pickup p99 ≤ 1.5× Celery+Redis", rel("p99", redis_on), 1.5, False, "{:.2f}×"),
        ("worker RSS ≤ 1.1× Celery+Redis", rel("rss_mib", redis_on), 1.1, False, "{:.2f}×"),
        (
            f"connections ≤ 3 + N (N = {concurrency})",
            lambda: ours.value("connections"), 3 + concurrency, False, "{:.0f}",
        ),
    ]  # fmt: skip
    lines = []
    for name, value_of, bound, at_least, spec in checks:
        value = value_of()
        if value is None:
            lines.append(f"- {name}: not measured")
            continue
        met = value >= bound if at_least else value <= bound
        lines.append(f"- {name}: {spec.format(value)} — **{'met' if met else 'missed'}**")
    return "Targets (issue 18), zeke's setup in this run:\n\n" + "\n".join(lines)
