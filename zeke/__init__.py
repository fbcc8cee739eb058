"""zeke: Celery on pg-boss, and the Zeke news-ingestion and AI task suite."""

from __future__ import annotations

from zeke.app import app

__all__ = ["app"]
