"""The chaos modules' shared fixture: the acceptance broker environment with the runs table."""

from __future__ import annotations

import pytest

from tests.acceptance.broker_workers import BrokerEnv
from tests.chaos.chaos import app_module, create_runs_table


@pytest.fixture(scope="module")
def chaos(broker_env: BrokerEnv):
    """``tests.chaos.chaos_tasks`` configured for this environment, its runs table created."""
    create_runs_table(broker_env)
    return app_module(broker_env)
