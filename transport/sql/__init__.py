"""The one home of zeke's SQL: named statements in ``*.sql`` files beside this module.

Each file holds blocks that start with ``-- name: <statement_name>`` followed by a one-line
``--`` description. Statements are templates resolved once per schema:

* ``{schema}`` becomes the quoted pg-boss schema, ``{aux}`` our own schema beside it;
* ``{now}`` becomes ``{schema}.job_now()`` on schema 42+ (so pg-boss's test clock applies), else ``now()``;
* ``/*if:feature*/ A /*else*/ B /*end*/`` keeps A when the schema has the feature, otherwise B;
* other ``{placeholders}`` come from the caller (column lists derived from the catalog).

Parameters use psycopg2's ``%(name)s`` style, so a literal percent sign is written ``%%``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import cache
from importlib import resources

_BLOCK = re.compile(r"^-- name: (?P<name>\w+)\s*$", re.MULTILINE)
_CONDITIONAL = re.compile(r"/\*if:(\w+)\*/(.*?)(?:/\*else\*/(.*?))?/\*end\*/", re.DOTALL)
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


@cache
def raw_queries() -> dict[str, str]:
    """Every named statement and fragment, unresolved, keyed by name."""
    queries: dict[str, str] = {}
    for entry in sorted(resources.files(__package__).iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".sql") or entry.name.startswith("schema_"):
            continue
        text = entry.read_text()
        parts = _BLOCK.split(text)
        for name, body in zip(parts[1::2], parts[2::2], strict=True):
            if name in queries:
                raise ValueError(f"duplicate statement name {name!r} in {entry.name}")
            queries[name] = body.strip()
    return queries


def render(template: str, features: Iterable[str], values: Mapping[str, str]) -> str:
    enabled = set(features)

    def choose(match: re.Match[str]) -> str:
        feature, when_on, when_off = match.group(1), match.group(2), match.group(3) or ""
        return when_on if feature in enabled else when_off

    text = _CONDITIONAL.sub(choose, template)

    def fill(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            raise KeyError(f"no value for SQL placeholder {{{key}}}")
        return values[key]

    # {now} refers to {schema}, so resolve twice.
    return _PLACEHOLDER.sub(fill, _PLACEHOLDER.sub(fill, text))


def _inline_fragments(body: str) -> str:
    """``body`` with each ``{_name}`` replaced by fragment ``_name``'s text (fragments may nest once)."""
    raw = raw_queries()

    def inline(match: re.Match[str]) -> str:
        name = match.group(1)
        return raw[name] if name.startswith("_") and name in raw else match.group(0)

    return _PLACEHOLDER.sub(inline, _PLACEHOLDER.sub(inline, body))


def resolve(features: Iterable[str], values: Mapping[str, str]) -> dict[str, str]:
    """All statements rendered for one schema.

    Blocks whose name starts with ``_`` are fragments: ``{_name}`` in a statement is replaced by
    the fragment's text before anything else is resolved.
    """
    features = tuple(features)
    return {
        name: render(_inline_fragments(body), features, values)
        for name, body in raw_queries().items()
        if not name.startswith("_")
    }


def statement(name: str, values: Mapping[str, str] | None = None, features: Iterable[str] = ()) -> str:
    """One named statement (or fragment) rendered on its own, as :func:`resolve` renders it.

    For code that runs before a schema's features are known (transport.schema reads them from the
    catalog), where :func:`resolve` and the values it needs are not available yet.
    """
    return render(_inline_fragments(raw_queries()[name]), features, values or {})


def schema_ddl(version: int) -> str:
    return (resources.files(__package__) / f"schema_v{version}.sql").read_text()
