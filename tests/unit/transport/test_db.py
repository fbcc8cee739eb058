"""Session settings every pg-boss connection gets, and what a URL or PGOPTIONS says instead."""

from __future__ import annotations

import psycopg2.extensions
import pytest

from transport.db import Database, with_session_settings
from transport.prepared import PreparedDatabase


def _options(dsn: str) -> str:
    return psycopg2.extensions.parse_dsn(dsn).get("options", "")


def test_jit_is_off_and_the_rest_of_the_url_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGOPTIONS", raising=False)
    dsn = Database("postgresql://u:secret@db.example:6543/jobs?sslmode=require").dsn
    params = psycopg2.extensions.parse_dsn(dsn)
    assert params == {
        "user": "u",
        "password": "secret",
        "host": "db.example",
        "port": "6543",
        "dbname": "jobs",
        "sslmode": "require",
        "options": "-c jit=off",
    }


def test_prepared_pools_also_force_generic_plans(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGOPTIONS", raising=False)
    options = _options(PreparedDatabase("pgboss://h/d").dsn)
    assert options == "-c jit=off -c plan_cache_mode=force_generic_plan"


def test_a_setting_in_the_url_wins() -> None:
    dsn = with_session_settings(
        "postgresql://h/d?options=-c%20jit%3Don%20-c%20statement_timeout%3D5000", {"jit": "off"}
    )
    assert _options(dsn) == "-c jit=on -c statement_timeout=5000"


def test_pgoptions_from_the_environment_is_not_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    # An explicit options parameter replaces libpq's PGOPTIONS (the TestClock opts in through it).
    monkeypatch.setenv("PGOPTIONS", "-c pgboss.test_clock=on")
    assert _options(with_session_settings("postgresql://h/d", {"jit": "off"})) == (
        "-c pgboss.test_clock=on -c jit=off"
    )
