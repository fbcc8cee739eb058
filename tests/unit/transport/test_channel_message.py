"""transport.channel.Message: a task message delivered with its body's value decodes to that value
without parsing its body, and only for a consumer that accepts JSON."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kombu.exceptions import ContentDisallowed

from transport import envelope
from transport.channel import Message


class Channel:
    """What a Kombu virtual message asks of its channel: its body, and where undecodable ones go."""

    def __init__(self) -> None:
        self._undecodable: dict[str, BaseException] = {}

    def decode_body(self, body: Any, encoding: Any) -> Any:
        return body


def payload(value: Any, body: str) -> dict[str, Any]:
    message = envelope.to_message(
        "0b5c0d9e-6f3b-4a53-8a0a-3f1b2c3d4e5f",
        "q",
        {"x": 1, "__celery": {"v": 1, "task": "t", "args": [1, 2]}},
        priority=0,
        attempt=0,
        delivery_tag="t/1",
        body_value=True,
    )
    if value is not None:
        message[envelope.BODY_VALUE] = value
    message["body"] = body
    return message


def test_the_task_body_value_comes_with_the_message_and_equals_its_parsed_body() -> None:
    built = payload(None, "")
    assert built[envelope.BODY_VALUE] == json.loads(
        envelope.to_message(
            "0b5c0d9e-6f3b-4a53-8a0a-3f1b2c3d4e5f",
            "q",
            {"x": 1, "__celery": {"v": 1, "task": "t", "args": [1, 2]}},
            priority=0,
            attempt=0,
            delivery_tag="t/1",
        )["body"]
    )


def test_decoding_returns_the_value_without_parsing_the_body() -> None:
    sentinel = [["given"], {}, {}]
    message = Message(payload(sentinel, "not json at all"), channel=Channel())
    assert envelope.BODY_VALUE not in message._raw
    assert message.decode() is sentinel
    assert message.payload is sentinel


def test_a_consumer_that_does_not_accept_json_is_refused_as_before() -> None:
    message = Message(payload([[1], {}, {}], json.dumps([[1], {}, {}])), channel=Channel())
    message.accept = {"application/x-python-serialize"}
    with pytest.raises(ContentDisallowed):
        message.decode()
    assert isinstance(message.channel._undecodable["t/1"], ContentDisallowed)  # its ack fails the job


def test_a_message_without_the_value_parses_its_body() -> None:
    message = Message(payload(None, json.dumps([[3], {"y": 2}, None])), channel=Channel())
    message._raw.pop(envelope.BODY_VALUE, None)
    message._body_value = None
    assert message.decode() == [[3], {"y": 2}, None]
