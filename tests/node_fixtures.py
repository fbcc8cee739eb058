"""Fixtures for tests needing databases of their own or Node pg-boss; re-exported by tests/conftest.py."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.dbutil import admin_execute, with_database
from transport.db import dsn_from_url

NODE_DIR = Path(__file__).resolve().parent / "node"
#: node_modules folder -> the version package.json pins; anything else means a reinstall.
NODE_PACKAGES = {"pg-boss": "12.38.1", "pg-boss-12-34": "12.34.0", "pg-boss-12-5": "12.5.4"}


def _installed_versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for folder in NODE_PACKAGES:
        manifest = NODE_DIR / "node_modules" / folder / "package.json"
        found[folder] = json.loads(manifest.read_text())["version"] if manifest.exists() else None
    return found


@pytest.fixture(scope="session")
def node_dir() -> Path:
    """tests/node with its node_modules installed (npm ci), or the test fails: never a skip."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("node and npm are required for the Node pg-boss interop tests (Node >= 20)")
    # Several pytest sessions may share this working tree: install under a lock.
    digest = hashlib.sha1(str(NODE_DIR).encode()).hexdigest()[:12]
    lock_path = Path(tempfile.gettempdir()) / f"zeke-npm-{digest}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _installed_versions() != NODE_PACKAGES:
            has_lock = (NODE_DIR / "package-lock.json").exists()
            cmd = ["npm", "ci" if has_lock else "install", "--no-audit", "--no-fund"]
            done = subprocess.run(cmd, cwd=NODE_DIR, capture_output=True, text=True, timeout=600)
            if done.returncode != 0:
                pytest.fail(f"`{' '.join(cmd)}` failed in {NODE_DIR}:\n{done.stdout}\n{done.stderr}")
            if _installed_versions() != NODE_PACKAGES:
                pytest.fail(f"npm installed {_installed_versions()}, expected {NODE_PACKAGES}")
    return NODE_DIR


class NodeError(AssertionError):
    """A tests/node script exited non-zero."""


class NodeBoss:
    """Runs ``tests/node/boss.mjs <release> <url> <schema> <command> [--option value ...]``."""

    #: Raised by run(); reachable from the fixture, since test modules should not import conftest.
    Error = NodeError

    def __init__(self, directory: Path) -> None:
        self.script = directory / "boss.mjs"

    def command(self, release: str, url: str, schema: str, command: str, **options: Any) -> list[str]:
        argv = ["node", str(self.script), release, dsn_from_url(url), schema, command]
        for key, value in options.items():
            argv += [f"--{key}", json.dumps(value) if isinstance(value, bool) else str(value)]
        return argv

    def run(self, release: str, url: str, schema: str, command: str, *, timeout: float = 120, **options: Any):
        """The command's JSON output; NodeError (with Node's stderr) when it fails."""
        argv = self.command(release, url, schema, command, **options)
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise NodeError(f"{' '.join(argv[2:])} failed:\n{done.stderr.strip()}")
        return json.loads(done.stdout)


@pytest.fixture(scope="session")
def node_boss(node_dir: Path) -> NodeBoss:
    return NodeBoss(node_dir)


@pytest.fixture
def scratch_db(admin_url: str) -> Iterator[Callable[[str], str]]:
    """Factory: a new empty database named ``<prefix>_<random>``; returns its URL; dropped afterwards."""
    made: list[str] = []

    def admin(sql: str) -> None:
        admin_execute(admin_url, sql)

    def make(prefix: str = "zeke_scratch") -> str:
        # Random suffix: other sessions may run the same tests against the same server.
        name = f"{prefix}_{uuid.uuid4().hex[:8]}"
        admin(f'CREATE DATABASE "{name}"')
        made.append(name)
        return with_database(admin_url, name)

    yield make
    if os.environ.get("ZEKE_KEEP_SCRATCH_DBS"):
        return
    for name in made:
        admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
