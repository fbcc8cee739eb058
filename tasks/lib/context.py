"""What a task's ``run(payload, ctx)`` gets, and the payload base class.

The queue wrapper builds a :class:`TaskEnv` per run (or anything with the same attributes)::

    env = TaskEnv(
        logger=ctx.logger,                      # zeke.schema_task.TaskLogger
        trigger=ctx.trigger,                    # (task_id, payload, **options) -> job id
        session_factory=tasks.db.session_factory(database_url()),
        settings=TaskSettings.from_env(),
    )
    return module.run(module.Payload.model_validate(data), env)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel
from sqlalchemy.orm import Session, sessionmaker

from tasks.settings import TaskSettings

T = TypeVar("T")


class Logger(Protocol):
    """Structured logger: a message plus keyword fields (``zeke.schema_task.TaskLogger`` fits)."""

    def debug(self, message: str, **fields: Any) -> None: ...
    def info(self, message: str, **fields: Any) -> None: ...
    def warning(self, message: str, **fields: Any) -> None: ...
    def error(self, message: str, **fields: Any) -> None: ...


class Context(Protocol):
    logger: Logger
    settings: TaskSettings
    #: The app database; tasks use ``with ctx.session_factory.begin() as session``.
    session_factory: sessionmaker[Session]

    def trigger(self, task_id: str, payload: dict[str, Any], **options: Any) -> Any: ...


class TaskEnv:
    """The concrete :class:`Context`."""

    __slots__ = ("logger", "trigger_fn", "session_factory", "settings")

    def __init__(
        self,
        *,
        logger: Logger,
        trigger: Callable[..., Any],
        session_factory: sessionmaker[Session],
        settings: TaskSettings,
    ) -> None:
        self.logger = logger
        self.trigger_fn = trigger
        self.session_factory = session_factory
        self.settings = settings

    def trigger(self, task_id: str, payload: dict[str, Any], **options: Any) -> Any:
        return self.trigger_fn(task_id, payload, **options)


class Payload(BaseModel):
    """Base of every task payload: snake_case in Python, camelCase on the wire (as the Node jobs send).

    Unknown keys are ignored so a producer one version ahead does not break a consumer.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        extra="ignore",
    )

    #: The task (= queue) this payload belongs to.
    task_id: ClassVar[str]

    def dump(self) -> dict[str, Any]:
        """JSON-safe job data, camelCase keys."""
        return self.model_dump(mode="json", by_alias=True)


def send(ctx: Context, payload: Payload, **options: Any) -> Any:
    """Enqueue ``payload``'s task through ``ctx.trigger`` (validated, because it is already a model).

    ``options`` go to the trigger (e.g. ``countdown=seconds`` to delay the job).
    """
    return ctx.trigger(type(payload).task_id, payload.dump(), **options)


def chunked(items: Sequence[T], size: int) -> Iterator[list[T]]:
    """``items`` in lists of at most ``size``."""
    for start in range(0, len(items), size):
        yield list(items[start : start + size])
