"""Which Celery task runs a job that Node (or SQL) put on a pg-boss queue.

Such a job has no ``"__celery"`` envelope, only a payload. In order, the task is:

1. the transport option ``task_for_queue``: a mapping ``{queue: task name}`` or a callable
   ``queue -> task name | None``;
2. the registered task whose name equals the queue name (zeke's schema tasks: task id = queue);
3. the one registered task routed to that queue: its ``queue`` option, or ``task_routes``.

The registry is that of the Celery app current in the process (the worker's app in a worker).
Answers are cached; a miss rebuilds the map once the app has registered more tasks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

logger = logging.getLogger(__name__)

TaskForQueue = Mapping[str, str] | Callable[[str], str | None]


class QueueTasks:
    def __init__(self, task_for_queue: TaskForQueue | None = None, app: Any = None) -> None:
        self.explicit = task_for_queue or {}
        self._app = app
        self._routed: dict[str, str] = {}
        self._seen = -1

    @property
    def app(self) -> Any:
        if self._app is not None:
            return self._app
        from celery import current_app

        return current_app._get_current_object()

    def task_for(self, queue: str) -> str | None:
        if callable(self.explicit):
            name = self.explicit(queue)
            if name:
                return name
        elif queue in self.explicit:
            return self.explicit[queue]
        tasks = self.app.tasks
        if queue in tasks:
            return queue
        if queue not in self._routed and len(tasks) != self._seen:
            self._rebuild(tasks)
        return self._routed.get(queue)

    def _rebuild(self, tasks: Mapping[str, Any]) -> None:
        routed: dict[str, list[str]] = {}
        router = self.app.amqp.router
        for name, task in sorted(tasks.items()):
            if name.startswith("celery."):
                continue
            queue = getattr(task, "queue", None)
            if not queue:
                try:  # explicit routes only: the default queue is no evidence
                    route = router.lookup_route(name, (), {}, {}, task)
                except Exception:  # a broken custom router must not stop deliveries
                    route = None
                if isinstance(route, str):
                    queue = route
                elif isinstance(route, Mapping):
                    queue = route.get("queue")
            queue_name = getattr(queue, "name", queue)
            if queue_name:
                routed.setdefault(str(queue_name), []).append(name)
        for queue_name, names in routed.items():
            if len(names) > 1:
                logger.warning(
                    "pg-boss queue %r is routed to several tasks %s; Node jobs on it run as %r "
                    "(set the transport option task_for_queue to choose)",
                    queue_name,
                    names,
                    names[0],
                )
        self._routed = {q: names[0] for q, names in routed.items()}
        self._seen = len(tasks)
