"""transport.schema against Node pg-boss itself: the catalog zeke installs is the one Node 12.38.1
installs, its functions behave the same, Node runs on it, older/newer schemas are detected or refused,
and concurrent installers (Python and Node) end with one schema.

Needs PostgreSQL (DATABASE_PRIMARY_URL) and Node with tests/node installed (done here with npm ci).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import difflib
import json
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import psycopg2
import psycopg2.extensions
import psycopg2.extras
import pytest

from transport import schema as pgschema
from transport.db import dsn_from_url
from transport.exceptions import PgBossError, UnsupportedSchemaVersion
from transport.sql import schema_ddl

if TYPE_CHECKING:  # conftest is pytest's to import; only its types are used here
    from tests.node_fixtures import NodeBoss

pytestmark = pytest.mark.node

CUSTOM_SCHEMA = "zeke_boss"

# --------------------------------------------------------------------------------------------------
# Catalog snapshot: every object in one schema, as text rows per section.
# --------------------------------------------------------------------------------------------------

_SECTIONS: dict[str, str] = {
    "schema": """
        SELECT n.nspname, pg_get_userbyid(n.nspowner), n.nspacl::text, obj_description(n.oid, 'pg_namespace')
        FROM pg_namespace n WHERE n.nspname = %(s)s
    """,
    "relations": """
        SELECT c.relname, c.relkind, c.relpersistence, c.relispartition, pg_get_partkeydef(c.oid),
          pg_get_expr(c.relpartbound, c.oid),
          (SELECT p.relname FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent
           WHERE i.inhrelid = c.oid),
          am.amname, c.reloptions::text, c.relacl::text, c.relrowsecurity, c.relreplident,
          pg_get_userbyid(c.relowner), obj_description(c.oid, 'pg_class')
        FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_am am ON am.oid = c.relam
        WHERE n.nspname = %(s)s AND c.relkind NOT IN ('i', 'I')
    """,
    "columns": """
        SELECT c.relname, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
          pg_get_expr(d.adbin, d.adrelid), a.attidentity, a.attgenerated, coll.collname, a.attislocal,
          a.attinhcount, a.attstorage, a.attcompression, a.attstattarget, a.attacl::text,
          col_description(c.oid, a.attnum)
        FROM pg_attribute a
        JOIN pg_class c ON c.oid = a.attrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        LEFT JOIN pg_collation coll ON coll.oid = a.attcollation AND a.attcollation <> 0
        WHERE n.nspname = %(s)s AND a.attnum > 0 AND NOT a.attisdropped
          AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
    """,
    "indexes": """
        SELECT t.relname, ic.relname, pg_get_indexdef(i.indexrelid), i.indisunique, i.indisprimary,
          i.indisexclusion, i.indimmediate, i.indisvalid, i.indisready, i.indislive, i.indisclustered,
          (SELECT p.relname FROM pg_inherits h JOIN pg_class p ON p.oid = h.inhparent
           WHERE h.inhrelid = ic.oid),
          ic.reloptions::text, obj_description(ic.oid, 'pg_class')
        FROM pg_index i
        JOIN pg_class ic ON ic.oid = i.indexrelid
        JOIN pg_class t ON t.oid = i.indrelid
        JOIN pg_namespace n ON n.oid = ic.relnamespace
        WHERE n.nspname = %(s)s
    """,
    "constraints": """
        SELECT t.relname, con.conname, con.contype, pg_get_constraintdef(con.oid), con.condeferrable,
          con.condeferred, con.convalidated, con.conislocal, con.coninhcount, con.connoinherit,
          (SELECT p.conname FROM pg_constraint p WHERE p.oid = con.conparentid), ci.relname,
          format_type(con.contypid, NULL), obj_description(con.oid, 'pg_constraint')
        FROM pg_constraint con
        JOIN pg_namespace n ON n.oid = con.connamespace
        LEFT JOIN pg_class t ON t.oid = con.conrelid
        LEFT JOIN pg_class ci ON ci.oid = con.conindid
        WHERE n.nspname = %(s)s
    """,
    "functions": """
        SELECT p.proname, pg_get_function_identity_arguments(p.oid), pg_get_function_arguments(p.oid),
          pg_get_function_result(p.oid), l.lanname, p.prokind, p.provolatile, p.proisstrict, p.prosecdef,
          p.proleakproof, p.proparallel, p.procost, p.prorows, p.proconfig::text, p.proretset,
          pg_get_userbyid(p.proowner), p.proacl::text, obj_description(p.oid, 'pg_proc')
        FROM pg_proc p
        JOIN pg_namespace n ON n.oid = p.pronamespace
        JOIN pg_language l ON l.oid = p.prolang
        WHERE n.nspname = %(s)s
    """,
    # Bodies are compared only where zeke's text is meant to equal pg-boss's (job_now, which pg-boss's
    # own drift check also compares); the others are zeke's own code, checked by behaviour instead.
    "function bodies": """
        SELECT p.proname, regexp_replace(btrim(p.prosrc, E' \\n\\t'), '\\s+', ' ', 'g')
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = %(s)s AND p.proname = 'job_now'
    """,
    "types": """
        SELECT t.typname, t.typtype, t.typcategory, format_type(t.typbasetype, t.typtypmod),
          format_type(t.typelem, NULL), pg_get_userbyid(t.typowner), t.typacl::text,
          obj_description(t.oid, 'pg_type')
        FROM pg_type t
        JOIN pg_namespace n ON n.oid = t.typnamespace
        LEFT JOIN pg_class r ON r.oid = t.typrelid
        LEFT JOIN pg_type e ON e.oid = t.typelem
        LEFT JOIN pg_class er ON er.oid = e.typrelid
        WHERE n.nspname = %(s)s
          AND (r.oid IS NULL OR r.relkind = 'c') AND (er.oid IS NULL OR er.relkind = 'c')
    """,
    "enum labels": """
        SELECT t.typname, string_agg(e.enumlabel, ', ' ORDER BY e.enumsortorder)
        FROM pg_enum e JOIN pg_type t ON t.oid = e.enumtypid JOIN pg_namespace n ON n.oid = t.typnamespace
        WHERE n.nspname = %(s)s GROUP BY t.typname
    """,
    "triggers": """
        SELECT c.relname, tg.tgname, pg_get_triggerdef(tg.oid)
        FROM pg_trigger tg JOIN pg_class c ON c.oid = tg.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = %(s)s AND NOT tg.tgisinternal
    """,
    "rules and policies": """
        SELECT 'rule', c.relname, r.rulename, pg_get_ruledef(r.oid)
        FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = %(s)s AND r.rulename <> '_RETURN'
        UNION ALL
        SELECT 'policy', tablename, policyname, qual FROM pg_policies WHERE schemaname = %(s)s
        UNION ALL
        SELECT 'statistics', s.stxname, '', pg_get_statisticsobjdef(s.oid)
        FROM pg_statistic_ext s JOIN pg_namespace n ON n.oid = s.stxnamespace WHERE n.nspname = %(s)s
    """,
}

_STAMP_DATE = re.compile(r"(?<=queue_stats_)(\d{8})")
_BOUND_DATE = re.compile(r"(\d{4}-\d{2}-\d{2})(?= 00:00:00\+00)")


def connect(url: str) -> psycopg2.extensions.connection:
    conn = psycopg2.connect(dsn_from_url(url))
    conn.autocommit = True
    return conn


def catalog(url: str, schema: str) -> dict[str, list[str]]:
    """Every catalog object of ``schema`` plus its version row, one sorted text row per object.

    The only database-specific parts are the queue_stats day partitions, named and bounded by the
    install date: dates become day offsets from the earliest one, so two installs that straddle UTC
    midnight still compare equal.
    """
    conn = connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SET TIME ZONE 'UTC'")
            raw: dict[str, list[str]] = {}
            for section, sql in _SECTIONS.items():
                cur.execute(sql, {"s": schema})
                raw[section] = [
                    " | ".join("∅" if v is None else str(v) for v in row) for row in cur.fetchall()
                ]
            quoted = pgschema.quote_schema(schema)
            cur.execute(f"SELECT version FROM {quoted}.version")
            raw["version row"] = [f"version = {row[0]}" for row in cur.fetchall()]
            cur.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{quoted}.bam",))
            if cur.fetchone()[0]:  # v27+
                cur.execute(f"SELECT count(*) FROM {quoted}.bam")
                raw["version row"].append(f"bam rows = {cur.fetchone()[0]}")
    finally:
        conn.close()

    days: set[dt.date] = set()
    for rows in raw.values():
        for row in rows:
            days.update(dt.datetime.strptime(d, "%Y%m%d").date() for d in _STAMP_DATE.findall(row))
            days.update(dt.date.fromisoformat(d) for d in _BOUND_DATE.findall(row))
    first = min(days, default=dt.date.today())

    def offset(day: dt.date) -> str:
        return f"<day+{(day - first).days}>"

    def normalise(row: str) -> str:
        row = _STAMP_DATE.sub(lambda m: offset(dt.datetime.strptime(m.group(1), "%Y%m%d").date()), row)
        return _BOUND_DATE.sub(lambda m: offset(dt.date.fromisoformat(m.group(1))), row)

    return {section: sorted(normalise(row) for row in rows) for section, rows in raw.items()}


def catalog_diff(
    expected: dict[str, list[str]], actual: dict[str, list[str]], labels=("node", "python")
) -> str:
    """A unified diff per differing section; empty when identical."""
    out: list[str] = []
    for section in expected:
        if expected[section] != actual.get(section):
            out.append(f"== {section} ==")
            out.extend(
                difflib.unified_diff(
                    expected[section], actual.get(section, []), labels[0], labels[1], lineterm="", n=1
                )
            )
    return "\n".join(out)


def assert_same_catalog(
    expected: dict[str, list[str]], actual: dict[str, list[str]], labels=("node", "python")
):
    diff = catalog_diff(expected, actual, labels)
    assert not diff, f"catalogs differ ({labels[0]} vs {labels[1]}):\n{diff}"


def py_install(url: str, schema: str) -> bool:
    conn = psycopg2.connect(dsn_from_url(url))
    try:
        return pgschema.install(conn, schema)
    finally:
        conn.close()


@pytest.fixture
def installed_pair(scratch_db: Callable[[str], str], node_boss: NodeBoss) -> Callable[[str], tuple[str, str]]:
    """Factory: (node_url, python_url), the same schema installed by Node 12.38.1 and by zeke."""

    def make(schema: str) -> tuple[str, str]:
        node_url = scratch_db("zeke_schema_node")
        py_url = scratch_db("zeke_schema_py")
        assert node_boss.run("12.38", node_url, schema, "start") == {"schemaVersion": 46}
        assert py_install(py_url, schema) is True
        return node_url, py_url

    return make


# --------------------------------------------------------------------------------------------------
# The catalog itself
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("schema", ["pgboss", CUSTOM_SCHEMA])
def test_catalog_matches_node(installed_pair, schema: str) -> None:
    node_url, py_url = installed_pair(schema)
    node, python = catalog(node_url, schema), catalog(py_url, schema)

    # Guard the comparison itself: an empty or half-read snapshot would compare equal too easily.
    assert len(node["relations"]) == 13, node["relations"]  # 11 tables + 2 queue_stats day partitions
    assert len(node["indexes"]) > 30 and len(node["constraints"]) > 20 and len(node["columns"]) > 150
    assert len(node["functions"]) == 6
    assert node["enum labels"] == ["job_state | created, retry, active, completed, cancelled, failed"]
    assert node["version row"] == ["bam rows = 0", "version = 46"]
    assert_same_catalog(node, python)


def test_catalog_is_stable_under_a_second_install(installed_pair) -> None:
    """install() on an installed schema changes nothing (and says so)."""
    _, py_url = installed_pair("pgboss")
    before = catalog(py_url, "pgboss")
    assert py_install(py_url, "pgboss") is False
    conn = psycopg2.connect(dsn_from_url(py_url))
    try:
        info = pgschema.ensure(conn, "pgboss")
    finally:
        conn.close()
    assert info.version == 46
    assert_same_catalog(before, catalog(py_url, "pgboss"), ("before", "after"))


# --------------------------------------------------------------------------------------------------
# The functions: zeke's bodies are its own, so they are compared by what they do.
# --------------------------------------------------------------------------------------------------

_QUEUES: list[tuple[str, dict[str, Any]]] = [
    ("dlq", {"policy": "standard"}),
    ("shared", {"policy": "standard", "deadLetter": "dlq", "retryLimit": 5, "retryDelay": 3}),
    ("p-standard", {"policy": "standard", "partition": True}),
    ("p-short", {"policy": "short", "partition": True}),
    ("p-singleton", {"policy": "singleton", "partition": True}),
    ("p-stately", {"policy": "stately", "partition": True}),
    ("p-exclusive", {"policy": "exclusive", "partition": True}),
    ("p-fifo", {"policy": "key_strict_fifo", "partition": True, "deadLetter": "dlq"}),
    (
        "p-tuned",
        {
            "policy": "standard",
            "partition": True,
            "retryLimit": 7,
            "retryDelay": 2,
            "retryBackoff": True,
            "retryDelayMax": 60,
            "expireInSeconds": 30,
            "retentionSeconds": 100,
            "deleteAfterSeconds": 0,
            "warningQueueSize": 10,
            "heartbeatSeconds": 30,
            "notify": True,
        },
    ),
    ("p-standard", {"policy": "short", "partition": True, "retryLimit": 9}),  # exists: a no-op
    ("it's/odd.name-1", {"policy": "stately", "partition": True}),  # quoting in cjc and the bound
    ("not-partitioned", {"policy": "short", "partition": False}),
    ("partition-text", {"policy": "standard", "partition": "true"}),  # JSON string, as ->> sees it
]

_FORMAT_INPUTS = [
    "CREATE INDEX job_i5 ON pgboss.job (name) WHERE x",
    "ALTER TABLE pgboss.job ADD CONSTRAINT c CHECK (true); DROP INDEX pgboss.job_i12",
    "SELECT 1 FROM pgboss.jobs, pgboss.job_common, x.job, xjob_i3, job_i, job_i42b",
    "CREATE INDEX job_i1 ON pgboss.job (a) -- .job job_i2 100%% done",
]
_FORMAT_TABLES = ["job_common", "j0123abc", "MixedCase", "with space", 'q"uote']


def _exercise(url: str, schema: str) -> dict[str, list[str]]:
    """Run every function through the same script; return what it produced beyond the catalog."""
    q = pgschema.quote_schema(schema)
    results: dict[str, list[str]] = {"job_table_format": [], "errors": []}
    conn = connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SET TIME ZONE 'UTC'")
            for command in _FORMAT_INPUTS:
                for table in _FORMAT_TABLES:
                    cur.execute(f"SELECT {q}.job_table_format(%s, %s)", (command, table))
                    results["job_table_format"].append(f"{command!r} @ {table!r} -> {cur.fetchone()[0]!r}")
            for name, options in _QUEUES:
                cur.execute(f"SELECT {q}.create_queue(%s, %s::jsonb)", (name, psycopg2.extras.Json(options)))
            # Before anything is deleted: every policy's partition as create_queue built it.
            for section, rows in catalog(url, schema).items():
                results[f"after create_queue: {section}"] = rows
            # Jobs in a shared and a partitioned queue, so delete_queue has rows to remove.
            cur.execute(
                f"INSERT INTO {q}.job (name, data) VALUES ('shared', '{{}}'), ('p-short', '{{}}'), "
                "('dlq', '{}')"
            )
            cur.execute(f"SELECT {q}.delete_queue('shared')")
            cur.execute(f"SELECT {q}.delete_queue('p-short')")
            for sql in (f"SELECT {q}.delete_queue('no-such-queue')",):
                try:
                    cur.execute(sql)
                    results["errors"].append(f"{sql}: no error")
                except psycopg2.Error as exc:
                    results["errors"].append(f"{sql}: {exc.pgcode}")
            # job_table_run: one table, one queue's table, an unknown queue (= every table), all tables.
            cur.execute(
                f"SELECT {q}.job_table_run($c$CREATE INDEX job_i90 ON {q}.job (name, data)$c$, 'job_common')"
            )
            cur.execute(
                f"SELECT {q}.job_table_run($c$CREATE INDEX job_i91 ON {q}.job (name, priority)$c$, "
                "NULL, 'p-fifo')"
            )
            cur.execute(
                f"SELECT {q}.job_table_run($c$CREATE INDEX job_i92 ON {q}.job (name, retry_count)$c$, "
                "NULL, 'nope')"
            )
            cur.execute(f"SELECT {q}.job_table_run($c$CREATE INDEX job_i93 ON {q}.job (name, output)$c$)")
            cur.execute(
                f"SELECT {q}.job_table_run_async('one', 101, $c$CREATE INDEX job_i94 ON {q}.job (id)$c$, "
                "'j1')"
            )
            cur.execute(
                f"SELECT {q}.job_table_run_async('queue', 102, $c$DROP INDEX {q}.job_i94$c$, NULL, 'p-tuned')"
            )
            cur.execute(
                f"SELECT {q}.job_table_run_async('all', 103, $c$CREATE INDEX job_i95 ON {q}.job (id)$c$)"
            )
            cur.execute(
                f"""SELECT name, version, status, queue, table_name, command FROM {q}.bam
                    ORDER BY version, created_on, table_name"""
            )
            results["bam"] = [repr(row) for row in cur.fetchall()]
            cur.execute(
                f"""SELECT name, policy, retry_limit, retry_delay, retry_backoff, retry_delay_max,
                      expire_seconds, retention_seconds, deletion_seconds, warning_queued, dead_letter,
                      partition, table_name, heartbeat_seconds, notify, created_on = updated_on
                    FROM {q}.queue WHERE name NOT LIKE '\\_\\_pgboss%%' ORDER BY name"""
            )
            results["queues"] = [repr(row) for row in cur.fetchall()]
            cur.execute(f"SELECT name, count(*) FROM {q}.job GROUP BY name ORDER BY name")
            results["jobs"] = [repr(row) for row in cur.fetchall()]
    finally:
        conn.close()
    return results


def test_functions_behave_like_node(installed_pair) -> None:
    """The same calls of create_queue/delete_queue/job_table_* leave both databases identical."""
    schema = CUSTOM_SCHEMA  # a non-default name also proves {schema} reaches into every body
    node_url, py_url = installed_pair(schema)
    node_results, py_results = _exercise(node_url, schema), _exercise(py_url, schema)
    assert len(node_results["bam"]) > 5 and len(node_results["queues"]) == len(_QUEUES) - 1 - 2
    assert node_results["errors"] == ["SELECT \"zeke_boss\".delete_queue('no-such-queue'): 22004"]
    assert_same_catalog(node_results, py_results)
    assert_same_catalog(catalog(node_url, schema), catalog(py_url, schema))


# --------------------------------------------------------------------------------------------------
# Node pg-boss on a schema zeke made
# --------------------------------------------------------------------------------------------------


def test_node_runs_on_python_schema(scratch_db, node_boss: NodeBoss) -> None:
    url = scratch_db("zeke_schema_py")
    assert py_install(url, "pgboss") is True
    before = catalog(url, "pgboss")

    # migrate: false runs pg-boss's check(): it refuses unless the versions are equal.
    assert node_boss.run("12.38", url, "pgboss", "check") == {"schemaVersion": 46}
    smoke = node_boss.run("12.38", url, "pgboss", "smoke", migrate=False, queue="py-made")
    assert smoke["state"] == "completed" and smoke["output"] == {"ok": True}
    smoke = node_boss.run("12.38", url, "pgboss", "smoke", migrate=False, queue="py-made-p", partition=True)
    assert smoke["state"] == "completed"

    # pg-boss's own drift check agrees on every table, column, index, constraint and the enum. It
    # flags the bodies of the five functions zeke writes itself (job_now's matches), nothing else.
    drift = node_boss.run("12.38", url, "pgboss", "drift")
    assert {
        name: value for name, value in drift.items() if value and name not in ("ok", "mismatchedFunctions")
    } == {}
    assert {f["name"] for f in drift["mismatchedFunctions"]} <= {
        "create_queue",
        "delete_queue",
        "job_table_format",
        "job_table_run",
        "job_table_run_async",
    }

    # Node changed no catalog object apart from the partitioned queue it created.
    after = catalog(url, "pgboss")
    added = {row for rows in after.values() for row in rows} - {
        row for rows in before.values() for row in rows
    }
    assert all(re.search(r"\bj[0-9a-f]{56}\b", row) for row in added), added


def test_lock_key_matches_node(scratch_db, node_boss: NodeBoss) -> None:
    url = scratch_db("zeke_schema_py")
    dbname = psycopg2.extensions.parse_dsn(dsn_from_url(url))["dbname"]
    conn = connect(url)
    try:
        with conn.cursor() as cur:
            for schema, key in [
                ("pgboss", ""),
                ("pgboss", "create-queue"),
                (CUSTOM_SCHEMA, "job_commondeletion"),
            ]:
                node_sql = node_boss.run("12.38", url, schema, "lockkey", key=key)["sql"]
                cur.execute(f"SELECT {node_sql}")
                node_key = cur.fetchone()[0]
                sql, params = pgschema.lock_key_sql(schema, key)
                cur.execute(f"SELECT {sql}", params)
                assert cur.fetchone()[0] == node_key == pgschema.lock_key(dbname, schema, key)
    finally:
        conn.close()
    # The value the reference notes for database live12, schema pgboss.
    assert pgschema.lock_key("live12", "pgboss") == -8027535067070562157


# --------------------------------------------------------------------------------------------------
# Detection and refusal
# --------------------------------------------------------------------------------------------------


def _detect(url: str, schema: str, fn=pgschema.detect) -> pgschema.SchemaInfo:
    conn = psycopg2.connect(dsn_from_url(url))
    try:
        info = fn(conn, schema)
        assert conn.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_IDLE
        return info
    finally:
        conn.close()


def test_detects_pg_boss_12_5_schema(scratch_db, node_boss: NodeBoss) -> None:
    url = scratch_db("zeke_schema_v26")
    assert node_boss.run("12.5", url, "pgboss", "start") == {"schemaVersion": 26}
    before = catalog(url, "pgboss")

    info = _detect(url, "pgboss", pgschema.ensure)  # supported: served as is, never upgraded
    assert info.version == 26 and info.release == "pg-boss 11.1 - 12.5"
    assert info.features == frozenset({"singletons_active"})
    for feature in ("heartbeat", "blocked", "notify", "source", "source_output", "job_now", "monitor_claim"):
        assert not info.has(feature)
    assert info.job_columns[:3] == ("id", "name", "priority")
    assert "heartbeat_on" not in info.job_columns and "expire_seconds" in info.job_columns
    assert len(info.job_columns) == 22
    assert _detect(url, "pgboss", pgschema.require) == info
    assert_same_catalog(before, catalog(url, "pgboss"), ("before", "after"))


def test_detects_current_schema(scratch_db) -> None:
    url = scratch_db("zeke_schema_py")
    assert _detect(url, "pgboss") == pgschema.SchemaInfo("pgboss", None)
    with pytest.raises(UnsupportedSchemaVersion, match="not installed"):
        _detect(url, "pgboss", pgschema.require)
    info = _detect(url, "pgboss", pgschema.ensure)
    assert info.version == 46 and info.features == frozenset(pgschema.FEATURE_PROBES)
    assert len(info.job_columns) == 37 and info.job_columns[-1] == "upsert_by_key"
    assert _detect(url, "pgboss") == info


@pytest.mark.parametrize(
    ("version", "message"),
    [
        (
            24,
            r"pg-boss schema version 24 \(pg-boss 10\.x\) .* is older than 26 \(pg-boss 12\.0\), "
            r"the oldest zeke serves; upgrade it with Node pg-boss >= 12 \(`npx pg-boss migrate`\) first",
        ),
        (25, r"version 25 \(pg-boss 11\.0\) .* older than 26 .*`npx pg-boss migrate`\) first$"),
        (
            47,
            r"pg-boss schema version 47 \(a pg-boss release newer than 12\.38\) .* is newer than 46 "
            r"\(pg-boss 12\.38\), the newest zeke knows; upgrade zeke",
        ),
    ],
    ids=["v24", "v25", "v47"],
)
def test_refuses_unsupported_versions(scratch_db, version: int, message: str) -> None:
    url = scratch_db("zeke_schema_fake")
    assert py_install(url, "pgboss")
    conn = connect(url)
    with conn.cursor() as cur:
        cur.execute("UPDATE pgboss.version SET version = %s", (version,))
    conn.close()
    before = catalog(url, "pgboss")

    assert _detect(url, "pgboss").version == version
    for fn in (pgschema.ensure, pgschema.require):
        with pytest.raises(UnsupportedSchemaVersion, match=message) as refused:
            _detect(url, "pgboss", fn)
        assert isinstance(refused.value, PgBossError)
    assert py_install(url, "pgboss") is False
    assert_same_catalog(before, catalog(url, "pgboss"), ("before", "after"))


def test_refuses_a_version_table_without_its_row(scratch_db) -> None:
    url = scratch_db("zeke_schema_fake")
    assert py_install(url, "pgboss")
    conn = connect(url)
    with conn.cursor() as cur:
        cur.execute("DELETE FROM pgboss.version")
    conn.close()
    with pytest.raises(UnsupportedSchemaVersion, match="holds 0 rows"):
        _detect(url, "pgboss", pgschema.ensure)


def test_install_refuses_to_join_a_transaction(scratch_db) -> None:
    url = scratch_db("zeke_schema_py")
    conn = psycopg2.connect(dsn_from_url(url))
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
        with pytest.raises(PgBossError, match="not inside a transaction"):
            pgschema.install(conn, "pgboss")
    finally:
        conn.close()


def test_leftover_objects_are_reported_not_papered_over(scratch_db) -> None:
    """pg-boss's names taken by something else: Node would ignore the error; ensure() says what is wrong."""
    url = scratch_db("zeke_schema_py")
    conn = connect(url)
    with conn.cursor() as cur:
        cur.execute("CREATE SCHEMA pgboss; CREATE TYPE pgboss.job_state AS ENUM ('x')")
    conn.close()
    assert py_install(url, "pgboss") is False  # "already exists": treated as a lost race
    with pytest.raises(PgBossError, match="no pg-boss version table"):
        _detect(url, "pgboss", pgschema.ensure)


