"""The Celery app: ``celery -A zeke worker`` and ``celery -A zeke beat`` run on pg-boss's tables.

Besides the app this module owns the process's :class:`JobManager` for it (:func:`get_manager`), used
by the schema tasks, the API and the CLI, and the hook through which the transport learns about the
schema tasks: ``broker_transport_options`` carries

* ``schema`` — the pg-boss schema (``ZEKE_PGBOSS_SCHEMA``, default ``pgboss``);
* ``concurrency_limits`` — ``{queue: N}``, passed by the transport to ``JobManager.fetch`` so at most
  N jobs of the queue are active across every worker;
* ``queue_options`` — ``{queue: create_queue kwargs}``, used when the transport declares a queue.

The two maps are the registry's own dicts (:mod:`zeke.registry`), so tasks imported after the app was
configured (``imports``, ``-A`` autodiscovery) are still seen.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from celery import Celery
from celery.app.amqp import Queues
from kombu.utils.objects import cached_property

import transport  # noqa: F401  (registers the pgboss:// transport alias)
from transport.batch_publish import AMQP as BatchingAMQP
from transport.hub import hub_from_options
from transport.manager import JobManager
from zeke.database import broker_url
from zeke.registry import registry, route
from zeke.settings import get_settings

#: zeke's Celery settings: the top-level ``celeryconfig.py`` beside the ``zeke`` package (the checkout's
#: root, or site-packages once installed), read from its file so that a ``celeryconfig`` module in the
#: working directory never stands in for it. ``CELERY_CONFIG_MODULE`` (``celery --config``) names another.
CONFIG_FILE = Path(__file__).resolve().parent.parent / "celeryconfig.py"


def load_config() -> ModuleType:
    name = os.environ.get("CELERY_CONFIG_MODULE", "").strip()
    if name:
        return importlib.import_module(name)
    spec = importlib.util.spec_from_file_location("celeryconfig", CONFIG_FILE)
    if spec is None or spec.loader is None or not CONFIG_FILE.is_file():
        raise ImportError(f"zeke's celeryconfig.py is missing beside the zeke package ({CONFIG_FILE})")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class ZekeAMQP(BatchingAMQP):
    """Celery's AMQP helper whose queue map knows every schema task's queue on first use.

    A schema task declares its pg-boss queue to Celery when its module is imported; a worker imports
    them first, but ``celery -A zeke purge`` (or ``inspect active_queues``, ``amqp``) never does and
    would see only ``celery``. Reading the map imports the configured task modules first.
    """

    _importing = False

    @cached_property
    def queues(self) -> Queues:
        if not self._importing:
            self._importing = True  # the imports read this map themselves (schema_task select_adds)
            self.app.loader.import_default_modules()
        cached = self.__dict__.get("queues")
        return cached if cached is not None else self.Queues(self.app.conf.task_queues)

    @queues.setter
    def queues(self, queues: Any) -> Queues:
        return self.Queues(queues)


def create_app(name: str = "zeke") -> Celery:
    """The app, configured without touching the database: the URL is only resolved when Celery first
    reads its configuration (a worker starting, a task sent), so importing zeke opens nothing."""
    settings = get_settings()
    config = load_config()
    app = Celery(name, amqp=ZekeAMQP)
    app.config_from_object(config)
    app.add_defaults(DatabaseDefaults())
    # Writes only: app.conf is read (and so loaded) later, on first use.
    options = dict(getattr(config, "broker_transport_options", None) or {})
    options.setdefault("schema", settings.pgboss_schema)
    options["concurrency_limits"] = registry.concurrency_limits
    options["queue_options"] = registry.queue_options
    app.conf.broker_transport_options = options
    # Schema tasks go to the pg-boss queue named like the task, even when sent by name (beat, send_task).
    app.conf.task_routes = (route, *(_as_tuple(getattr(config, "task_routes", None))))
    # The worker imports the task modules before it sets up its queues, so it consumes them all.
    imports = _as_tuple(getattr(config, "imports", None))
    app.conf.imports = tuple(dict.fromkeys((*imports, *settings.task_modules)))
    return app


class DatabaseDefaults(Mapping[str, str]):
    """``broker_url`` and ``result_backend`` on the zeke database, resolved each time they are read.

    Celery reads its configuration as soon as a task is declared, so a value computed then would
    resolve the database at import; a lookup in this mapping happens only when a connection or the
    result backend is wanted. Anything configured wins: ``CELERY_BROKER_URL`` /
    ``CELERY_RESULT_BACKEND``, the config module, ``app.conf`` (all looked up before these defaults).
    """

    KEYS = ("broker_url", "result_backend")

    def __getitem__(self, key: str) -> str:
        if key not in self.KEYS:
            raise KeyError(key)
        return broker_url()

    def __contains__(self, key: object) -> bool:
        return key in self.KEYS

    def __iter__(self) -> Iterator[str]:
        return iter(self.KEYS)

    def __len__(self) -> int:
        return len(self.KEYS)


def _as_tuple(value: Any) -> tuple[Any, ...]:
    if not value:
        return ()
    return tuple(value) if isinstance(value, list | tuple) else (value,)


app = create_app()

_managers: dict[tuple[str, str], JobManager] = {}
_ensured: set[tuple[str, str, str]] = set()
_lock = threading.Lock()


def pgboss_schema(celery_app: Celery | None = None) -> str:
    options = (celery_app or app).conf.broker_transport_options or {}
    return str(options.get("schema") or get_settings().pgboss_schema)


def get_manager(celery_app: Celery | None = None) -> JobManager:
    """The JobManager on the app's broker database and pg-boss schema, on the process's hub for that
    database (:mod:`transport.hub`: one pool for the broker, result backend, beat and this)."""
    celery_app = celery_app or app
    key = (str(celery_app.conf.broker_url), pgboss_schema(celery_app))
    with _lock:
        manager = _managers.get(key)
        if manager is None:
            options = celery_app.conf.broker_transport_options or {}
            manager = _managers[key] = hub_from_options(key[0], options).manager(key[1])
        return manager


def ensure_queue(task: Any, manager: JobManager | None = None, *, again: bool = False) -> None:
    """Create the task's pg-boss queue with its options, once per process (pg-boss ≥10 needs it first).

    ``manager`` defaults to the one on the task's Celery app (the client passes its own). ``again``
    creates it even if this process did before: it has been deleted since (QueueNotFound on a send).
    """
    manager = manager or get_manager(task.app)
    key = (manager.db.dsn, manager.schema, task.name)
    if key in _ensured and not again:
        return
    manager.create_queue(task.name, **task.queue_options)
    _ensured.add(key)
