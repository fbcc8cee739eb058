"""One connection hub per process and database: the pool, the LISTEN connection and what the parts
of the process share about that database.

The broker (Kombu transport), the result backend, beat, the API's SSE streams and the client all get
their :class:`~transport.manager.JobManager` from :func:`hub_for`, so a process holds one pool and one
LISTEN connection per database however many of them it runs: an idle worker holds its LISTEN
connection and a pooled connection or two in the main process, and one connection in each pool
child that has run a task.

A hub is keyed by the database it reaches and the session options its connections carry
(``statement_timeout``, ``connect_timeout``, from the transport options): parts configured alike
share it. The first part to reach a database names the hub's connections (``application_name``).

Fork-safe: a forked child (Celery's prefork pool) never uses its parent's sockets. At fork every hub
forgets the parent's connections, LISTEN thread, subscribers and heartbeats without touching their
sessions, and the child opens its own on first use, named ``<application_name>-child``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import psycopg2.extensions

from transport.db import dsn_from_url
from transport.listener import Listener
from transport.manager import JobManager
from transport.prepared import PreparedDatabase

if TYPE_CHECKING:
    from transport.heartbeat import Heartbeat

#: Defaults of the hub's connections (seconds): a statement never stalls a worker's loop forever,
#: a connection attempt never hangs.
STATEMENT_TIMEOUT = 30.0
CONNECT_TIMEOUT = 10.0
#: Most connections a hub's pool opens at once.
MAX_CONNECTIONS = 8
#: Appended to the ``application_name`` of a forked child's connections (a prefork pool child's).
CHILD_SUFFIX = "-child"
#: TCP keepalives of every connection: a LISTEN socket on a dead network is noticed within a minute.
KEEPALIVES = {
    "keepalives": "1",
    "keepalives_idle": "30",
    "keepalives_interval": "10",
    "keepalives_count": "3",
}


def apply_defaults(
    params: dict[str, str],
    *,
    statement_timeout: float | None = STATEMENT_TIMEOUT,
    connect_timeout: float = CONNECT_TIMEOUT,
) -> dict[str, str]:
    """libpq parameters with the hub's defaults filled in (what the URL sets wins)."""
    params.setdefault("connect_timeout", str(max(1, int(connect_timeout))))
    for name, value in KEEPALIVES.items():
        params.setdefault(name, value)
    if "options" not in params:
        # Options in the DSN replace libpq's PGOPTIONS: carry those over.
        options = os.environ.get("PGOPTIONS", "").strip()
        if statement_timeout and "statement_timeout" not in options:
            options = f"{options} -c statement_timeout={int(statement_timeout * 1000)}".strip()
        if options:
            params["options"] = options
    return params


