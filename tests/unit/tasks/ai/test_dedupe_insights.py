"""tasks.ai.dedupe_insights: the similarity measure that decides duplicates."""

from __future__ import annotations

from tasks.ai.dedupe_insights import similarity
from tasks.lib.highlights import normalize_for_compare


def test_similarity() -> None:
    a = normalize_for_compare("Latency dropped from 740 ms to 180 ms at p95.")
    b = normalize_for_compare("Latency dropped from 740ms to 180 ms (p95)")
    c = normalize_for_compare("The project moved its docs to a new site.")
    assert similarity(a, a) == 1.0
    assert similarity(a, b) >= 0.85 > similarity(a, c)
