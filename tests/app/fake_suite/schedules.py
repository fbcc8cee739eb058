from __future__ import annotations

from typing import Any

from tests.app.fake_suite.db import _record


def register(manager: Any) -> list[str]:
    _record(hook="schedules", schema=manager.schema)
    return ["registered-by-hook"]
