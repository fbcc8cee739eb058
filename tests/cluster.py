"""A PostgreSQL server of a test module's own, for tests that stop, crash or reconfigure one: never
the server the rest of the suite, or anyone else, uses. pgserver's binaries (the ``pgserver`` wheel),
data in a temporary directory, reached through its Unix socket; stopped and removed afterwards."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import psycopg2

from transport.db import dsn_from_url


class ThrowawayCluster:
    """A PostgreSQL server of one test module's own (the ``cluster`` fixture)."""

    def __init__(self) -> None:
        # Not under pytest's tmp_path: under root, postgres runs as the ``pgserver`` user and needs the
        # directory's parents open to it, and every pytest session closes /tmp/pytest-of-root again.
        self.base = Path(tempfile.mkdtemp(prefix="zeke-chaos-pg-"))
        self.pgdata = self.base / "pgdata"
        self.user = "pgserver" if os.geteuid() == 0 else None  # pgserver runs postgres as this user
        self.url = str(_pgserver().get_server(self.pgdata, cleanup_mode=None).get_uri())

    def pg_ctl(self, *args: str) -> None:
        _pgserver().pg_ctl(["-w", *args], pgdata=self.pgdata, user=self.user, timeout=120)

    def restart(self) -> None:
        self.pg_ctl("-m", "fast", "restart")

    def ready(self) -> bool:
        try:
            psycopg2.connect(dsn_from_url(self.url), connect_timeout=2).close()
        except psycopg2.Error:
            return False
        return True

    def remove(self) -> None:
        if (self.pgdata / "postmaster.pid").exists():
            self.pg_ctl("-m", "immediate", "stop")
        shutil.rmtree(self.base, ignore_errors=True)


def _pgserver() -> Any:
    import pgserver

    return pgserver
