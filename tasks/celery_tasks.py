"""The task suite as Celery tasks: one :func:`~zeke.schema_task.schema_task` per task id of
:mod:`tasks.registry_data`, on the pg-boss queue of the same name, with the seed's global concurrency
limit, plus the seed's two cron schedules.

Each wrapper is thin: it builds the :class:`~tasks.lib.context.TaskEnv` from the run's context and
calls the task module's ``run(payload, env)``. What ``run`` raises decides what happens to the job:

* :class:`~tasks.lib.errors.RetryLater` — ``Task.retry(countdown=seconds)``: the same job row goes
  back to ``retry`` with ``start_after`` = now + seconds (a server's Retry-After is honoured), up to
  :data:`RETRY_LATER_LIMIT` times; after that the error counts as a failure (below).
* :class:`~tasks.lib.errors.PermanentError` — the job ends ``failed`` at once, retries left or not.
* anything else — a failure: the queue's pg-boss retry policy (limit, delay, backoff) applies.

Importing :mod:`tasks` imports this module, which is how ``ZEKE_TASK_MODULES=tasks`` (the default)
fills the registry for the worker, beat, the API and the CLI.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from tasks import db
from tasks.lib.context import TaskEnv
from tasks.lib.errors import PermanentError, RetryLater
from tasks.registry_data import BY_ID, SCHEDULES, TASKS
from tasks.settings import TaskSettings
from zeke.app import app
from zeke.database import database_url
from zeke.schema_task import SchemaTask, TaskContext, schema_task

#: ``Task.retry`` calls a job gets for :class:`RetryLater` before the error goes to pg-boss's policy.
RETRY_LATER_LIMIT = 10
#: Time zone of the seed's cron schedules (the original scheduler's ``JOBS_CRON_TZ``).
CRON_TZ_VARIABLE = "JOBS_CRON_TZ"


@cache
def task_settings() -> TaskSettings:
    """The suite's settings, read from the environment once per process."""
    return TaskSettings.from_env()


def app_sessions() -> sessionmaker[Session]:
    """Sessions on the app database (the one zeke runs on); engines are per process and fork-safe."""
    return db.session_factory(database_url())


def task_env(ctx: TaskContext) -> TaskEnv:
    return TaskEnv(
        logger=ctx.logger,
        trigger=ctx.trigger,
        session_factory=app_sessions(),
        settings=task_settings(),
    )


def declare(task_id: str) -> SchemaTask:
    """The schema task running ``task_id``'s module (``PAYLOAD``, ``run``) with its seed limit."""
    spec = BY_ID[task_id]
    module = spec.load()

    def run(payload: Any, ctx: TaskContext) -> Any:
        try:
            return module.run(payload, task_env(ctx))
        except RetryLater as exc:
            ctx.logger.warning("job_retry_later", seconds=exc.seconds, error=str(exc))
            raise ctx.task.retry(countdown=exc.seconds, exc=exc, max_retries=RETRY_LATER_LIMIT) from None
        except PermanentError as exc:
            ctx.task.fail_for_good(ctx.job_id, exc)
            raise

    # One origin per task id for the registry's duplicate check, and readable tracebacks.
    run.__name__ = run.__qualname__ = task_id.replace("-", "_")
    run.__doc__ = module.__doc__
    return schema_task(id=task_id, schema=module.PAYLOAD, queue={"concurrency_limit": spec.concurrency})(run)


ingest_pull = declare("ingest-pull")
ingest_pull_youtube = declare("ingest-pull-youtube")
ingest_oneoff = declare("ingest-oneoff")
ingest_source = declare("ingest-source")
ingest_from_upload = declare("ingest-from-upload")
fetch_content = declare("fetch-content")
analyze_story = declare("analyze-story")
generate_brief = declare("generate-brief")
extract_highlights = declare("extract-highlights")
score_relevance = declare("score-relevance")
dedupe_insights = declare("dedupe-insights")
story_summarize = declare("story-summarize")
stories_update_status = declare("stories-update-status")

#: Every task of the suite by id.
CELERY_TASKS: dict[str, SchemaTask] = {
    task.name: task
    for task in (
        ingest_pull, ingest_pull_youtube, ingest_oneoff, ingest_source, ingest_from_upload, fetch_content,
        analyze_story, generate_brief, extract_highlights, score_relevance, dedupe_insights,
        story_summarize, stories_update_status,
    )
}  # fmt: skip
if set(CELERY_TASKS) != {spec.id for spec in TASKS}:
    raise ImportError(f"tasks without a Celery task: {sorted({s.id for s in TASKS} - set(CELERY_TASKS))}")


def schedules(tz: str | None = None) -> list[dict[str, Any]]:
    """The seed's cron schedules as ``pgboss_schedules`` entries (payload ``{}``: defaults apply)."""
    tz = tz or os.environ.get(CRON_TZ_VARIABLE, "").strip() or "UTC"
    return [{"name": task_id, "cron": cron, "tz": tz, "data": {}} for task_id, cron in SCHEDULES.items()]


def install_schedules(celery_app: Any = app) -> None:
    """Add the seed's schedules to ``app.conf.pgboss_schedules`` (beat and ``zeke init`` install them);
    an entry the app already has for the same queue and key wins."""
    from transport.beat import schedule_list

    entries = schedule_list(celery_app.conf.get("pgboss_schedules"))
    taken = {(e["name"], e.get("key") or "") for e in entries}
    entries += [e for e in schedules() if (e["name"], "") not in taken]
    celery_app.conf.pgboss_schedules = entries


install_schedules()
