"""transport.envelope: Kombu messages ⇄ pg-boss job data, both ways, without a database."""

from __future__ import annotations

import base64
import datetime as dt
import json
import pickle
import uuid
from typing import Any

import pytest
from celery import Celery

from transport import envelope
from transport.exceptions import InvalidOption, InvalidPayload


@pytest.fixture(scope="module")
def app() -> Celery:
    return Celery("envelope-tests", set_as_current=False)


def published(app: Celery, name: str, args=(), kwargs=None, **options) -> dict:
    """The message Celery's producer would hand to the channel's ``_put``."""
    task_id = options.pop("task_id", str(uuid.uuid4()))
    headers, properties, body, _ = app.amqp.as_task_v2(task_id, name, args, kwargs or {}, **options)
    properties = {**properties, "priority": options.get("priority") or 0, "delivery_mode": 2}
    properties["delivery_info"] = {"exchange": "", "routing_key": "q"}
    return {
        "body": json.dumps(body),
        "content-type": "application/json",
        "content-encoding": "utf-8",
        "headers": headers,
        "properties": properties,
    }


def deliver(job: envelope.Job, **kwargs) -> dict:
    return envelope.to_message(
        job.id or str(uuid.uuid4()),
        "q",
        json.loads(json.dumps(job.data)),  # as stored in jsonb
        priority=job.priority,
        attempt=kwargs.pop("attempt", 0),
        delivery_tag="tag",
        **kwargs,
    )


def test_celery_task_message_round_trips(app: Celery) -> None:
    eta = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    message = published(
        app, "proj.add", (2, 3), {"story_id": "s1"}, eta=eta, expires=eta + dt.timedelta(hours=1),
        callbacks=[{"task": "proj.next", "args": [], "kwargs": {}, "options": {}, "subtask_type": None,
                    "immutable": False}],
        priority=7, parent_id="p", root_id="r",
    )  # fmt: skip
    job = envelope.to_job(message)
    task_id = message["headers"]["id"]
    assert job.id == task_id and job.priority == 7
    assert job.start_after == eta and job.keep_until == eta + dt.timedelta(hours=1)
    # What a Node handler reads: the kwargs, plus the reserved envelope.
    assert job.data["story_id"] == "s1"
    assert job.data["__celery"]["task"] == "proj.add" and job.data["__celery"]["args"] == [2, 3]

    out = deliver(job, attempt=2, native_eta=False)
    assert json.loads(out["body"]) == json.loads(message["body"])
    # request.retries is the job's retry_count: one retry budget for Celery and pg-boss.
    expected = {**message["headers"], "pgboss_attempt": 2, "retries": 2}
    assert out["headers"] == expected
    assert out["properties"]["correlation_id"] == task_id
    assert out["properties"]["priority"] == 7
    assert out["properties"]["delivery_info"] == {
        "exchange": "",
        "routing_key": "q",
        "pgboss_attempt": 2,
        "redelivered": True,
    }


