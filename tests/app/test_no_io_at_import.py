"""Importing zeke, transport and tasks, and ``zeke --help``, connect nowhere and start nothing.

Each check runs in a fresh interpreter in which every way out is closed before the imports:
``socket.connect`` (TCP and Unix sockets), ``psycopg2.connect`` and ``pgserver.get_server`` raise.
The environment is development with no database URL, the setting in which a URL lookup would start
the embedded server, and the data directory is a fresh one that must still not exist afterwards.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

GUARD = """
import socket, sys
import psycopg2, pgserver

def refuse(*args, **kwargs):
    raise AssertionError("I/O at import")

socket.socket.connect = socket.socket.connect_ex = refuse
psycopg2.connect = pgserver.get_server = refuse
"""


def _run(code: str, data: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "CELERY_", "ZEKE_"))}
    env.update(ZEKE_ENV="development", ZEKE_DATA_DIR=str(data), PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-c", GUARD + code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    "code",
    [
        "import zeke, transport, tasks, zeke.cli, zeke.client, zeke.api.app\n"
        "from zeke.app import app\n"
        "assert app.tasks.get('ingest-pull') is not None  # the suite's tasks are declared\n",
        "from zeke.cli import main\nmain(['--help'])\n",
        "from celery.bin.celery import main\n"
        "sys.argv = ['celery', '-A', 'zeke', 'worker', '--help']\nmain()\n",
    ],
    ids=["import", "zeke --help", "celery -A zeke worker --help"],
)
def test_nothing_connects_or_starts(code: str, tmp_path: Path) -> None:
    data = tmp_path / "zeke-data"
    done = _run(code, data)
    assert done.returncode == 0, done.stderr
    assert "I/O at import" not in done.stderr
    assert not data.exists()


def test_the_guard_catches_a_database_lookup(tmp_path: Path) -> None:
    """The same guard does stop what importing must not do: a lookup of the development database."""
    data = tmp_path / "zeke-data"
    done = _run("from zeke.app import app\napp.conf.broker_url\n", data)
    assert done.returncode != 0 and "I/O at import" in done.stderr
