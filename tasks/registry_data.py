"""The task suite as data: every task id, the module holding its ``PAYLOAD`` and ``run``, its seed
concurrency limit (the global cap on active jobs of its queue) and its schedule, if any.

The queue wrapper turns each entry into a schema task::

    for spec in TASKS:
        module = spec.load()
        schema_task(id=spec.id, schema=module.PAYLOAD, queue={"concurrency_limit": spec.concurrency})(...)
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType

#: Seed concurrency limits (issue 6).
CONCURRENCY: dict[str, int] = {
    "ingest-pull": 1,
    "ingest-pull-youtube": 1,
    "ingest-oneoff": 2,
    "ingest-source": 5,
    "ingest-from-upload": 2,
    "fetch-content": 3,
    "analyze-story": 5,
    "generate-brief": 10,
    "extract-highlights": 1,
    "score-relevance": 20,
    "dedupe-insights": 1,
    "story-summarize": 4,
    "stories-update-status": 1,
}

#: Cron schedules (UTC unless the scheduler says otherwise); the payload is ``{}`` (defaults apply).
SCHEDULES: dict[str, str] = {
    "ingest-pull": "*/5 * * * *",
    "ingest-pull-youtube": "0 */6 * * *",
}

_MODULES: dict[str, str] = {
    "ingest-pull": "tasks.ingestion.ingest_pull",
    "ingest-pull-youtube": "tasks.ingestion.ingest_pull_youtube",
    "ingest-oneoff": "tasks.ingestion.ingest_oneoff",
    "ingest-source": "tasks.ingestion.ingest_source",
    "ingest-from-upload": "tasks.ingestion.ingest_from_upload",
    "fetch-content": "tasks.ingestion.fetch_content",
    "analyze-story": "tasks.ai.analyze_story",
    "generate-brief": "tasks.ai.generate_brief",
    "extract-highlights": "tasks.ai.extract_highlights",
    "score-relevance": "tasks.ai.score_relevance",
    "dedupe-insights": "tasks.ai.dedupe_insights",
    "story-summarize": "tasks.stories.story_summarize",
    "stories-update-status": "tasks.stories.stories_update_status",
}


@dataclass(frozen=True)
class TaskSpec:
    id: str
    #: ingestion | ai | stories
    category: str
    module: str
    concurrency: int
    schedule: str | None = None

    def load(self) -> ModuleType:
        """The task module: ``TASK_ID``, ``PAYLOAD`` (pydantic model) and ``run(payload, ctx) -> dict``."""
        return importlib.import_module(self.module)


TASKS: tuple[TaskSpec, ...] = tuple(
    TaskSpec(task_id, module.split(".")[1], module, CONCURRENCY[task_id], SCHEDULES.get(task_id))
    for task_id, module in _MODULES.items()
)
BY_ID: dict[str, TaskSpec] = {spec.id: spec for spec in TASKS}
