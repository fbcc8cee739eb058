"""Plain Celery tasks the result-backend acceptance tests run in real ``celery -A zeke worker`` processes.

Workers import this module through ``ZEKE_TASK_MODULES``; the tests send by name, so the two sides
share nothing but the task names. (No tests here: pytest collects the module and finds none.)
"""

from __future__ import annotations

import time
from typing import Any

from celery import shared_task
from celery.exceptions import Ignore


@shared_task(name="zt.add")
def add(x: int, y: int) -> int:
    return x + y


@shared_task(name="zt.boom")
def boom(message: str) -> None:
    raise ValueError(message)


@shared_task(name="zt.tsum")
def tsum(values: list[int]) -> int:
    return sum(values)


@shared_task(name="zt.echo", ignore_result=True)
def echo_ignored(value: Any) -> Any:
    return value


@shared_task(name="zt.flaky", bind=True, max_retries=5)
def flaky(self: Any, fail_times: int, pause: float = 1.0) -> int:
    """Celery-level retries: fails ``fail_times`` times (Task.retry, same id), then returns its retries."""
    if self.request.retries < fail_times:
        raise self.retry(countdown=pause)
    return self.request.retries


@shared_task(name="zt.sleep")
def sleep(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@shared_task(name="zt.progress", bind=True)
def progress(self: Any, seconds: float) -> str:
    self.update_state(state="PROGRESS", meta={"done": 1, "total": 2})
    time.sleep(seconds)
    return "finished"


@shared_task(name="zt.replaced", bind=True)
def replaced(self: Any, x: int, y: int, queue: str) -> None:
    """Replaces itself with zt.add on ``queue`` (Celery's Task.replace: the new task inherits this id)."""
    raise self.replace(add.s(x, y).set(queue=queue))


@shared_task(name="zt.ignored")
def ignored() -> None:
    raise Ignore("nothing to record")
