"""The chaos tier: every test here is ``slow`` (``make chaos``, which CI runs after ``make test``), and
shares the acceptance broker environment with the runs table."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.acceptance.broker_workers import BrokerEnv
from tests.chaos.chaos import app_module, create_runs_table

HERE = Path(__file__).resolve().parent


@pytest.hookimpl(tryfirst=True)  # before -m deselects
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="module")
def chaos(broker_env: BrokerEnv):
    """``tests.chaos.chaos_tasks`` configured for this environment, its runs table created."""
    create_runs_table(broker_env)
    return app_module(broker_env)
