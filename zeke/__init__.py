"""zeke: Celery on pg-boss, and the Zeke news-ingestion and AI task suite.

``from zeke import schema_task, tasks, logger`` mirrors the original ``@zeke/jobs/schema-task`` exports.
"""

from __future__ import annotations

from zeke.app import app
from zeke.schema_task import PayloadInvalid, TaskContext, logger, schema_task, tasks

__all__ = ["PayloadInvalid", "TaskContext", "app", "logger", "schema_task", "tasks"]