def test_native_eta_delivers_the_eta_but_never_a_future_one(app: Celery) -> None:
    message = published(app, "proj.add", (1,), countdown=30)
    sent_eta = envelope.parse_time(message["headers"]["eta"])
    before = dt.datetime.now(dt.UTC)
    out = deliver(envelope.to_job(message))
    # request.eta is set, but no later than now: the job is runnable (start_after), so run at once.
    delivered = envelope.parse_time(out["headers"]["eta"])
    assert delivered is not None and before <= delivered < sent_eta
    assert "redelivered" not in out["properties"]["delivery_info"]
    past = published(app, "proj.add", (1,), eta=dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
    out = deliver(envelope.to_job(past))
    assert envelope.parse_time(out["headers"]["eta"]) == dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    assert deliver(envelope.to_job(published(app, "proj.add", (1,))))["headers"]["eta"] is None


def test_delivered_retries_are_the_attempt(app: Celery) -> None:
    job = envelope.to_job(published(app, "proj.retry", retries=5))
    assert deliver(job, attempt=1)["headers"]["retries"] == 1
    node_job = deliver(envelope.Job({"x": 1}, None, 0, None, None, 0), attempt=3, task_name="proj.add")
    assert node_job["headers"]["retries"] == 3


def test_pgboss_options_leave_the_message_for_the_job(app: Celery) -> None:
    message = published(app, "proj.add", (1,))
    message["headers"]["pgboss"] = {"singleton_key": "k", "retry_limit": 5}
    message["properties"]["pgboss"] = {"singleton_key": "from-property", "priority": 3}
    job = envelope.to_job(message)
    assert job.options == {"singleton_key": "k", "retry_limit": 5, "priority": 3}
    stored = job.data["__celery"]
    assert "pgboss" not in stored.get("headers", {}) and "pgboss" not in stored.get("properties", {})


@pytest.mark.parametrize(
    "options", [["not", "a", "dict"], {"id": "x"}, {"data": {}}, {"__invalid__": "bad option"}]
)
def test_pgboss_options_that_cannot_be_sent_are_refused(app: Celery, options: Any) -> None:
    message = published(app, "proj.add", (1,))
    message["headers"]["pgboss"] = options
    with pytest.raises(InvalidOption):
        envelope.to_job(message)


def test_defaults_are_not_stored(app: Celery) -> None:
    job = envelope.to_job(published(app, "proj.noop"))
    stored = job.data["__celery"]
    assert set(stored) <= {"v", "task", "headers", "properties"}
    assert set(stored["headers"]) <= {"argsrepr", "kwargsrepr", "origin"}
    assert job.data == {"__celery": stored}


def test_a_republished_attempt_header_is_not_stored_but_fences_the_retry(app: Celery) -> None:
    message = published(app, "proj.retry", retries=1)
    message["headers"]["pgboss_attempt"] = 3
    job = envelope.to_job(message)
    assert "pgboss_attempt" not in job.data["__celery"].get("headers", {})
    assert job.attempt == 3
    assert envelope.to_job(published(app, "proj.fresh")).attempt is None


def test_non_uuid_task_ids_map_to_a_stable_job_id(app: Celery) -> None:
    job = envelope.to_job(published(app, "proj.add", task_id="nightly-report-2030-01-01"))
    assert (
        job.id
        == envelope.job_id_for("nightly-report-2030-01-01")
        == str(uuid.uuid5(envelope.TASK_ID_NAMESPACE, "nightly-report-2030-01-01"))
    )
    out = deliver(job)
    assert out["headers"]["id"] == "nightly-report-2030-01-01"
    assert out["properties"]["correlation_id"] == "nightly-report-2030-01-01"


def test_reserved_keyword_is_refused(app: Celery) -> None:
    with pytest.raises(InvalidPayload):
        envelope.to_job(published(app, "proj.add", kwargs={"__celery": 1}))


def test_pickle_body_travels_base64(app: Celery) -> None:
    body = pickle.dumps({"hello": "world"})
    message = {
        "body": body,
        "content-type": "application/x-python-serialize",
        "content-encoding": "binary",
        "headers": {"k1": "v1"},
        "properties": {"delivery_info": {"exchange": "", "routing_key": "q"}, "priority": 0},
    }
    job = envelope.to_job(message)
    assert job.data == {"__celery": job.data["__celery"]} and "body" in job.data["__celery"]
    out = deliver(job)
    assert out["properties"]["body_encoding"] == "base64"
    assert base64.b64decode(out["body"]) == body
    assert out["content-type"] == "application/x-python-serialize"
    assert out["headers"] == {"k1": "v1"}  # plain Kombu messages keep their headers exactly


def test_plain_json_object_is_the_payload() -> None:
    message = {
        "body": json.dumps({"Hello": "World"}),
        "content-type": "application/json",
        "content-encoding": "utf-8",
        "headers": {"k1": "v1"},
        "properties": {"delivery_info": {"exchange": "", "routing_key": "q"}, "priority": 3},
    }
    job = envelope.to_job(message)
    assert job.id is None and job.priority == 3
    assert {k: v for k, v in job.data.items() if k != "__celery"} == {"Hello": "World"}
    out = deliver(job)
    assert json.loads(out["body"]) == {"Hello": "World"} and out["headers"] == {"k1": "v1"}


def test_json_scalar_body() -> None:
    message = {
        "body": json.dumps([1, 2]),
        "content-type": "application/json",
        "content-encoding": "utf-8",
        "headers": {},
        "properties": {"delivery_info": {}},
    }
    assert json.loads(deliver(envelope.to_job(message))["body"]) == [1, 2]


@pytest.mark.parametrize(
    ("data", "args", "kwargs"),
    [
        ({"storyId": "x"}, [], {"storyId": "x"}),
        (None, [], {}),
        ("plain", ["plain"], {}),
        ([1, 2], [[1, 2]], {}),
    ],
)
def test_node_job_becomes_a_protocol_2_task_message(data, args, kwargs) -> None:
    job_id = str(uuid.uuid4())
    assert envelope.is_foreign(data)
    out = envelope.to_message(job_id, "analyze-story", data, priority=0, attempt=1, delivery_tag="t",
                              task_name="analyze-story")  # fmt: skip
    assert json.loads(out["body"]) == [args, kwargs, {"callbacks": None, "errbacks": None, "chain": None,
                                                       "chord": None}]  # fmt: skip
    headers = out["headers"]
    assert headers["task"] == "analyze-story" and headers["id"] == headers["root_id"] == job_id
    assert headers["pgboss_attempt"] == 1 and headers["retries"] == 1  # one budget
    assert out["properties"]["correlation_id"] == job_id
    assert out["properties"]["delivery_info"]["routing_key"] == "analyze-story"


def test_parse_time() -> None:
    assert envelope.parse_time("2030-01-01T00:00:00Z") == dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    assert envelope.parse_time("2030-01-01T00:00:00") == dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    assert envelope.parse_time(None) is None and envelope.parse_time("garbage") is None


def test_expiry_bounds_the_attempts_time_limits(app: Celery) -> None:
    assert envelope.expiry_time_limits(3600) == (3599.0, 3594.0)
    assert envelope.expiry_time_limits(2) == (1.5, 1.35)
    job = envelope.to_job(published(app, "proj.add", (1,)))
    out = deliver(job, expire_seconds=3600)
    assert out["headers"]["timelimit"] == [3599.0, 3594.0]
    assert out["headers"]["pgboss_expiry_limit"] is True
    # A tighter limit of the task (sent, or the worker's own) is kept; the expiry then is not the cause.
    tight = envelope.to_job(published(app, "proj.add", (1,), time_limit=60, soft_time_limit=50))
    out = deliver(tight, expire_seconds=3600)
    assert out["headers"]["timelimit"] == [60, 50] and "pgboss_expiry_limit" not in out["headers"]
    out = deliver(job, expire_seconds=3600, task_limits=(30, None))
    assert out["headers"]["timelimit"] == [30, None]
    node_job = envelope.Job({"x": 1}, None, 0, None, None, 0)
    assert deliver(node_job, expire_seconds=900, task_name="proj.add")["headers"]["timelimit"] == [
        899.0,
        894.0,
    ]
    assert deliver(job)["headers"]["timelimit"] == [None, None]  # no expiry known: Celery's own
