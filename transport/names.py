"""Names pg-boss derives from a schema or queue name: validation, NOTIFY channel, lock keys."""

from __future__ import annotations

import hashlib
import re
import uuid

from transport.exceptions import InvalidJobId, InvalidQueueName

#: pg-boss 12.38's rule for queue names, as JavaScript reads it: ``\w`` is ASCII only there, and ``$``
#: does not match before a trailing newline (``match`` with ``\Z``, not ``$``).
QUEUE_NAME = re.compile(r"[\w.\-/]+\Z", re.ASCII)
MAX_QUEUE_NAME = 255
#: A job id already in ``str(uuid.UUID(...))``'s form needs no parsing.
CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
#: Schema names: word characters, not starting with a digit, at most 50 characters (pg-boss's rule).
SCHEMA_NAME = re.compile(r"[A-Za-z_]\w{0,49}\Z", re.ASCII)
RESERVED_PREFIX = "__pgboss__"
SEND_IT_QUEUE = "__pgboss__send-it"


def validate_queue_name(name: object, *, allow_reserved: bool = False) -> str:
    if isinstance(name, str) and len(name) > MAX_QUEUE_NAME:
        raise InvalidQueueName(f"invalid queue name {name[:40]!r}...: over {MAX_QUEUE_NAME} characters")
    if not isinstance(name, str) or not QUEUE_NAME.match(name):
        raise InvalidQueueName(
            f"invalid queue name {name!r}: ASCII letters, digits, _ . - / only (^[\\w.\\-/]+$)"
        )
    if name.startswith(RESERVED_PREFIX) and not allow_reserved:
        raise InvalidQueueName(f"queue name {name!r} is reserved for pg-boss")
    return name


def validate_schema_name(schema: str) -> str:
    if not SCHEMA_NAME.match(schema):
        raise InvalidQueueName(f"invalid pg-boss schema name {schema!r}")
    return schema


def notify_channel(schema: str) -> str:
    """The channel pg-boss 12.21+ NOTIFYs with a queue name when a runnable job is inserted."""
    return "pgboss_" + hashlib.sha224(schema.encode()).hexdigest()[:24]


def broker_channel(schema: str) -> str:
    """The transport's NOTIFY channel for one pg-boss schema: broadcast-log appends and timer notices."""
    return "zeke_kombu_" + hashlib.sha224(schema.encode()).hexdigest()[:24]


#: Broker-channel notice prefixes. + exchange: a broadcast row was appended.
EXCHANGE_NOTICE = "x:"
#: + queue: a job of the queue becomes runnable later than now.
TIMER_NOTICE = "t:"


def state_channel(schema: str) -> str:
    """zeke's channel for job state changes made through transport.manager ("<job id> <state>")."""
    return "zeke_state_" + hashlib.sha224(schema.encode()).hexdigest()[:24]


def state_presence_key(schema: str) -> int:
    """The advisory lock key a LISTEN session holds shared while it wants the state channel's
    ``active`` notices (a claim sends them only then: see ``_claim_next`` in transport/sql/job.sql)."""
    digest = hashlib.sha224(("zeke.state-presence." + schema).encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def parse_job_id(job_id: object) -> str:
    if type(job_id) is str and CANONICAL_UUID.match(job_id):
        return job_id
    try:
        return str(uuid.UUID(str(job_id)))
    except (ValueError, TypeError, AttributeError):
        raise InvalidJobId(f"invalid job id {job_id!r}: expected a UUID") from None
