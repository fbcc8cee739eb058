"""How a database's pg-boss schema compares with what zeke expects for its version (``zeke doctor``).

zeke keeps a catalog of each pg-boss schema version it has checked itself against (``sql/
catalog_v<N>.json``: tables, columns, indexes, constraints, enum types, function signatures and the
bodies Node and zeke each write), taken from the schema Node pg-boss installs. :func:`compare` reads
the live catalog (``sql/drift.sql``), writes the schema's name as ``{schema}`` and lists what differs.

A difference is *drift* (exit status 1 from ``zeke doctor``) when an object is missing, unexpected or
defined otherwise. A function whose signature matches but whose body is neither Node's nor zeke's
text is drift too; one whose body is zeke's own text (a schema zeke installed) is not: same behaviour,
written in zeke's words. Versions zeke serves without a stored catalog are checked only for the
version row and the objects zeke reads and writes.

``python -m transport.drift <url> <schema> <file>`` writes a catalog file from a live schema.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import sys
from importlib import resources
from typing import Any

from transport import schema as pgschema
from transport.db import raw_connection
from transport.sql import statement

#: Objects zeke reads and writes on every version it serves: (table, column).
REQUIRED_COLUMNS = (
    ("version", "version"),
    *(
        ("job", c)
        for c in (
            "id name priority data state retry_limit retry_count retry_delay retry_backoff start_after "
            "started_on singleton_key singleton_on expire_seconds created_on completed_on keep_until "
            "output dead_letter policy"
        ).split()
    ),
    *(("queue", c) for c in "name policy retry_limit retry_delay retry_backoff table_name".split()),
    *(("schedule", c) for c in "name key cron timezone data options".split()),
)
REQUIRED_FUNCTIONS = ("create_queue", "delete_queue")
#: Catalog section -> what one of its entries is called in a finding.
KINDS = {
    "tables": "table",
    "columns": "column",
    "indexes": "index",
    "constraints": "constraint",
    "functions": "function",
    "types": "type",
}


@dataclasses.dataclass(frozen=True)
class Finding:
    kind: str  # "missing", "unexpected", "different", "note"
    what: str  # e.g. "index job_common_i11"
    detail: str = ""

    @property
    def drift(self) -> bool:
        return self.kind != "note"

    def __str__(self) -> str:
        return f"{self.kind:<10} {self.what}" + (f": {self.detail}" if self.detail else "")


@dataclasses.dataclass(frozen=True)
class Report:
    schema: str
    version: int | None
    release: str
    catalog: bool  # whether a stored catalog for the version was compared
    findings: tuple[Finding, ...]

    @property
    def drift(self) -> bool:
        return any(f.drift for f in self.findings)

    def as_dict(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "version": self.version,
            "release": self.release,
            "catalog": self.catalog,
            "drift": self.drift,
            "findings": [dataclasses.asdict(f) for f in self.findings],
        }


def _normalise(text: str | None, schema: str) -> str | None:
    """``text`` with the schema's name, bare or quoted, written ``{schema}``."""
    if text is None:
        return None
    pattern = r'(?<![\w"])(?:"' + re.escape(schema) + r'"|' + re.escape(schema) + r")(?=\.)"
    return re.sub(pattern, "{schema}", text)


def snapshot(conn: Any, schema: str) -> dict[str, Any]:
    """The live catalog of ``schema``, normalised (as a catalog file holds it, without bodies)."""
    conn = raw_connection(conn)

    def rows(name: str) -> list[tuple[Any, ...]]:
        with conn.cursor() as cur:
            cur.execute(statement(name), {"schema": schema})
            return cur.fetchall()

    n = lambda text: _normalise(text, schema)  # noqa: E731
    functions = rows("drift_functions")
    catalog = {
        "tables": {name: kind for name, kind in rows("drift_tables")},
        "columns": {
            f"{table}.{name}": {"type": n(type_), "not_null": not_null, "default": n(default)}
            for table, name, type_, not_null, default in rows("drift_columns")
        },
        "indexes": {name: n(definition) for name, _table, definition in rows("drift_indexes")},
        "constraints": {f"{table}.{name}": n(d) for table, name, d in rows("drift_constraints")},
        "functions": {f"{name}({args})": n(result) for name, args, result, _body in functions},
        "types": {name: list(labels) for name, labels in rows("drift_types")},
    }
    bodies = {f"{name}({args})": _digest(n(body)) for name, args, _result, body in functions}
    if not conn.autocommit:
        conn.rollback()
    return {"catalog": catalog, "bodies": bodies}


