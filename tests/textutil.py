"""Text the tests share: a sample article, and every string inside a parsed value."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: A release note with numbers, a quote, code and a breaking change: something for every extractor.
QUILL = (Path(__file__).resolve().parent / "fixtures" / "articles" / "quillstack.md").read_text()


def strings_in(value: Any) -> Iterator[str]:
    """Every string in ``value``, through lists, tuples and dataclass fields."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, list | tuple):
        for item in value:
            yield from strings_in(item)
    elif hasattr(value, "__dataclass_fields__"):
        for name in value.__dataclass_fields__:
            yield from strings_in(getattr(value, name))
