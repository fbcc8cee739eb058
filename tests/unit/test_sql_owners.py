"""Only the driver layer and the executor run SQL (docs/ARCHITECTURE.md, "Who executes statements").

Everything else in ``transport`` and ``zeke`` calls methods of the manager or its repositories: no
module outside :data:`DRIVER_LAYER` takes a cursor, calls ``execute``, or picks a statement out of
``manager.queries`` by name. The check reads the source (AST), so it needs no database.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("transport", "zeke")
#: Modules that may execute SQL themselves, and why.
DRIVER_LAYER = {
    "transport/db.py": "the pool: session modes on checkout, cursors",
    "transport/executor.py": "runs every named statement, wraps driver errors",
    "transport/prepared.py": "PREPARE/EXECUTE of registered statement texts",
    "transport/listener.py": "LISTEN on the hub's own connection",
    "transport/schema.py": "detects and installs the schema before a manager exists",
    "transport/drift.py": "catalog reads of `zeke doctor`, before and beside any manager",
}
#: Calls named like SQL execution that are not (receiver source -> why), per module.
NOT_SQL = {"zeke/schema_task.py": {"self.execute": "the task's own run method"}}
SQL_CALLS = frozenset({"cursor", "execute", "executemany", "execute_values", "copy_expert", "mogrify"})


def offences(path: Path, relative: str) -> list[str]:
    found = []
    allowed = NOT_SQL.get(relative, {})
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr in SQL_CALLS and ast.unparse(node.func) not in allowed:
                found.append(f"{relative}:{node.lineno}: {ast.unparse(node.func)}(...)")
        elif isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute):
            if node.value.attr == "queries":
                found.append(f"{relative}:{node.lineno}: {ast.unparse(node)}")
    return found


def sources() -> list[tuple[Path, str]]:
    return [
        (path, path.relative_to(ROOT).as_posix())
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
    ]


def test_only_the_driver_layer_executes_sql() -> None:
    found = [o for path, rel in sources() if rel not in DRIVER_LAYER for o in offences(path, rel)]
    assert found == [], "SQL executed outside the driver layer:\n" + "\n".join(found)


def test_the_check_sees_each_form(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "def f(manager, conn):\n"
        "    with manager.db.cursor() as cur:\n"
        "        cur.execute(manager.queries['get_job'], {})\n"
        "    conn.cursor().executemany('x', [])\n"
    )
    kinds = [o.split(": ", 1)[1] for o in offences(sample, "sample.py")]
    assert sorted(kinds) == sorted(
        [
            "manager.db.cursor(...)",
            "cur.execute(...)",
            "manager.queries['get_job']",
            "conn.cursor(...)",
            "conn.cursor().executemany(...)",
        ]
    )


def test_the_allowed_modules_exist() -> None:
    for relative in [*DRIVER_LAYER, *NOT_SQL]:
        assert (ROOT / relative).is_file(), relative
