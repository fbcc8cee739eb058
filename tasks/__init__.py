"""The Zeke task suite: news ingestion, full text, AI analysis, briefs, highlights and stories.

Importing the package declares its 13 Celery tasks (:mod:`tasks.celery_tasks`), so the default
``ZEKE_TASK_MODULES=tasks`` gives the worker, beat, the API and the CLI the whole suite; ``zeke init``
also finds the app-database migrations in :mod:`tasks.db` and ``zeke run`` the demo in :mod:`tasks.demo`.
"""

from tasks import celery_tasks  # noqa: F401  (declares the tasks)
