from __future__ import annotations

import json
import os


def _record(**entry: object) -> None:
    with open(os.environ["ZEKE_FAKE_SUITE_LOG"], "a") as log:
        log.write(json.dumps(entry) + "\n")


def upgrade(url: str) -> None:
    _record(hook="upgrade", url=url)


def current(url: str) -> str:
    return "0001"
