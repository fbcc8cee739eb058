"""``schema_task``: the Trigger.dev-style task wrapper of Zeke's jobs package, as real Celery tasks.

::

    class Payload(BaseModel):
        item_id: UUID = Field(alias="itemId")

    @schema_task(id="my-task", schema=Payload, queue={"concurrency_limit": 5}, retry={"retry_limit": 3})
    def my_task(payload: Payload, ctx: TaskContext) -> dict:
        ctx.logger.info("Processing", item_id=str(payload.item_id))
        ctx.trigger("another-task", {"data": "value"})
        return {"success": True}

    my_task.trigger({"itemId": "…"})      # -> job id; my_task.delay(itemId="…") works too

What differs from the original Zeke jobs package:

* The task is a Celery task named ``id`` routed to the pg-boss queue ``id``; job data is the validated
  payload (the task's kwargs) in its JSON form, aliases included, so a Node handler reads the same.
* The payload is validated when sent (``trigger``, ``delay``, ``apply_async``, ``tasks.trigger``, the
  HTTP API) *and* when run: a Node/SQL job with bad data ends ``failed`` with the validation errors as
  its output and is not retried, since a retry would fail the same way.
* ``concurrency_limit`` is a global cap on active jobs of the queue across every worker, enforced by
  the database when jobs are fetched (not a batch size); the queue's retry/expiry options are created
  with the queue instead of being ignored constructor options.
* The return value becomes the job's ``output``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from celery import Celery, Task
from celery.exceptions import Ignore, Retry
from pydantic import BaseModel, ValidationError
from pydantic_core import to_jsonable_python

from transport import outputs
from transport.envelope import request_attempt
from transport.exceptions import InvalidPayload
from transport.manager import QUEUE_OPTION_KEYS
from transport.names import validate_queue_name
from zeke.app import app as zeke_app
from zeke.app import ensure_queue, get_manager
from zeke.registry import UnknownTask, origin_of, registry

__all__ = [
    "PayloadInvalid",
    "RunInfo",
    "SchemaTask",
    "TaskContext",
    "TaskLogger",
    "UnknownTask",
    "logger",
    "schema_task",
    "tasks",
]

#: Node (camelCase) spelling -> manager keyword, for options copied from the TypeScript tasks.
_NODE_TO_PY = {node: py for py, node in QUEUE_OPTION_KEYS.items()} | {"concurrencyLimit": "concurrency_limit"}
RETRY_OPTIONS = frozenset({"retry_limit", "retry_delay", "retry_backoff", "retry_delay_max"})
QUEUE_OPTIONS = frozenset(QUEUE_OPTION_KEYS) | {"concurrency_limit"}

_log = logging.getLogger("zeke.tasks")
#: pydantic's own message for a number that must be finite.
NOT_FINITE = "Input should be a finite number"


class PayloadInvalid(ValueError):
    """A payload does not match its task's schema. ``errors`` is pydantic's list, JSON-safe."""

    def __init__(self, task_id: str, errors: list[dict[str, Any]]) -> None:
        fields = ", ".join(".".join(str(p) for p in e.get("loc", ())) or "payload" for e in errors)
        super().__init__(f"invalid payload for task {task_id!r}: {fields}")
        self.task_id = task_id
        self.errors = errors

    @classmethod
    def from_validation_error(cls, task_id: str, exc: ValidationError) -> PayloadInvalid:
        # exc.json() rather than exc.errors(): the latter may hold exception objects in "ctx". It
        # writes an input of NaN or Infinity as that bare word, which is no JSON: keep it as a string.
        try:
            return cls(task_id, json.loads(exc.json(include_url=False), parse_constant=str))
        except ValueError:
            # Something pydantic cannot write as JSON (an unpaired surrogate the client sent): the
            # errors without the offending inputs and contexts.
            errors = [
                {k: v for k, v in err.items() if k not in ("input", "ctx")}
                for err in exc.errors(include_url=False)
            ]
            return cls(task_id, errors)


# -- logging -------------------------------------------------------------------------------------


class TaskLogger:
    """One JSON line per call, carrying the task id and job id (the original's ``createLogger``).

    ``logger.info("Processing", {"itemId": 1})`` and ``logger.info("Processing", item_id=1)`` both work.
    The record also carries the fields as ``record.zeke`` for structured log handlers.
    """

    def __init__(self, task_id: str | None = None, job_id: str | None = None, **bound: Any) -> None:
        self.task_id = task_id
        self.job_id = job_id
        self.bound = bound
        self._logger = logging.getLogger(f"zeke.tasks.{task_id}" if task_id else "zeke.tasks")

    def bind(self, **fields: Any) -> TaskLogger:
        return TaskLogger(self.task_id, self.job_id, **{**self.bound, **fields})

    def log(self, level: int, message: str, data: Mapping[str, Any] | None = None, **fields: Any) -> None:
        if not self._logger.isEnabledFor(level):
            return
        record: dict[str, Any] = {
            "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
            "level": logging.getLevelName(level).lower(),
            "message": message,
        }
        if self.task_id:
            record["taskId"] = self.task_id
        if self.job_id:
            record["jobId"] = self.job_id
        record.update(self.bound)
        record.update(data or {})
        record.update(fields)
        self._logger.log(level, json.dumps(record, default=str), extra={"zeke": record})

    def debug(self, message: str, data: Mapping[str, Any] | None = None, **fields: Any) -> None:
        self.log(logging.DEBUG, message, data, **fields)

    def info(self, message: str, data: Mapping[str, Any] | None = None, **fields: Any) -> None:
        self.log(logging.INFO, message, data, **fields)

    def warning(self, message: str, data: Mapping[str, Any] | None = None, **fields: Any) -> None:
        self.log(logging.WARNING, message, data, **fields)

    warn = warning

    def error(self, message: str, data: Mapping[str, Any] | None = None, **fields: Any) -> None:
        self.log(logging.ERROR, message, data, **fields)


#: A logger without task or job, for code outside a run.
logger = TaskLogger()


# -- run context ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunInfo:
    #: The pg-boss job id (== Celery task id).
    id: str
    #: pg-boss ``retry_count`` of this attempt, when the transport told us.
    attempt: int | None = None


@dataclass(frozen=True, slots=True)
class TaskContext:
    task_id: str
    logger: TaskLogger
    run: RunInfo
    #: The Celery task, for ``ctx.task.retry(...)`` and ``ctx.task.request``.
    task: SchemaTask = field(repr=False)

    @property
    def job_id(self) -> str:
        return self.run.id

    def trigger(self, task_id: str, payload: Any = None, **options: Any) -> str:
        """Send another task (validated); Celery records this run as its parent."""
        return tasks.trigger(task_id, payload, **options)


# -- the task class ------------------------------------------------------------------------------


class SchemaTask(Task):
    """Base of every task made by :func:`schema_task`; the class attributes are set per task."""

    #: pydantic model of the payload.
    schema: type[BaseModel]
    #: ``run(payload, ctx)``, as declared.
    fn: Callable[[Any, TaskContext], Any]
    #: ``JobManager.create_queue`` keywords for this task's queue (retry, expiry, policy...).
    queue_options: dict[str, Any] = {}
    #: Global cap on active jobs of this queue, or None.
    concurrency_limit: int | None = None
    #: We check payloads ourselves; Celery's signature check would reject a positional payload.
    typing = False

    # -- sending ---------------------------------------------------------------------------------

    def validate(self, payload: Any) -> BaseModel:
        """The payload as the model, or :class:`PayloadInvalid`."""
        if isinstance(payload, self.schema):
            return payload
        if isinstance(payload, BaseModel):
            payload = payload.model_dump(mode="json", by_alias=True)
        try:
            return self.schema.model_validate(payload if payload is not None else {})
        except ValidationError as exc:
            raise PayloadInvalid.from_validation_error(self.name, exc) from None

    def dump(self, payload: Any) -> dict[str, Any]:
        """Validate; return the JSON job data (defaults applied, field aliases as the Node side sees them).

        NaN and ±Infinity are refused (:class:`PayloadInvalid`, type ``finite_number``) wherever the
        schema let them through: JSON cannot hold them, and pydantic would write a free-form field's
        as null, storing something else than was sent.
        Data pydantic cannot write as JSON (nested deeper than its serializer goes) is the
        transport's :class:`~transport.exceptions.InvalidPayload`, as for data the database cannot store.
        """
        model = self.validate(payload)
        errors = [
            {"type": "finite_number", "loc": loc, "msg": NOT_FINITE, "input": str(value)}
            for loc, value in _non_finite(model.model_dump(mode="python", by_alias=True))
        ]
        if errors:
            raise PayloadInvalid(self.name, errors)
        try:
            return model.model_dump(mode="json", by_alias=True)
        except ValueError as exc:  # valid, and still no JSON pydantic writes: nested past 254 levels
            raise InvalidPayload(f"job data must be JSON: nested too deeply ({exc})") from None

    def apply_async(self, args: Any = None, kwargs: Any = None, **options: Any) -> Any:
        data = self.dump(_payload_of(self.name, args, kwargs))
        if not self.app.conf.task_always_eager:
            ensure_queue(self)
        # Also done by zeke.registry.route for sends by name; here so any app routes it the same way.
        options.setdefault("queue", self.name)
        return super().apply_async((), data, **options)

    def trigger(self, payload: Any = None, **options: Any) -> str:
        """Validate, send, and return the job id (the original's ``task.trigger``)."""
        return str(self.apply_async((payload if payload is not None else {},), **options).id)

    # -- running ---------------------------------------------------------------------------------

    def execute(self, data: Any) -> Any:
        job_id = str(self.request.id)
        log = TaskLogger(self.name, job_id)
        try:
            payload = self.validate(data)
        except PayloadInvalid as exc:
            log.error("job_invalid_payload", errors=exc.errors)
            self.fail_for_good(job_id, exc)
            raise
        log.info("job_started", payload=data)
        run = RunInfo(job_id, request_attempt(self.request))
        ctx = TaskContext(task_id=self.name, logger=log, run=run, task=self)
        try:
            result = self.fn(payload, ctx)
        except (Retry, Ignore):
            raise
        except Exception as exc:
            log.error("job_failed", error=str(exc), error_type=type(exc).__name__)
            raise
        log.info("job_completed", result="has_result" if result is not None else "no_result")
        return to_jsonable_python(result, by_alias=True)

    def fail_for_good(self, job_id: str, exc: BaseException) -> None:
        """End this job ``failed`` now, retries or not: the same data would fail every attempt.

        The result backend's own FAILURE write that follows is then a no-op, because it only moves
        jobs that are still unfinished (and fences on the attempt).
        """
        if self.request.is_eager:
            return
        queue = (self.request.delivery_info or {}).get("routing_key") or self.name
        attempt = request_attempt(self.request)
        get_manager(self.app).fail(
            queue,
            [job_id],
            outputs.error_output(exc),
            attempts={job_id: attempt} if attempt is not None else None,
            retry=False,
        )


def _non_finite(value: Any) -> Iterator[tuple[list[str | int], float]]:
    """``(loc, value)`` of every NaN or ±Infinity in a model's python dump. Iterative, since payloads
    may nest deeper than Python's recursion limit; a path is a linked ``(parent, key)`` pair, spelled
    out only for a hit."""
    stack: list[tuple[Any, Any]] = [(None, value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, float):
            if not math.isfinite(item):
                loc: list[str | int] = []
                while path is not None:
                    path, key = path
                    loc.append(key if isinstance(key, str | int) else str(key))
                yield loc[::-1], item
        elif isinstance(item, dict):
            stack.extend(((path, k), v) for k, v in reversed(item.items()))
        elif isinstance(item, list | tuple | set | frozenset):
            stack.extend(((path, i), v) for i, v in reversed(list(enumerate(item))))


def _payload_of(task_id: str, args: Any, kwargs: Any) -> Any:
    """``delay(payload)``, ``delay(**payload)`` and ``apply_async(kwargs=payload)`` all mean one payload."""
    args = tuple(args or ())
    if args and kwargs:
        raise TypeError(f"task {task_id!r} takes one payload: pass it positionally or as keywords, not both")
    if len(args) > 1:
        raise TypeError(f"task {task_id!r} takes one payload, got {len(args)} positional arguments")
    return args[0] if args else dict(kwargs or {})


# -- declaring -----------------------------------------------------------------------------------


def _options(kind: str, given: Mapping[str, Any] | None, allowed: frozenset[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in (given or {}).items():
        name = _NODE_TO_PY.get(key, key)
        if name not in allowed:
            raise TypeError(f"unknown {kind} option {key!r}; expected one of {', '.join(sorted(allowed))}")
        out[name] = value
    return out


def schema_task(
    *,
    id: str,
    schema: type[BaseModel],
    queue: Mapping[str, Any] | None = None,
    retry: Mapping[str, Any] | None = None,
    app: Celery | None = None,
    **celery_options: Any,
) -> Callable[[Callable[[Any, TaskContext], Any]], SchemaTask]:
    """Declare ``run(payload, ctx)`` as the task ``id`` on the pg-boss queue ``id``.

    ``queue``: ``concurrency_limit`` (global) and any pg-boss queue option (``expire_in_seconds``,
    ``policy``, ``dead_letter``...; Node's camelCase names are accepted). ``retry``: ``retry_limit``,
    ``retry_delay``, ``retry_backoff``, ``retry_delay_max``. Options not given keep the seed's queue
    defaults (``transport.manager.SEED_QUEUE_DEFAULTS``). Other keywords go to Celery's task decorator.
    """
    validate_queue_name(id)
    if not (isinstance(schema, type) and issubclass(schema, BaseModel)):
        raise TypeError("schema must be a pydantic BaseModel subclass")
    queue_options = _options("queue", queue, QUEUE_OPTIONS)
    queue_options.update(_options("retry", retry, RETRY_OPTIONS))
    limit = queue_options.pop("concurrency_limit", None)
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise TypeError(f"concurrency_limit must be a whole number >= 1, not {limit!r}")

    def decorate(fn: Callable[[Any, TaskContext], Any]) -> SchemaTask:
        target = app if app is not None else zeke_app
        def run(self: SchemaTask, *args: Any, **data: Any) -> Any:
            # A Node/SQL job whose data is not an object arrives as one positional argument; it then
            # fails validation for good like any other payload that does not fit.
            return self.execute(_payload_of(self.name, args, data) if args else data)

        registry.check_free(id, origin_of(fn))
        run.__name__, run.__qualname__ = fn.__name__, fn.__qualname__
        run.__module__, run.__doc__ = fn.__module__, fn.__doc__
        task = target.task(
            name=id,
            base=SchemaTask,
            bind=True,
            lazy=False,
            schema=schema,
            fn=staticmethod(fn),
            queue_options=queue_options,
            concurrency_limit=limit,
            **celery_options,
        )(run)
        registry.add(task)
        # Consumed by a plain `celery -A zeke worker` (no -Q): every task's queue, not just "celery".
        # Celery 5.7 consumes a snapshot of the queues known when they were first read, so the queue
        # must be select_add()ed, not merely created (which Queues.__missing__ does, as routing would).
        queues = target.amqp.queues
        queues.select_add(queues[id])
        return task

    return decorate


# -- tasks.trigger ---------------------------------------------------------------------------------


class Tasks:
    """``tasks.trigger(task_id, payload)``: send any registered task by id, validated."""

    def trigger(self, task_id: str, payload: Any = None, **options: Any) -> str:
        return registry.get(task_id).trigger(payload, **options)

    def get(self, task_id: str) -> SchemaTask:
        return registry.get(task_id)

    def __contains__(self, task_id: object) -> bool:
        return task_id in registry

    def __iter__(self) -> Iterator[SchemaTask]:
        return iter(registry)


tasks = Tasks()
