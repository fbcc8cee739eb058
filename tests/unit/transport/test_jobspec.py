"""transport.jobspec: the group send option is checked once, by check_job_options, on every way a job
or an update comes in (send, a batch's rows, update/upsert); group_columns maps what it passed."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from transport.db import Database
from transport.exceptions import InvalidOption
from transport.jobspec import check_job_options, group_columns
from transport.manager import JobManager, _send_row

BAD_GROUPS = [
    ("a", "group must be"),
    ({"id": "a", "colour": "red"}, "group must be"),
    ({"tier": "x"}, "group id must be a non-empty string"),
    ({"id": ""}, "group id must be a non-empty string"),
    ({"id": 7}, "group id must be a non-empty string"),
    ({"id": "a", "tier": ""}, "group tier must be a non-empty string"),
    ({"id": "a", "tier": 3}, "group tier must be a non-empty string"),
]


@pytest.mark.parametrize(("group", "match"), BAD_GROUPS)
def test_a_bad_group_is_refused_by_the_option_check(group: Any, match: str) -> None:
    with pytest.raises(InvalidOption, match=match):
        check_job_options({"group": group})


@pytest.mark.parametrize(("group", "match"), BAD_GROUPS)
def test_a_bad_group_is_refused_in_a_send_row(group: Any, match: str) -> None:
    with pytest.raises(InvalidOption, match=match):
        _send_row({"data": {}, "group": group})


@pytest.mark.parametrize(("group", "match"), BAD_GROUPS)
def test_a_bad_group_is_refused_by_update_before_any_statement(group: Any, match: str) -> None:
    manager = JobManager(Database("postgresql://nobody@127.0.0.1:1/none"))  # never connects here
    with pytest.raises(InvalidOption, match=match):
        manager._update_payload("update", ..., str(uuid.uuid4()), None, None, {"group": group})


def test_a_checked_group_becomes_its_columns() -> None:
    assert group_columns({"id": "a"}) == {"group_id": "a"}
    assert group_columns({"id": "a", "tier": None}) == {"group_id": "a"}
    assert group_columns({"id": "a", "tier": "vip"}) == {"group_id": "a", "group_tier": "vip"}
    assert _send_row({"data": 1, "group": {"id": "a", "tier": "vip"}}) == {
        "data": 1,
        "group_id": "a",
        "group_tier": "vip",
    }
