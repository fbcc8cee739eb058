"""What :class:`~transport.manager.JobManager`'s verb mixins (:mod:`transport.verbs`,
:mod:`transport.flows`, :mod:`transport.deadletters`) use of the manager they are mixed into, as a
Protocol: the mixins type ``self`` with it, so they need not import the manager (which imports them)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from transport.executor import Executor
from transport.schema import SchemaInfo


class ManagerSelf(Protocol):
    schema: str
    #: pg-boss's insert channel of the schema.
    channel: str
    sql: Executor
    #: queue name -> (policy, monotonic time read).
    _policies: dict[str, tuple[str | None, float]]

    @property
    def info(self) -> SchemaInfo: ...

    def _params(self, params: Mapping[str, Any]) -> dict[str, Any]: ...

    def _run(self, name: str, params: Mapping[str, Any], *, conn: Any = None) -> list[dict[str, Any]]: ...

    def concurrency_locks(self, queue_names: Sequence[str]) -> dict[str, Any]: ...

    def now(self) -> dt.datetime: ...

    def get_queue(self, name: str) -> dict[str, Any] | None: ...

    def send(self, name: str, data: Any = None, *, conn: Any = None, **options: Any) -> str | None: ...

    def send_many(self, name: str, jobs: Sequence[Mapping[str, Any]], *, conn: Any = None) -> list[str]: ...

    # Shared by the mixins themselves (transport.verbs).
    def _require(self, operation: str, feature: str, minimum: str) -> None: ...

    def _existing_queue(self, method: str, name: str) -> dict[str, Any]: ...
