"""What a job may be: the send options' checks, the job table's limits, and the batch sizes of the
bulk statements (sweeps, deletions, flow resolution)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from transport import names
from transport.exceptions import InvalidOption

EXPIRY_BATCH = 1000
DELETION_BATCH = 10_000
#: Completed parents resolved per flow statement (pg-boss's FLOW_BATCH_SIZE).
FLOW_BATCH = 1000

#: The job table's integer columns are PostgreSQL ``integer``s.
INT4_MAX = 2**31 - 1
#: start_after in seconds: within about 300 years of now, far inside what a timestamp can hold.
START_AFTER_MAX_SECONDS = 10**10


def check_job_options(options: Mapping[str, Any]) -> None:
    """Refuse a bad send, queue or update option, in the words the user sees (the one check of a
    group: :func:`group_columns` takes it as checked here)."""
    for key in ("retry_limit", "retry_delay", "retry_delay_max", "retention_seconds", "delete_after_seconds"):
        value = options.get(key)
        if value is not None and (
            not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= INT4_MAX
        ):
            raise InvalidOption(f"{key} must be a whole number from 0 to {INT4_MAX}, not {value!r}")
    for key in ("singleton_seconds", "singleton_offset"):
        value = options.get(key)
        if value is not None and (
            not isinstance(value, int) or isinstance(value, bool) or not -INT4_MAX <= value <= INT4_MAX
        ):
            raise InvalidOption(f"{key} must be a whole number (a PostgreSQL integer), not {value!r}")
    if options.get("singleton_seconds") is not None and options["singleton_seconds"] <= 0:
        raise InvalidOption(f"singleton_seconds must be >= 1, not {options['singleton_seconds']!r}")
    expire = options.get("expire_in_seconds")
    if expire is not None and (not isinstance(expire, int | float) or not 1 <= expire <= 86400):
        raise InvalidOption(f"expire_in_seconds must be between 1 and 86400, not {expire!r}")
    heartbeat = options.get("heartbeat_seconds")
    if heartbeat is not None and (
        not isinstance(heartbeat, int) or isinstance(heartbeat, bool) or not 10 <= heartbeat <= INT4_MAX
    ):
        raise InvalidOption(f"heartbeat_seconds must be a whole number >= 10, not {heartbeat!r}")
    key = options.get("singleton_key")
    if key is not None and not isinstance(key, str):
        raise InvalidOption(f"singleton_key must be a string, not {key!r}")
    if options.get("dead_letter") is not None:
        names.validate_queue_name(options["dead_letter"])
    if options.get("retry_delay_max") is not None and options.get("retry_backoff") is False:
        raise InvalidOption("retry_delay_max only applies with retry_backoff")
    retry_backoff = options.get("retry_backoff")
    if retry_backoff is not None and not isinstance(retry_backoff, bool):
        raise InvalidOption(f"retry_backoff must be true or false, not {retry_backoff!r}")
    next_slot = options.get("singleton_next_slot")
    if next_slot is not None:
        if not isinstance(next_slot, bool):
            raise InvalidOption(f"singleton_next_slot must be true or false, not {next_slot!r}")
        if next_slot and options.get("singleton_seconds") is None:
            raise InvalidOption("singleton_next_slot (debounce) needs singleton_seconds")
    group = options.get("group")
    if group is not None:
        if not isinstance(group, Mapping) or set(group) - {"id", "tier"}:
            raise InvalidOption(f"group must be {{'id': str, 'tier': str}}, not {group!r}")
        if not isinstance(group.get("id"), str) or not group["id"]:
            raise InvalidOption("group id must be a non-empty string")
        tier = group.get("tier")
        if tier is not None and (not isinstance(tier, str) or not tier):
            raise InvalidOption("group tier must be a non-empty string when given")


def group_columns(group: Mapping[str, Any]) -> dict[str, str]:
    """pg-boss's ``group: {id, tier}`` send option, as :func:`check_job_options` passed it, as the
    job's group_id/group_tier columns."""
    columns = {"group_id": group["id"]}
    if group.get("tier") is not None:
        columns["group_tier"] = group["tier"]
    return columns
