"""The Celery app: ``celery -A zeke worker`` and ``celery -A zeke beat`` run on pg-boss's tables."""

from __future__ import annotations

import os

from celery import Celery

import transport  # noqa: F401  (registers the pgboss:// transport alias)
from zeke.database import broker_url


def create_app(name: str = "zeke") -> Celery:
    app = Celery(name)
    app.config_from_object("celeryconfig")
    url = broker_url()
    app.conf.broker_url = os.environ.get("CELERY_BROKER_URL") or url
    app.conf.result_backend = os.environ.get("CELERY_RESULT_BACKEND") or url
    return app


app = create_app()
