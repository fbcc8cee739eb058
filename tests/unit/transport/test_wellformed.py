"""transport.wellformed: a job's envelope is checked before delivery, and what is wrong is named."""

from __future__ import annotations

import pytest

from transport import envelope, wellformed
from transport.exceptions import MalformedJob


def deliver(data: object) -> dict:
    return envelope.to_message(
        "8d0c6b1e-8d45-4c47-a1c4-2a6c3a0e6f00", "q", data, priority=0, attempt=0, delivery_tag="t/1"
    )


@pytest.mark.parametrize(
    ("data", "says"),
    [
        ({"__celery": {"v": 1, "body": "not base64!"}}, "body is not valid base64"),
        ({"__celery": {"v": 1, "task": "t", "properties": 5}}, "properties must be an object, not number 5"),
        ({"__celery": {"v": 1, "task": "t", "headers": {"timelimit": "abc"}}}, "header timelimit"),
        ({"__celery": {"v": 1, "task": "t", "headers": {"retries": -1}}}, "header retries"),
        ({"__celery": {"v": 1, "task": "t", "headers": {"eta": "tomorrow"}}}, "header eta"),
        ({"__celery": {"v": 1, "task": "t", "headers": {"id": 7}}}, "header id must be a string"),
        ({"__celery": {"v": 1, "task": "t", "args": {"a": 1}}}, "args must be a list"),
        ({"__celery": {"v": 1, "task": "t", "embed": {"callbacks": [1]}}}, "embed.callbacks"),
        ({"__celery": {"v": 2, "task": "t"}}, "unknown envelope version 2"),
        ({"__celery": {"v": True, "task": "t"}}, "unknown envelope version True"),
        ({"__celery": {"v": 1, "task": ""}}, "task must be a non-empty string"),
        ({"__celery": {"v": 1, "task": "t", "content_type": "application/x-msgpack"}}, "body is JSON"),
        ({"x": 1, "__celery": "text"}, "__celery must be an object, not string 'text'"),
        ({"__celery": [1, 2]}, "__celery must be an object, not a list of 2"),
    ],
)
def test_malformed_envelopes_are_named(data: dict, says: str) -> None:
    with pytest.raises(MalformedJob) as caught:
        deliver(data)
    assert says in str(caught.value)


@pytest.mark.parametrize(
    "data",
    [
        None,
        [1, 2],
        "text",
        {"story": "s1"},
        {"x": 1, "__celery": {"task": "t"}},  # no version: written by hand, read as version 1
        {"__celery": {"v": 1, "task": "t", "headers": {"timelimit": [10, None], "eta": "2030-01-01T00:00"}}},
        {"__celery": {"v": 1, "json": [1, 2]}},
        {"__celery": {"v": 1, "body": "aGVsbG8=", "content_type": "text/plain"}},
    ],
)
def test_wellformed_data_passes(data: object) -> None:
    wellformed.check(data)


def test_stored_properties_never_replace_the_delivery_tag() -> None:
    stored = {"delivery_tag": "x", "delivery_info": {}, "a": 1}
    data = {"__celery": {"v": 1, "task": "t", "properties": stored}}
    message = deliver(data)
    assert message["properties"]["delivery_tag"] == "t/1" and message["properties"]["a"] == 1
    assert message["properties"]["delivery_info"]["routing_key"] == "q"
