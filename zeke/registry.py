"""Every schema task this process knows, by id (= Celery task name = pg-boss queue name).

Declaring a task with :func:`zeke.schema_task.schema_task` adds it here. The worker, the API and the
CLI call :func:`load` to import the configured task modules (``ZEKE_TASK_MODULES``, default ``tasks``)
so they all see the same set.

The registry also owns the two maps the pg-boss transport reads from the Celery app's
``broker_transport_options`` (see :func:`zeke.app.create_app`), kept as the same dict objects so a
task declared after the connection was opened is still seen:

* ``concurrency_limits`` — ``{queue: N}``: at most N active jobs of that queue across all workers;
* ``queue_options`` — ``{queue: {create_queue kwargs}}``: retry/expiry settings used when the queue
  is declared.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol

from pydantic import BaseModel


class SchemaTask(Protocol):
    """What the registry and its readers use of a task: :class:`zeke.schema_task.SchemaTask` is one.
    Described here rather than imported, so the registry sits below the tasks (and the app) it serves."""

    name: str
    fn: Callable[..., Any]
    schema: type[BaseModel]
    queue_options: dict[str, Any]
    concurrency_limit: int | None

    def validate(self, payload: Any) -> BaseModel: ...

    def dump(self, payload: Any) -> dict[str, Any]: ...

    def trigger(self, payload: Any = None, **options: Any) -> str: ...


class UnknownTask(LookupError):
    """No schema task has that id."""

    def __init__(self, task_id: str) -> None:
        super().__init__(f"unknown task {task_id!r}")
        self.task_id = task_id


class TaskRegistry:
    def __init__(self) -> None:
        self._tasks: dict[str, SchemaTask] = {}
        self._lock = threading.Lock()
        self.concurrency_limits: dict[str, int] = {}
        self.queue_options: dict[str, dict[str, Any]] = {}

    def check_free(self, task_id: str, origin: str) -> None:
        """Refuse a second declaration of ``task_id`` by another function."""
        existing = self._tasks.get(task_id)
        # Re-importing the same module (reloads, `python -m` plus import) re-declares the same task.
        if existing is not None and _origin(existing) != origin:
            raise ValueError(f"task id {task_id!r} is declared twice ({_origin(existing)}, {origin})")

    def add(self, task: SchemaTask) -> None:
        with self._lock:
            self.check_free(task.name, _origin(task))
            self._tasks[task.name] = task
            self.queue_options[task.name] = dict(task.queue_options)
            if task.concurrency_limit is not None:
                self.concurrency_limits[task.name] = task.concurrency_limit
            else:
                self.concurrency_limits.pop(task.name, None)

    def get(self, task_id: str) -> SchemaTask:
        try:
            return self._tasks[task_id]
        except KeyError:
            raise UnknownTask(task_id) from None

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._tasks

    def __iter__(self) -> Iterator[SchemaTask]:
        return iter(sorted(self._tasks.values(), key=lambda t: t.name))

    def __len__(self) -> int:
        return len(self._tasks)

    def ids(self) -> list[str]:
        return sorted(self._tasks)


def origin_of(fn: Any) -> str:
    return f"{fn.__module__}.{fn.__qualname__}"


def _origin(task: SchemaTask) -> str:
    return origin_of(task.fn)


#: The process-wide registry.
registry = TaskRegistry()

_loaded: set[str] = set()


def load(modules: Sequence[str] | None = None) -> TaskRegistry:
    """Import the task modules (default: settings' ``ZEKE_TASK_MODULES``) and return the registry."""
    if modules is None:
        from zeke.settings import get_settings

        modules = get_settings().task_modules
    for name in modules:
        if name not in _loaded:
            importlib.import_module(name)
            _loaded.add(name)
    return registry


def get(task_id: str) -> SchemaTask:
    return registry.get(task_id)


def all_tasks() -> list[SchemaTask]:
    return list(registry)


def ids(tasks: Iterable[SchemaTask] | None = None) -> list[str]:
    return [t.name for t in tasks] if tasks is not None else registry.ids()


def route(name: str, args: Any, kwargs: Any, options: Any, **_: Any) -> dict[str, str] | None:
    """Celery router: a schema task goes to the pg-boss queue named like it, also when sent by name."""
    return {"queue": name} if name in registry else None
