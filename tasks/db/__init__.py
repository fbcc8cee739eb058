"""The app database: models (:mod:`tasks.db.models`), migrations (:func:`upgrade`) and sessions.

``session_factory(url)`` returns a cached ``sessionmaker`` per URL; engines are disposed in forked
children (Celery's prefork pool) so a child never reuses its parent's sockets.
"""

from __future__ import annotations

import os
import threading

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker

from tasks.db.migrations import current, head, sqlalchemy_url, upgrade

__all__ = ["current", "engine", "head", "session_factory", "upgrade"]

_lock = threading.Lock()
_engines: dict[str, Engine] = {}
_factories: dict[str, sessionmaker[Session]] = {}


def engine(url: str) -> Engine:
    """One pooled engine per database URL, per process."""
    key = sqlalchemy_url(url)
    with _lock:
        found = _engines.get(key)
        if found is None:
            found = _engines[key] = create_engine(
                key,
                pool_pre_ping=True,
                pool_size=5,
                max_overflow=5,
                connect_args={"application_name": "zeke-tasks"},
            )
        return found


def session_factory(url: str) -> sessionmaker[Session]:
    """``sessionmaker`` for the app database at ``url``; ``with factory.begin() as session: ...``."""
    key = sqlalchemy_url(url)
    with _lock:
        found = _factories.get(key)
    if found is None:
        made = sessionmaker(engine(url), expire_on_commit=False)
        with _lock:
            found = _factories.setdefault(key, made)
    return found


def dispose_all() -> None:
    with _lock:
        for eng in _engines.values():
            eng.dispose()
        _engines.clear()
        _factories.clear()


def _after_fork() -> None:
    # The parent's pooled connections belong to the parent: forget them without closing them.
    for eng in list(_engines.values()):
        eng.dispose(close=False)


os.register_at_fork(after_in_child=_after_fork)