# --------------------------------------------------------------------------------------------------
# Concurrent installers
# --------------------------------------------------------------------------------------------------


def _waiting_on_advisory_locks(url: str) -> int:
    conn = connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(
                """SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
                   WHERE l.locktype = 'advisory' AND NOT l.granted AND a.datname = current_database()"""
            )
            return cur.fetchone()[0]
    finally:
        conn.close()


@contextlib.contextmanager
def _node_process(argv: list[str]) -> Iterator[subprocess.Popen[str]]:
    """A Node script in the background, killed if the test leaves before it finished."""
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def _wait_for_lock_waiters(url: str, count: int) -> None:
    deadline = time.monotonic() + 30
    while _waiting_on_advisory_locks(url) < count:
        assert time.monotonic() < deadline, f"fewer than {count} installers queued on the install lock"
        time.sleep(0.05)


@pytest.mark.parametrize("order", ["python", "python, then node", "node, then python"])
def test_concurrent_installers_make_one_schema(scratch_db, node_boss: NodeBoss, order: str) -> None:
    """Installers queue on pg-boss's install lock (held here until all wait); all succeed, the first
    in the lock's queue installs, and the rest find its schema."""
    url = scratch_db("zeke_schema_race")
    reference_url = scratch_db("zeke_schema_py")
    assert py_install(reference_url, "pgboss")
    results: dict[str, Any] = {}

    def python_installer(name: str) -> None:
        conn = psycopg2.connect(dsn_from_url(url))
        try:
            results[name] = pgschema.install(conn, "pgboss")
            results[name + " info"] = pgschema.ensure(conn, "pgboss")
        except Exception as exc:  # reported below
            results[name] = exc
        finally:
            conn.close()

    threads = [threading.Thread(target=python_installer, args=(f"python-{i}",)) for i in range(2)]
    node_argv = node_boss.command("12.38", url, "pgboss", "start")
    with contextlib.ExitStack() as stack:
        holder = psycopg2.connect(dsn_from_url(url))
        stack.callback(holder.close)
        with holder.cursor() as cur:
            cur.execute(*pgschema.lock_sql("pgboss"))

        node = None
        if order.startswith("node"):
            node = stack.enter_context(_node_process(node_argv))
            _wait_for_lock_waiters(url, 1)  # so Node is first in the lock's queue
        for thread in threads:
            thread.start()
        _wait_for_lock_waiters(url, 2 + (node is not None))
        if order == "python, then node":
            node = stack.enter_context(_node_process(node_argv))
            _wait_for_lock_waiters(url, 3)
        holder.rollback()  # release: the installers now run one after another

        for thread in threads:
            thread.join(60)
        if node is not None:
            out, err = node.communicate(timeout=60)
            assert node.returncode == 0, err
            assert json.loads(out) == {"schemaVersion": 46}

    python_results = [results[f"python-{i}"] for i in range(2)]
    assert all(isinstance(r, bool) for r in python_results), python_results
    assert sum(python_results) == (0 if order.startswith("node") else 1), python_results
    assert all(results[f"python-{i} info"].version == 46 for i in range(2))
    assert_same_catalog(catalog(reference_url, "pgboss"), catalog(url, "pgboss"), ("single install", "raced"))


def test_node_waits_for_a_python_install(scratch_db, node_boss: NodeBoss) -> None:
    """Node started while zeke's install transaction holds the lock uses zeke's schema, unmigrated."""
    url = scratch_db("zeke_schema_race")
    conn = psycopg2.connect(dsn_from_url(url))
    try:
        with conn.cursor() as cur:
            cur.execute(*pgschema.lock_sql("pgboss"))
            cur.execute(schema_ddl(46).replace("{schema}", '"pgboss"'))
        with _node_process(node_boss.command("12.38", url, "pgboss", "start")) as node:
            _wait_for_lock_waiters(url, 1)
            conn.commit()
            out, err = node.communicate(timeout=60)
        assert node.returncode == 0, err
        assert json.loads(out) == {"schemaVersion": 46}
    finally:
        conn.close()
    assert _detect(url, "pgboss").version == 46


def test_node_error_is_loud(node_boss: NodeBoss) -> None:
    """A failing Node command fails the test with Node's message (no silent skips)."""
    with pytest.raises(node_boss.Error, match="unknown pg-boss release"):
        node_boss.run("9.9", "postgresql://nowhere/x", "pgboss", "start")