def _digest(body: str | None) -> str:
    return hashlib.md5((body or "").encode(), usedforsecurity=False).hexdigest()


def stored_catalog(version: int) -> dict[str, Any] | None:
    """The catalog zeke keeps for ``version``, or None."""
    path = resources.files("transport.sql") / f"catalog_v{version}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _compare_maps(kind: str, expected: dict[str, Any], live: dict[str, Any]) -> list[Finding]:
    found = [Finding("missing", f"{kind} {k}", _show(v)) for k, v in expected.items() if k not in live]
    found += [Finding("unexpected", f"{kind} {k}", _show(v)) for k, v in live.items() if k not in expected]
    found += [
        Finding("different", f"{kind} {k}", f"expected {_show(expected[k])}, found {_show(live[k])}")
        for k in expected
        if k in live and live[k] != expected[k]
    ]
    return found


def _show(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def compare(conn: Any, schema: str = pgschema.DEFAULT_SCHEMA) -> Report:
    """Compare the pg-boss schema ``schema`` with what zeke expects for its version."""
    info = pgschema.detect(conn, schema)
    if info.version is None:
        missing = Finding("missing", "pg-boss schema", "not installed")
        return Report(schema, None, info.release, False, (missing,))
    findings: list[Finding] = []
    try:
        pgschema.check_version(info)
    except pgschema.UnsupportedSchemaVersion as exc:
        findings.append(Finding("different", "version", str(exc)))
    live = snapshot(conn, schema)
    expected = stored_catalog(info.version)
    if expected is None:
        findings += _required_only(live["catalog"])
        findings.append(
            Finding(
                "note",
                f"version {info.version}",
                "zeke keeps no full catalog of this version; checked the objects zeke uses only",
            )
        )
        return Report(schema, info.version, info.release, False, tuple(findings))
    for kind, label in KINDS.items():
        findings += _compare_maps(label, expected["catalog"][kind], live["catalog"][kind])
    ours = []
    for signature, md5 in sorted(live["bodies"].items()):
        known = expected["bodies"].get(signature)
        if known is None or md5 == known.get("node"):
            continue  # an unexpected function is reported above; Node's own text is what Node wrote
        if md5 == known.get("zeke"):
            ours.append(signature.split("(")[0])
        else:
            detail = "body is neither Node's nor zeke's text"
            findings.append(Finding("different", f"function {signature}", detail))
    if ours:
        detail = f"in zeke's own text, same behaviour as Node's: {', '.join(ours)}"
        findings.append(Finding("note", "function bodies", detail))
    return Report(schema, info.version, info.release, True, tuple(findings))


def _required_only(live: dict[str, Any]) -> list[Finding]:
    columns = live["columns"]
    found = [Finding("missing", f"column {t}.{c}") for t, c in REQUIRED_COLUMNS if f"{t}.{c}" not in columns]
    names = {signature.split("(")[0] for signature in live["functions"]}
    found += [Finding("missing", f"function {f}") for f in REQUIRED_FUNCTIONS if f not in names]
    return found


def main(argv: list[str]) -> None:
    """Write the catalog of a live schema: ``<url> <schema> <file> [node|zeke]`` (the body owner; a
    second run with the other owner adds its bodies to the same file)."""
    import psycopg2

    from transport.db import dsn_from_url

    url, schema, path = argv[:3]
    owner = argv[3] if len(argv) > 3 else "node"
    with psycopg2.connect(dsn_from_url(url)) as conn:
        version = pgschema.detect(conn, schema).version
        live = snapshot(conn, schema)
    try:
        with open(path) as existing:
            data = json.load(existing)
    except FileNotFoundError:
        data = {"version": version, "catalog": live["catalog"], "bodies": {}}
    if data["catalog"] != live["catalog"]:
        raise SystemExit(f"{schema}'s catalog differs from the one in {path}; not merging bodies")
    for signature, md5 in live["bodies"].items():
        data["bodies"].setdefault(signature, {})[owner] = md5
    with open(path, "w") as out:
        json.dump(data, out, indent=1, sort_keys=True)
        out.write("\n")


if __name__ == "__main__":
    main(sys.argv[1:])
