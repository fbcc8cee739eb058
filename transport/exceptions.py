"""Errors raised by the pg-boss core. Every message defaults to the class docstring."""

from __future__ import annotations


class PgBossError(Exception):
    """A pg-boss operation failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class UnsupportedSchemaVersion(PgBossError):
    """The pgboss schema in this database has a version zeke cannot serve."""


class InvalidQueueName(PgBossError, ValueError):
    """Queue names must match ^[\\w.\\-/]+$ and must not start with __pgboss__."""


class QueueNotFound(PgBossError, LookupError):
    """The queue does not exist; create it first."""

    def __init__(self, *args: object, queue: str | None = None) -> None:
        super().__init__(*args)
        #: The queue found missing, when the raiser says (a send's own queue, or its dead letter's).
        self.queue = queue


class InvalidJobId(PgBossError, ValueError):
    """A job id must be a UUID."""


class InvalidPayload(PgBossError, ValueError):
    """A job's data must be a JSON-serialisable object."""


class InvalidOption(PgBossError, ValueError):
    """A job or queue option is out of range."""


class MalformedJob(PgBossError, ValueError):
    """A job's data cannot become a message Celery can run."""

class UnsupportedBySchema(PgBossError):
    """The pg-boss schema in this database is too old for this operation."""

    def __init__(self, operation: str, minimum: str, version: int | None) -> None:
        super().__init__(
            f"{operation} needs {minimum} or newer; this database's pg-boss schema is version {version} "
            "(upgrade it with Node pg-boss, `npx pg-boss migrate`)"
        )
        self.operation, self.minimum, self.version = operation, minimum, version
