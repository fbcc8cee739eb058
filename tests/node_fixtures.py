"""Node pg-boss for the tests: tests/node installed at the pinned versions, and a runner for boss.mjs
(the fixtures using them are in tests/conftest.py)."""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

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


def installed_node_dir() -> Path:
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
