from __future__ import annotations

import pytest
from sqlalchemy.orm import Session, sessionmaker

from tasks.registry_data import BY_ID
from tasks.settings import TaskSettings


def test_task_env_with_the_schema_task_logger(
    sessions: sessionmaker[Session], caplog: pytest.LogCaptureFixture
) -> None:
    """What the queue wrapper will pass: zeke's TaskLogger, a trigger callable, the session factory."""
    import logging

    from tasks.lib.context import TaskEnv
    from zeke.schema_task import TaskLogger

    sent: list[tuple[str, dict, dict]] = []
    env = TaskEnv(
        logger=TaskLogger("ingest-pull", "job-1"),
        trigger=lambda task_id, payload, **options: sent.append((task_id, payload, options)) or "id",
        session_factory=sessions,
        settings=TaskSettings(),
    )
    module = BY_ID["ingest-pull"].load()
    with caplog.at_level(logging.INFO, logger="zeke.tasks"):
        assert module.run(module.PAYLOAD.model_validate({}), env) == {"due": 0, "enqueued": []}
    assert any('"ingest_pull_no_sources"' in r.getMessage() for r in caplog.records)
