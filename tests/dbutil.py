"""Small helpers for test databases."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from transport.db import dsn_from_url


def with_database(url: str, dbname: str) -> str:
    """The same server URL pointing at another database."""
    parts = urlsplit(dsn_from_url(url))
    return urlunsplit(parts._replace(path="/" + dbname))
