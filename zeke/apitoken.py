"""The bearer token `zeke run` gives its API when ``ZEKE_API_KEYS`` is not set.

It is generated once and kept in the data directory (:func:`zeke.embedded.data_dir`), readable by its
owner only, so it stays the same across runs (a browser's dashboard session, a script's header)
until ``zeke token rotate`` replaces it. ``ZEKE_API_KEYS``, when set, wins over it.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

FILENAME = "api-token"


def path() -> Path:
    from zeke.embedded import data_dir

    return data_dir() / FILENAME


def read() -> str | None:
    """The stored token, None when there is none yet."""
    try:
        token = path().read_text().strip()
    except FileNotFoundError:
        return None
    return token or None


def get() -> str:
    """The stored token, generated and stored first if there is none."""
    return read() or rotate()


def rotate() -> str:
    """Store a new token (mode 0600, replacing the old one atomically) and return it."""
    token = secrets.token_urlsafe(24)
    target = path()
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{FILENAME}.{os.getpid()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    os.replace(temporary, target)
    return token