class Hub:
    """The pool, the LISTEN connection and the shared per-schema state of one database."""

    def __init__(self, dsn: str, *, application_name: str, max_connections: int) -> None:
        self.db = PreparedDatabase(dsn, max_connections=max_connections, application_name=application_name)
        self.listener = Listener(self.db)
        self._reset()

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._managers: dict[str, JobManager] = {}
        #: Schemas installed (and their statements registered) by this process.
        self._installed: set[str] = set()
        #: Durable queues this process declared, by schema.
        self._declared: dict[str, set[str]] = {}
        #: Heartbeats of the transports of this process: the jobs it holds.
        self._heartbeats: set[Heartbeat] = set()
        #: Transports and result backends using the hub: when the last one closes, so do the
        #: pool's idle connections.
        self._users = 0

    def after_fork(self) -> None:
        """In a forked child: forget the parent's connections, thread, subscribers and heartbeats.
        The child's connections are named apart (``<name>-child``) in ``pg_stat_activity``."""
        self.db.after_fork()
        if not self.db.application_name.endswith(CHILD_SUFFIX):
            self.db.application_name += CHILD_SUFFIX
        self.listener.after_fork()
        managers = self._managers
        self._reset()
        self._managers = managers  # resolved statements stay valid; the schema stays installed

    # -- managers and users ---------------------------------------------------------------------

    def manager(self, schema: str = "pgboss") -> JobManager:
        """The JobManager of ``schema`` on this hub's pool (one per schema)."""
        with self._lock:
            manager = self._managers.get(schema)
            if manager is None:
                manager = self._managers[schema] = JobManager(self.db, schema)
            return manager

    def acquire(self) -> None:
        with self._lock:
            self._users += 1

    def release(self) -> None:
        """One user is done; the last one closes the pool's idle connections (they reopen on use)."""
        with self._lock:
            self._users = max(0, self._users - 1)
            last = self._users == 0
        if last:
            self.db.close()

    def ensure_installed(self, manager: JobManager, statements: tuple[str, ...] = ()) -> None:
        """Install the transport's tables (and the pg-boss schema if absent) once per process, and
        prepare ``statements`` from then on."""
        from transport.bindings import install

        if manager.schema in self._installed:
            return
        install(manager)  # idempotent: two threads racing here both find it done
        manager.sql.prepare(statements)
        with self._lock:
            self._installed.add(manager.schema)

    def declared(self, schema: str) -> set[str]:
        """The durable queues this process declared in ``schema`` (created once, then trusted)."""
        with self._lock:
            return self._declared.setdefault(schema, set())

    # -- the jobs this process holds --------------------------------------------------------------

    def add_heartbeat(self, heartbeat: Heartbeat) -> None:
        with self._lock:
            self._heartbeats.add(heartbeat)

    def remove_heartbeat(self, heartbeat: Heartbeat) -> None:
        with self._lock:
            self._heartbeats.discard(heartbeat)

    def _holder(self, job_id: str) -> Heartbeat | None:
        with self._lock:
            heartbeats = list(self._heartbeats)
        return next((hb for hb in heartbeats if hb.holds(job_id)), None)

    def holds(self, job_id: str) -> bool:
        """Whether a transport of this process heartbeats the job (the worker's main process)."""
        return self._holder(job_id) is not None

    def release_job(self, job_id: str) -> bool:
        """Stop heartbeating a job, so pg-boss retries it once its heartbeat runs out. For a job whose
        end could not be recorded: left heartbeated it would stay active until its expiry."""
        held = False
        while (heartbeat := self._holder(job_id)) is not None:
            heartbeat.discard(job_id)
            held = True
        return held

    def hand_back(self, job_id: str, queue: str, attempt: int | None) -> bool:
        """Put a job this process holds back in its queue untouched (``restore``: no attempt used) and
        stop heartbeating it. False when no transport here holds it or it was no longer active."""
        heartbeat = self._holder(job_id)
        if heartbeat is None:
            return False
        handed = heartbeat.manager.restore(queue, [job_id], retry_count=attempt)
        heartbeat.discard(job_id)
        return bool(handed)


_lock = threading.Lock()
_hubs: dict[tuple[tuple[str, str], ...], Hub] = {}


def hub_for(
    url: str,
    *,
    statement_timeout: float | None = STATEMENT_TIMEOUT,
    connect_timeout: float = CONNECT_TIMEOUT,
    application_name: str = "zeke",
    max_connections: int = MAX_CONNECTIONS,
) -> Hub:
    """The process's hub for the database at ``url`` (``pgboss://``, ``postgresql://`` or a libpq DSN)."""
    params = apply_defaults(
        psycopg2.extensions.parse_dsn(dsn_from_url(url)),
        statement_timeout=statement_timeout,
        connect_timeout=connect_timeout,
    )
    application_name = params.pop("application_name", application_name)
    key = tuple(sorted(params.items()))
    with _lock:
        hub = _hubs.get(key)
        if hub is None:
            dsn = psycopg2.extensions.make_dsn(**params)
            hub = _hubs[key] = Hub(dsn, application_name=application_name, max_connections=max_connections)
        elif max_connections > hub.db.max_connections:
            hub.db.ensure_capacity(max_connections)
        return hub


def hub_from_options(url: str, options: Mapping[str, Any], *, application_name: str = "zeke") -> Hub:
    """The hub for ``url`` with connection settings from Celery transport options."""
    timeout = options.get("statement_timeout", STATEMENT_TIMEOUT)
    return hub_for(
        url,
        statement_timeout=None if timeout is None else float(timeout),
        connect_timeout=float(options.get("connect_timeout", CONNECT_TIMEOUT)),
        application_name=str(options.get("application_name") or application_name),
        max_connections=int(options.get("max_connections", MAX_CONNECTIONS)),
    )


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()  # another thread of the parent may have held it at fork
    for hub in _hubs.values():
        hub.after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
