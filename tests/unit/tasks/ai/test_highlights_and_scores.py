"""tasks.lib.highlights' extractors and the relevance scoring helpers, on text alone."""

from __future__ import annotations

import datetime as dt

from tasks.ai.score_relevance import freshness, keyword_matches
from tasks.lib.highlights import extract_highlights
from tests.textutil import QUILL


def test_extractors_find_each_kind() -> None:
    found = extract_highlights(QUILL)
    kinds = {c.kind for c in found}
    assert kinds == {"metric", "quote", "code_example", "api_change"}
    code = next(c for c in found if c.kind == "code_example")
    assert code.title == "Typescript example" and "defineGraph" in code.quote
    quote = next(c for c in found if c.kind == "quote")
    assert quote.quote.startswith("We stopped asking") and quote.metadata["speaker"].endswith(
        "Priya Natarajan"
    )
    changes = [c for c in found if c.kind == "api_change"]
    assert {c.title for c in changes} >= {"Breaking change", "Deprecation"}
    metric = next(c for c in found if c.kind == "metric")
    assert "38%" in metric.metadata["values"]
    assert extract_highlights(QUILL) == found  # deterministic


def test_scoring_helpers() -> None:
    now = dt.datetime(2026, 1, 20, tzinfo=dt.UTC)
    assert freshness(now, now) == 1.0
    assert freshness(now - dt.timedelta(days=30), now) == 0.6
    assert freshness(now - dt.timedelta(days=200), now) == 0.2 and freshness(None, now) == 0.2
    assert keyword_matches("The AI SDK deprecated an endpoint", ["ai", "sdk", "deprecat", "gpu"]) == [
        "ai",
        "sdk",
        "deprecat",
    ]
    assert keyword_matches("said the aide", ["ai"]) == []
