"""transport.names: queue and schema names as pg-boss 12.38 accepts them, the NOTIFY channels a schema
gets, and job ids in every form a caller may pass."""

from __future__ import annotations

import hashlib
import re
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from transport.exceptions import InvalidJobId, InvalidQueueName
from transport.names import (
    MAX_QUEUE_NAME,
    broker_channel,
    notify_channel,
    parse_job_id,
    state_channel,
    validate_queue_name,
    validate_schema_name,
)


@pytest.mark.parametrize(
    "name", ["q", "emails", "a.b-c_d/e", "UPPER", "0starts-with-digit", "x" * MAX_QUEUE_NAME, "__pgboss"]
)
def test_valid_queue_names_are_returned_unchanged(name: str) -> None:
    assert validate_queue_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "has space",
        "semi;colon",
        "quote'",
        "ünïcode",  # JavaScript's \w is ASCII only
        "trailing-newline\n",  # Python's $ would match before it; JavaScript's does not
        "x" * (MAX_QUEUE_NAME + 1),
        None,
        7,
        b"bytes",
    ],
    ids=repr,
)
def test_invalid_queue_names_are_refused(name: object) -> None:
    with pytest.raises(InvalidQueueName):
        validate_queue_name(name)


def test_reserved_names_need_permission() -> None:
    with pytest.raises(InvalidQueueName, match="reserved"):
        validate_queue_name("__pgboss__send-it")
    assert validate_queue_name("__pgboss__send-it", allow_reserved=True) == "__pgboss__send-it"


def test_an_overlong_name_is_not_echoed_whole() -> None:
    with pytest.raises(InvalidQueueName) as refused:
        validate_queue_name("y" * 10_000)
    assert len(str(refused.value)) < 200


NAMES = st.text(alphabet="abcXYZ019_.-/", min_size=1, max_size=MAX_QUEUE_NAME)


@given(NAMES.filter(lambda n: not n.startswith("__pgboss__")))
def test_every_name_of_the_allowed_alphabet_is_valid(name: str) -> None:
    assert validate_queue_name(name) == name


@pytest.mark.parametrize("schema", ["pgboss", "_private", "a" * 50, "Mixed_Case1"])
def test_valid_schema_names(schema: str) -> None:
    assert validate_schema_name(schema) == schema


@pytest.mark.parametrize("schema", ["", "1starts", "a" * 51, "has-dash", 'quo"te', "sp ace", "é"])
def test_invalid_schema_names(schema: str) -> None:
    with pytest.raises(InvalidQueueName):
        validate_schema_name(schema)


@pytest.mark.parametrize("channel", [notify_channel, broker_channel, state_channel])
def test_channels_are_stable_distinct_per_schema_and_valid_identifiers(channel) -> None:
    a, b = channel("pgboss"), channel("other")
    assert a == channel("pgboss") and a != b
    # PostgreSQL truncates identifiers past 63 bytes: a longer channel would LISTEN on another name.
    assert len(a) <= 63 and re.fullmatch(r"[a-z_][a-z0-9_]*", a)


def test_the_three_channels_of_one_schema_differ() -> None:
    assert len({notify_channel("s"), broker_channel("s"), state_channel("s")}) == 3


def test_notify_channel_is_the_one_node_pg_boss_listens_on() -> None:
    # pg-boss 12.21+ derives it as 'pgboss_' + the first 24 hex digits of sha224(schema).
    assert notify_channel("pgboss") == "pgboss_" + hashlib.sha224(b"pgboss").hexdigest()[:24]


JOB = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"


@pytest.mark.parametrize(
    "given_id",
    [JOB, JOB.upper(), "{" + JOB + "}", JOB.replace("-", ""), "urn:uuid:" + JOB, uuid.UUID(JOB)],
    ids=["canonical", "upper", "braces", "hex", "urn", "uuid-object"],
)
def test_job_ids_are_returned_canonical(given_id: object) -> None:
    assert parse_job_id(given_id) == JOB


@pytest.mark.parametrize("bad", ["", "not-a-uuid", JOB[:-1], None, 42, [JOB], JOB + "0"], ids=repr)
def test_bad_job_ids_are_refused(bad: object) -> None:
    with pytest.raises(InvalidJobId):
        parse_job_id(bad)


@given(st.uuids())
def test_any_uuid_round_trips(value: uuid.UUID) -> None:
    assert parse_job_id(str(value)) == str(value) and parse_job_id(value.hex) == str(value)
