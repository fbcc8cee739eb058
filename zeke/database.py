"""Where the database is: ``DATABASE_PRIMARY_URL``, or an embedded PostgreSQL from ``pgserver``.

Every component (worker, beat, API, CLI, tests) asks :func:`database_url` and nothing else. With no
URL set, the first process starts a PostgreSQL server from the ``pgserver`` wheel with its data under
the project's ``.zeke/pgdata`` (or ``ZEKE_DATA_DIR``) and leaves it running; later processes attach
to the same server through its Unix socket, so worker, beat and API share one database.
"""

from __future__ import annotations

import os
import threading
from functools import cache
from pathlib import Path

_lock = threading.Lock()


def data_dir() -> Path:
    configured = os.environ.get("ZEKE_DATA_DIR")
    if configured:
        return Path(configured).expanduser().resolve()
    return Path(__file__).resolve().parent.parent / ".zeke"


def database_url() -> str:
    """The PostgreSQL URL every part of zeke connects to."""
    url = os.environ.get("DATABASE_PRIMARY_URL", "").strip()
    if url:
        return url
    return embedded_url()


@cache
def embedded_url() -> str:
    """Start (or attach to) the embedded PostgreSQL and return its URL."""
    from zeke.runtime_dir import ensure_runtime_dir

    ensure_runtime_dir(data_dir())  # before pgserver's import reads it
    import pgserver  # imported lazily: only needed on machines without a database

    with _lock:
        pgdata = data_dir() / "pgdata"
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        # cleanup_mode=None leaves the server running for the other processes of the app.
        server = pgserver.get_server(pgdata, cleanup_mode=None)
        return server.get_uri()


def is_embedded(url: str) -> bool:
    """Whether ``url`` is the embedded server's (its Unix socket lives in ``data_dir()/pgdata``),
    without starting it."""
    from urllib.parse import parse_qs, urlsplit

    hosts = parse_qs(urlsplit(url).query).get("host", [])
    socket_dir = data_dir() / "pgdata"
    return any(Path(h).expanduser().resolve() == socket_dir.resolve() for h in hosts if h.startswith("/"))


def broker_url(url: str | None = None) -> str:
    """The same database as a ``pgboss://`` Kombu URL."""
    url = url or database_url()
    return "pgboss://" + url.split("://", 1)[1]
