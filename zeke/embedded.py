"""The embedded development database: a PostgreSQL server from the ``pgserver`` wheel.

Its data lives in :func:`data_dir` (``ZEKE_DATA_DIR``, else the user's data directory:
``$XDG_DATA_HOME/zeke`` or ``~/.local/share/zeke`` on Linux, ``~/Library/Application Support/zeke``
on macOS). It listens on a Unix socket only, so every process of the user attaches to the same
server. A server is stopped by whoever started it: ``zeke db stop`` after ``zeke db start``,
``zeke run`` when it exits, or (:func:`attach`) the development process that had to start it.

Nothing here runs at import; ``pgserver`` itself is imported only when a server is used.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _pgserver() -> Any:
    # pgserver picks its lock directory at import and warns when XDG_RUNTIME_DIR is unset (it uses /tmp).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver
        import pgserver.utils
    return pgserver


def data_dir() -> Path:
    configured = os.environ.get("ZEKE_DATA_DIR", "").strip()
    if configured:
        return Path(configured).expanduser().resolve()
    import platformdirs

    return platformdirs.user_data_path("zeke", appauthor=False)


def pgdata() -> Path:
    return data_dir() / "pgdata"


def _postmaster(path: Path) -> Any:
    """pgserver's reading of ``postmaster.pid`` when a server is running there and ready, else None."""
    if not (path / "postmaster.pid").exists():
        return None
    try:
        info = _pgserver().utils.PostmasterInfo.read_from_pgdata(path)
    except (AssertionError, ValueError, OSError):  # a file half-written by a starting server
        return None
    return info if info is not None and info.is_running() and info.status == "ready" else None


def running_url() -> str | None:
    """The URL of the running embedded server, None when it is not running."""
    info = _postmaster(pgdata())
    return None if info is None else str(info.get_uri())


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """One process at a time decides whether to start or stop the server."""
    data_dir().mkdir(parents=True, exist_ok=True)
    with open(data_dir() / ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def start() -> tuple[str, bool]:
    """Start the server unless it runs; its URL and whether this call started it."""
    with _locked():
        url = running_url()
        if url is not None:
            return url, False
        pgserver = _pgserver()
        # cleanup_mode=None: pgserver never stops it on its own; its starter does (stop()).
        server = pgserver.get_server(pgdata(), cleanup_mode=None)
        return str(server.get_uri()), True


def stop() -> bool:
    """Stop the server; False when it was not running."""
    with _locked():
        if _postmaster(pgdata()) is None:
            return False
        pgserver = _pgserver()
        user = "pgserver" if os.geteuid() == 0 else None  # pgserver runs postgres as this user under root
        pgserver.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata(), user=user, timeout=60)
        return True


def attach() -> str:
    """The running server's URL, starting it if needed; a server started here stops when this
    process exits (not its forked children: they exit without atexit)."""
    url, started = start()
    if started:
        owner = os.getpid()
        atexit.register(lambda: os.getpid() == owner and stop())
    return url
