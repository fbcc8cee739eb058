"""transport.envelope over generated messages: any Celery task message survives the trip through a
job's jsonb data and back unchanged, job ids are stable, times parse to aware UTC, and the expiry's
time limits always end an attempt before the job expires."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import pytest
from celery import Celery
from hypothesis import given, settings
from hypothesis import strategies as st

from transport import envelope

APP = Celery("envelope-properties", set_as_current=False)

JSON_SCALARS = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20)
JSON = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=12,
)
KWARG_NAMES = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=10).filter(
    lambda k: k != "__celery"
)


def _published(task_id: str, args: list[Any], kwargs: dict[str, Any], priority: int) -> dict[str, Any]:
    headers, properties, body, _ = APP.amqp.as_task_v2(task_id, "proj.task", args, kwargs)
    properties = {**properties, "priority": priority, "delivery_mode": 2}
    properties["delivery_info"] = {"exchange": "", "routing_key": "q"}
    return {
        "body": json.dumps(body),
        "content-type": "application/json",
        "content-encoding": "utf-8",
        "headers": headers,
        "properties": properties,
    }


@settings(max_examples=60, deadline=None)
@given(
    st.lists(JSON, max_size=4),
    st.dictionaries(KWARG_NAMES, JSON, max_size=4),
    st.integers(min_value=0, max_value=9),
    st.integers(min_value=0, max_value=5),
)
def test_any_task_message_round_trips_through_job_data(
    args: list[Any], kwargs: dict[str, Any], priority: int, attempt: int
) -> None:
    task_id = str(uuid.uuid4())
    message = _published(task_id, args, kwargs, priority)
    job = envelope.to_job(message)
    assert job.id == task_id and job.priority == priority
    stored = json.loads(json.dumps(job.data))  # what jsonb gives back
    out = envelope.to_message(
        task_id, "q", stored, priority=job.priority, attempt=attempt, delivery_tag="t", native_eta=False
    )
    assert json.loads(out["body"]) == json.loads(message["body"])
    assert out["headers"]["id"] == task_id and out["headers"]["retries"] == attempt
    assert out["properties"]["delivery_info"]["routing_key"] == "q"
    assert out["properties"]["delivery_info"].get("redelivered", False) == (attempt > 0)


@given(st.text(min_size=1, max_size=40))
def test_job_ids_of_task_ids_are_uuids_and_stable(task_id: str) -> None:
    job_id = envelope.job_id_for(task_id)
    assert job_id == envelope.job_id_for(task_id)
    assert str(uuid.UUID(job_id)) == job_id


@given(st.uuids())
def test_a_uuid_task_id_is_its_own_job_id(value: uuid.UUID) -> None:
    assert envelope.job_id_for(str(value)) == str(value)
    assert envelope.job_id_for(str(value).upper()) == str(value)


@pytest.mark.parametrize("empty", [None, ""])
def test_no_task_id_no_job_id(empty: str | None) -> None:
    assert envelope.job_id_for(empty) is None


@given(st.datetimes(min_value=dt.datetime(1971, 1, 1), max_value=dt.datetime(2200, 1, 1)))
def test_times_parse_to_aware_utc(naive: dt.datetime) -> None:
    aware = naive.replace(tzinfo=dt.UTC)
    assert envelope.parse_time(naive.isoformat()) == aware  # naive means UTC
    assert envelope.parse_time(aware.isoformat().replace("+00:00", "Z")) == aware
    assert envelope.parse_time(aware) == aware
    assert envelope.parse_time(aware.timestamp()) == aware


@pytest.mark.parametrize("junk", ["", None, "tomorrow", "2026-13-01T00:00:00"])
def test_unparseable_times_are_none(junk: Any) -> None:
    assert envelope.parse_time(junk) is None


@given(st.floats(min_value=0.01, max_value=10**7, allow_nan=False))
def test_expiry_limits_end_an_attempt_before_the_job_expires(expire: float) -> None:
    hard, soft = envelope.expiry_time_limits(expire)
    assert 0 < soft <= hard < expire
    assert expire - hard <= 1.0 + 1e-9  # at most a second of margin
    assert hard - soft <= 5.0 + 1e-9  # and at most five seconds to clean up


@given(st.dictionaries(KWARG_NAMES, JSON, max_size=4))
def test_a_node_job_is_foreign_and_a_celery_one_is_not(data: dict[str, Any]) -> None:
    assert envelope.is_foreign(data)
    assert not envelope.is_foreign({**data, "__celery": {"task": "t"}})
