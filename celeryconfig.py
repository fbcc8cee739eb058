"""Celery settings for ``celery -A zeke``. The broker, result backend and beat scheduler are pg-boss.

:mod:`zeke.app` reads this file from beside the ``zeke`` package (installed with it), whatever the
working directory; ``celery --config MODULE`` (``CELERY_CONFIG_MODULE``) uses another module instead.
URLs are filled in by :mod:`zeke.app` from ``DATABASE_PRIMARY_URL`` (or, in development, the embedded
database) when first needed; anything set here or in the environment (``CELERY_BROKER_URL``...) wins.
"""

# pg-boss holds the truth about every job, so Celery's own bookkeeping stays JSON and small.
task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
result_accept_content = ["json"]
timezone = "UTC"
enable_utc = True

# The job row is settled when the task finishes (by the result backend); the message is acked
# late so a worker that dies mid-task leaves its job active for pg-boss's expiry/heartbeat to retry.
task_acks_late = True
task_acks_on_failure = True
task_acks_on_timeout = True
task_reject_on_worker_lost = False
worker_prefetch_multiplier = 4
task_track_started = False
result_extended = True
broker_connection_retry_on_startup = True

beat_scheduler = "transport.beat:PgBossScheduler"
