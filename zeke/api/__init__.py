"""zeke's HTTP API: trigger jobs, read and change their status, follow them over SSE."""

from __future__ import annotations

from zeke.api.app import create_api

__all__ = ["create_api"]
