"""Tasks of the canvas acceptance tests (``tests/acceptance/transport/test_canvas.py``), run by real workers.

Side effects (errbacks called, chord bodies run, attempts made) are rows in the PostgreSQL table
``"<ZEKE_CANVAS_SCHEMA>_effects".effect``, whichever broker and backend run the tasks, so a test
can count them the same way on both. (No tests here.)
"""

from __future__ import annotations

import os
import time
from typing import Any

import psycopg2
from celery import chain, chord, group, shared_task, signature

from transport.db import dsn_from_url


class ExpectedError(Exception):
    """What the failing tasks raise."""


def record(key: str, value: Any = None) -> None:
    schema = os.environ["ZEKE_CANVAS_SCHEMA"]
    conn = psycopg2.connect(dsn_from_url(os.environ["ZEKE_CANVAS_PG_URL"]))
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                f'INSERT INTO "{schema}_effects".effect (key, value) VALUES (%s, %s)',
                (key, None if value is None else str(value)),
            )
    finally:
        conn.close()


def flatten(value: Any) -> list[Any]:
    if isinstance(value, list | tuple):
        return [item for inner in value for item in flatten(inner)]
    return [value]


def _total(x: Any) -> int:
    return sum(flatten(x))


@shared_task(name="canvas.add")
def add(x: Any, y: int) -> int:
    return _total(x) + y


@shared_task(name="canvas.add_kw")
def add_kw(x: int = 0, y: int = 0, z: int = 0) -> int:
    return x + y + z


@shared_task(name="canvas.xsum")
def xsum(values: Any, *more: Any) -> int:
    """Sum of everything it is given, nested lists flattened (a chord body)."""
    return _total([values, *more])


@shared_task(name="canvas.collect")
def collect(values: list[Any], key: str | None = None) -> list[Any]:
    """Returns the header results as they arrive (order matters); records its run under ``key``."""
    if key:
        record(key, values)
    return values


@shared_task(name="canvas.identity")
def identity(x: Any) -> Any:
    return x


@shared_task(name="canvas.sleep_identity")
def sleep_identity(x: Any, seconds: float) -> Any:
    time.sleep(seconds)
    return x


@shared_task(name="canvas.fail")
def fail(*args: Any, message: str = "expected failure") -> None:
    raise ExpectedError(message)


@shared_task(name="canvas.errback_new")
def errback_new(task_id: str, key: str) -> None:
    """A new-style errback: called with the failed task's id."""
    record(key, task_id)


@shared_task(name="canvas.errback_old")
def errback_old(request: Any, exc: BaseException, traceback: str, key: str) -> None:
    """An old-style errback: called with the failed request, its exception and traceback."""
    record(key, f"{request.id} {type(exc).__name__}: {exc}")


@shared_task(name="canvas.retry_once", bind=True, max_retries=3)
def retry_once(self: Any, value: Any, key: str) -> Any:
    """Task.retry() once (same id), then returns ``value``; records every attempt under ``key``."""
    record(key, self.request.retries)
    if self.request.retries < 1:
        raise self.retry(countdown=0.5)
    return value


@shared_task(name="canvas.retry_then_fail", bind=True, max_retries=1)
def retry_then_fail(self: Any, key: str) -> None:
    """Retries once, then fails for good (the errback must run once, after the last attempt)."""
    record(key, self.request.retries)
    if self.request.retries < 1:
        raise self.retry(countdown=0.5)
    raise ExpectedError("retries exhausted")


@shared_task(name="canvas.replace_with_task", bind=True)
def replace_with_task(self: Any, x: Any) -> None:
    """Replaced by add(x, 1)."""
    raise self.replace(add.si(_total(x), 1))


@shared_task(name="canvas.replace_with_chain", bind=True)
def replace_with_chain(self: Any, x: Any) -> None:
    """Replaced by add(x, 1) | add(1): ends with x + 2."""
    raise self.replace(chain(add.si(_total(x), 1), add.s(1)))


@shared_task(name="canvas.replace_with_group", bind=True)
def replace_with_group(self: Any, x: Any) -> None:
    """Replaced by group(add(x, 1), add(x, 2)): ends with [x + 1, x + 2]."""
    x = _total(x)
    raise self.replace(group(add.si(x, 1), add.si(x, 2)))


@shared_task(name="canvas.replace_with_chord", bind=True)
def replace_with_chord(self: Any, x: Any) -> None:
    """Replaced by chord(add(x, 1), add(x, 2)) -> xsum: ends with 2x + 3."""
    x = _total(x)
    raise self.replace(chord([add.si(x, 1), add.si(x, 2)], xsum.s()))


@shared_task(name="canvas.replace_with_fail", bind=True)
def replace_with_fail(self: Any, x: Any) -> None:
    """Replaced by a task that fails."""
    raise self.replace(fail.si(message=f"replacement of {x} failed"))


@shared_task(name="canvas.replace_with_signature", bind=True)
def replace_with_signature(self: Any, sig: dict[str, Any]) -> None:
    raise self.replace(signature(sig))


@shared_task(name="canvas.replace_with_chain_to_group", bind=True)
def replace_with_chain_to_group(self: Any, x: Any) -> None:
    """Replaced by add(x, 1) | group(add(1), add(2)): ends with [x + 2, x + 3]."""
    raise self.replace(chain(add.si(_total(x), 1), group(add.s(1), add.s(2))))


@shared_task(name="canvas.replace_twice", bind=True)
def replace_twice(self: Any, x: Any) -> None:
    """Replaced by a task that replaces itself in turn (by a chain): ends with x + 2."""
    raise self.replace(replace_with_chain.si(_total(x)))


@shared_task(name="canvas.fail_first_run")
def fail_first_run(value: Any, key: str) -> Any:
    """Fails on its first run, whoever runs it again (pg-boss's own retry): runs are rows under ``key``."""
    record(key)
    schema = os.environ["ZEKE_CANVAS_SCHEMA"]
    conn = psycopg2.connect(dsn_from_url(os.environ["ZEKE_CANVAS_PG_URL"]))
    try:
        with conn, conn.cursor() as cur:
            cur.execute(f'SELECT count(*) FROM "{schema}_effects".effect WHERE key = %s', (key,))
            runs = cur.fetchone()[0]
    finally:
        conn.close()
    if runs < 2:
        raise ExpectedError("first run")
    return value
