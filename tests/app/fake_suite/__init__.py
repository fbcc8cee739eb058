"""A task package with what `zeke init` installs besides queues: the app's ``pgboss_schedules`` (set
on import, as a task suite would), ``db.upgrade(url)`` and ``schedules.register(manager)``. The hooks
record their calls in the file named by ZEKE_FAKE_SUITE_LOG."""

from __future__ import annotations

from zeke.app import app

app.conf.pgboss_schedules = [
    {"name": "t-echo", "cron": "*/5 * * * *", "data": {"message": "tick"}, "tz": "UTC"},
    {"name": "t-item", "key": "nightly", "cron": "0 3 * * *", "data": {"itemId": "n"}, "tz": "Europe/Paris"},
]
