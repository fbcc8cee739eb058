"""Where the database is: ``DATABASE_PRIMARY_URL``, or in development the embedded PostgreSQL.

Every component (worker, beat, API, CLI, client) asks :func:`database_url` when it needs the
database, never at import:

* ``DATABASE_PRIMARY_URL`` when it is set;
* else, with ``ZEKE_ENV=development``, the embedded server of :mod:`zeke.embedded` (started if it is
  not running, and then stopped when the process that started it exits);
* else :class:`DatabaseNotConfigured`: a production process without a URL refuses to run instead of
  quietly using an empty local database.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from urllib.parse import quote

import click

from transport.redact import split_password
from zeke.settings import get_settings

_lock = threading.Lock()
_embedded: str | None = None


class DatabaseNotConfigured(click.ClickException, RuntimeError):
    """No ``DATABASE_PRIMARY_URL`` outside development. A click error, so that any click command line
    (``zeke``, ``celery -A zeke worker|beat|inspect``) prints it as one line and exits with status 3."""

    exit_code = 3


NOT_CONFIGURED = (
    "DATABASE_PRIMARY_URL is not set; set it to your PostgreSQL URL "
    "(for development: ZEKE_ENV=development uses the embedded database, see `zeke db --help`)"
)


def configured_url() -> str | None:
    return os.environ.get("DATABASE_PRIMARY_URL", "").strip() or None


def database_url() -> str:
    """The PostgreSQL URL every part of zeke connects to."""
    global _embedded
    url = configured_url()
    if url:
        return url
    if not get_settings().development:
        raise DatabaseNotConfigured(NOT_CONFIGURED)
    with _lock:
        if _embedded is None:
            from zeke import embedded

            _embedded = embedded.attach()
        return _embedded


def is_embedded(url: str) -> bool:
    """Whether ``url`` is the embedded server's (its Unix socket lives in ``data_dir()/pgdata``),
    without starting it."""
    from urllib.parse import parse_qs, urlsplit

    from zeke import embedded

    hosts = parse_qs(urlsplit(url).query).get("host", [])
    socket_dir = embedded.pgdata()
    return any(Path(h).expanduser().resolve() == socket_dir.resolve() for h in hosts if h.startswith("/"))


def broker_url(url: str | None = None) -> str:
    """The same database as a ``pgboss://`` Kombu URL. A ``?password=`` moves into the user info,
    where Celery's own displays of its settings (``inspect conf``, ``celery report``) mask it."""
    url = url or database_url()
    bare, password = split_password(url)
    rest = bare.split("://", 1)[1]
    if password is not None:
        netloc, slash, path = rest.partition("/")
        user, at, host = netloc.rpartition("@")
        rest = f"{user}:{quote(password, safe='')}@{host}{slash}{path}"
    return "pgboss://" + rest
