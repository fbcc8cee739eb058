"""``zeke doctor`` / transport.drift: a database's pg-boss schema against what zeke expects for its
version, on a schema zeke installed, on each Node release of the interop matrix, and on schemas
altered by hand (in this module's own database)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable

import pytest

from tests.node_fixtures import NodeBoss
from transport import drift
from transport.db import Database
from transport.manager import JobManager

pytestmark = pytest.mark.own_database("drift")

#: Matrix release -> its schema version.
NODE_RELEASES = {"12.38": 46, "12.34": 42, "12.5": 26}


def report(database: Database, schema: str) -> drift.Report:
    with database.connection() as conn:
        return drift.compare(conn, schema)


def kinds(r: drift.Report) -> set[tuple[str, str]]:
    return {(f.kind, f.what) for f in r.findings}


def test_a_schema_zeke_installed_has_no_drift(
    make_boss: Callable[..., JobManager], database: Database
) -> None:
    boss = make_boss()
    assert boss.info.version == 46
    r = report(database, boss.schema)
    assert (r.version, r.catalog, r.drift) == (46, True, False)
    # The one note: zeke writes pg-boss's functions in its own text.
    [note] = r.findings
    assert (note.kind, note.what) == ("note", "function bodies")
    assert "create_queue" in note.detail and "job_now" in note.detail


@pytest.mark.node
@pytest.mark.parametrize("release", list(NODE_RELEASES))
def test_a_schema_node_installed_has_no_drift(
    release: str, node_boss: NodeBoss, db_url: str, database: Database
) -> None:
    schema = "n_" + uuid.uuid4().hex[:10]
    try:
        assert node_boss.run(release, db_url, schema, "start") == {"schemaVersion": NODE_RELEASES[release]}
        r = report(database, schema)
        assert (r.version, r.catalog, r.drift, r.findings) == (NODE_RELEASES[release], True, False, ())
    finally:
        with database.cursor() as cur:
            cur.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_changes_by_hand_are_reported(make_boss: Callable[..., JobManager], database: Database) -> None:
    boss = make_boss()
    boss.create_queue("kept", partition=True)  # a queue partition is use, not drift
    q = f'"{boss.schema}"'
    with database.cursor() as cur:
        cur.execute(f"DROP INDEX {q}.job_common_i11")
        cur.execute(f"ALTER TABLE {q}.queue ADD COLUMN note text")
        cur.execute(f"ALTER TABLE {q}.queue ALTER COLUMN retry_limit DROP NOT NULL")
        cur.execute(
            f"CREATE OR REPLACE FUNCTION {q}.job_now() RETURNS timestamptz LANGUAGE sql AS 'SELECT now()'"
        )
    r = report(database, boss.schema)
    assert r.drift
    assert {
        ("missing", "index job_common_i11"),
        ("unexpected", "column queue.note"),
        ("different", "column queue.retry_limit"),
        ("different", "function job_now()"),
    } <= kinds(r)
    assert not any("kept" in f.what or f.what.startswith("table j") for f in r.findings)


def test_a_version_without_a_catalog_is_checked_for_what_zeke_uses(
    make_boss: Callable[..., JobManager], database: Database
) -> None:
    boss = make_boss()
    boss.info  # noqa: B018  (installs)
    with database.cursor() as cur:
        cur.execute(f'UPDATE "{boss.schema}".version SET version = 30')
    r = report(database, boss.schema)
    assert (r.version, r.catalog, r.drift) == (30, False, False)
    with database.cursor() as cur:
        cur.execute(f'ALTER TABLE "{boss.schema}".job DROP COLUMN keep_until CASCADE')
    r = report(database, boss.schema)
    assert r.drift and ("missing", "column job.keep_until") in kinds(r)


def test_zeke_doctor_exits_1_on_drift(
    make_boss: Callable[..., JobManager], database: Database, db_url: str
) -> None:
    boss = make_boss()
    boss.info  # noqa: B018  (installs)
    env = {**os.environ, "DATABASE_PRIMARY_URL": db_url, "ZEKE_PGBOSS_SCHEMA": boss.schema}
    argv = [sys.executable, "-m", "zeke.cli", "doctor"]
    clean = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
    assert clean.returncode == 0, clean.stderr
    assert "no drift" in clean.stdout
    with database.cursor() as cur:
        cur.execute(f'DROP INDEX "{boss.schema}".job_common_i14')
    drifted = subprocess.run(argv + ["--json"], capture_output=True, text=True, env=env, timeout=60)
    assert drifted.returncode == 1, drifted.stderr
    out = json.loads(drifted.stdout)
    assert out["drift"] is True
    assert {"kind": "missing", "what": "index job_common_i14"} in [
        {k: f[k] for k in ("kind", "what")} for f in out["findings"]
    ]
