"""The rest of Node pg-boss 12.38's public API, as JobManager methods with pg-boss's names in snake_case.

:class:`PgBossVerbs` is mixed into :class:`transport.manager.JobManager`, so every statement still
runs through the manager (its SQL lives in ``transport/sql/verbs.sql``). Each method checks its
arguments the way pg-boss's own validation does and raises the project's exceptions
(``transport.exceptions``) instead of Node's assertion errors or raw database errors; an operation
the database's schema is too old for raises :class:`UnsupportedBySchema` naming the first pg-boss
release that has it.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal, TypedDict

from transport import names, outputs
from transport.errors import UniqueViolation
from transport.exceptions import InvalidOption, PgBossError, QueueNotFound, UnsupportedBySchema
from transport.jobrows import _job_row
from transport.jobspec import DELETION_BATCH, check_job_options, group_columns
from transport.mixins import ManagerSelf
from transport.times import iso

#: pg-boss's list reads (findJobs, getBlockedKeys, getDependencies, ...): default and largest limit.
LIST_LIMIT_DEFAULT = 1000
LIST_LIMIT_MAX = 100_000
#: An instance is live while heard from within this many of its heartbeats (pg-boss's quiet beats).
INSTANCE_QUIET_BEATS = 3

#: Python updateQueue option -> Node option. The policy and partitioning are fixed at creation.
UPDATE_QUEUE_KEYS: dict[str, str] = {
    "retry_limit": "retryLimit",
    "retry_delay": "retryDelay",
    "retry_backoff": "retryBackoff",
    "retry_delay_max": "retryDelayMax",
    "expire_in_seconds": "expireInSeconds",
    "retention_seconds": "retentionSeconds",
    "delete_after_seconds": "deleteAfterSeconds",
    "warning_queue_size": "warningQueueSize",
    "heartbeat_seconds": "heartbeatSeconds",
    "notify": "notify",
    "dead_letter": "deadLetter",
}
#: Options a present None clears (the rest ignore None, as Node's COALESCE does).
_CLEARABLE = frozenset({"retry_delay_max", "heartbeat_seconds", "dead_letter"})

#: Python update()/upsert() option -> Node payload key (start_after is resolved separately).
UPDATE_JOB_KEYS: dict[str, str] = {
    "priority": "priority",
    "retention_seconds": "retentionSeconds",
    "expire_in_seconds": "expireInSeconds",
    "delete_after_seconds": "deleteAfterSeconds",
    "retry_limit": "retryLimit",
    "retry_delay": "retryDelay",
    "retry_backoff": "retryBackoff",
    "retry_delay_max": "retryDelayMax",
    "dead_letter": "deadLetter",
    "heartbeat_seconds": "heartbeatSeconds",
}

#: The job states each bulk delete removes (pg-boss: queued < active < stored).
_QUEUED_STATES = ("created", "retry")
_STORED_STATES = ("completed", "cancelled", "failed")
_ALL_STATES = ("created", "retry", "active", "completed", "cancelled", "failed")

Match = Literal["newest", "oldest", "all"]


class UpdateResult(TypedDict):
    """What update() returns: the edited job ids and how many."""

    jobs: list[str]
    updated: int


class UpsertResult(TypedDict):
    """What upsert() returns: the edited or inserted job ids, and which it was."""

    jobs: list[str]
    updated: int
    inserted: int


class JobRef(TypedDict):
    """One job of a flow: its queue and id."""

    name: str
    id: str


def _limit(method: str, limit: int) -> int:
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= LIST_LIMIT_MAX:
        raise InvalidOption(f"{method}: limit must be an integer from 1 to {LIST_LIMIT_MAX}, not {limit!r}")
    return limit


def _json_arg(method: str, what: str, value: Any) -> str:
    try:
        return outputs.to_json(value)
    except (TypeError, ValueError) as exc:
        raise InvalidOption(f"{method}: {what} must be JSON: {exc}") from None


class PgBossVerbs(ManagerSelf):
    """pg-boss 12.38 verbs beyond sending, fetching and settling (mixed into JobManager)."""

    def _require(self, operation: str, feature: str, minimum: str) -> None:
        if not self.info.has(feature):
            raise UnsupportedBySchema(operation, minimum, self.info.version)

    def _existing_queue(self, method: str, name: str) -> dict[str, Any]:
        queue = self.get_queue(names.validate_queue_name(name))
        if queue is None:
            raise QueueNotFound(f"{method}: queue {name!r} does not exist")
        return queue

    # -- pub/sub --------------------------------------------------------------------------------

    def subscribe(self, event: str, name: str) -> None:
        """pg-boss ``subscribe(event, name)``: jobs published to ``event`` are sent to queue ``name``."""
        if not event or not isinstance(event, str):
            raise InvalidOption("subscribe: event must be a non-empty string")
        self._existing_queue("subscribe", name)
        self._run("subscribe", {"event": event, "name": name})

    def unsubscribe(self, event: str, name: str) -> None:
        """pg-boss ``unsubscribe(event, name)``."""
        if not event or not isinstance(event, str):
            raise InvalidOption("unsubscribe: event must be a non-empty string")
        self._run("unsubscribe", {"event": event, "name": names.validate_queue_name(name)})

    def publish(self, event: str, data: Any = None, **options: Any) -> dict[str, str | None]:
        """pg-boss ``publish(event, data, options)``: send one job to every subscribed queue.

        Returns queue name -> job id (None where a policy deduplicated it). A subscriber deleted in
        the meantime is skipped, as Node skips it. A queue that refuses the job does not stop the
        others: once all were tried, :class:`PgBossError` names each refusal (Node's AggregateError).
        """
        if not event or not isinstance(event, str):
            raise InvalidOption("publish: event must be a non-empty string")
        sent: dict[str, str | None] = {}
        failures: list[str] = []
        rows = self._run("queues_for_event", {"event": event})
        for row in rows:
            try:
                sent[row["name"]] = self.send(row["name"], data, **options)
            except QueueNotFound:
                continue
            except PgBossError as exc:
                failures.append(f"{row['name']}: {exc}")
        if failures:
            raise PgBossError(
                f"publish({event!r}) failed for {len(failures)} of {len(rows)} subscribed queue(s): "
                + "; ".join(failures)
            )
        return sent

    # -- queues ---------------------------------------------------------------------------------

    def update_queue(self, name: str, **options: Any) -> None:
        """pg-boss ``updateQueue(name, options)``: change the given settings of an existing queue.

        ``policy`` and ``partition`` cannot change after creation; ``retry_delay_max``,
        ``heartbeat_seconds`` and ``dead_letter`` set to None are cleared.
        """
        names.validate_queue_name(name)
        if not options:
            raise InvalidOption("update_queue: no properties found to update")
        if "policy" in options:
            raise InvalidOption("queue policy cannot be changed after creation")
        if "partition" in options:
            raise InvalidOption("queue partitioning cannot be changed after creation")
        unknown = set(options) - set(UPDATE_QUEUE_KEYS)
        if unknown:
            raise InvalidOption(f"unknown queue option(s): {', '.join(sorted(unknown))}")
        check_job_options(options)
        warning = options.get("warning_queue_size")
        if warning is not None and (not isinstance(warning, int) or isinstance(warning, bool) or warning < 1):
            raise InvalidOption(f"warning_queue_size must be an integer >= 1, not {warning!r}")
        dead_letter = options.get("dead_letter")
        if dead_letter is not None:
            if dead_letter == name:
                raise InvalidOption("dead_letter cannot be the queue itself")
            if self.get_queue(dead_letter) is None:
                raise QueueNotFound(f"dead letter queue {dead_letter!r} does not exist; create it first")
        if "heartbeat_seconds" in options:
            self._require("update_queue(heartbeat_seconds=...)", "heartbeat", "pg-boss 12.12")
        if "notify" in options:
            self._require("update_queue(notify=...)", "notify", "pg-boss 12.21")
        node = {UPDATE_QUEUE_KEYS[k]: v for k, v in options.items() if v is not None or k in _CLEARABLE}
        if not self._run("update_queue", {"name": name, "options": outputs.to_json(node)}):
            raise QueueNotFound(f"queue {name!r} does not exist")
        self._policies.pop(name, None)

    def get_queue_stats(self, name: str, *, force: bool = False) -> dict[str, Any]:
        """pg-boss ``getQueueStats(name)``: a queue's gauges (deferred, blocked, queued, ready,
        active, failed and total counts) and when they were captured (``captured_on``).

        Reads the counts pg-boss's monitor caches on the queue row (None ``captured_on``: never
        monitored). ``force=True``, or a queue never monitored, counts them from the jobs now instead
        (read only; the cache stays the monitor's). Total is every job here; the monitor's total
        leaves out completed jobs older than its retention window.
        """
        queue = self._existing_queue("get_queue_stats", name)
        if force or queue.get("monitor_on") is None:
            return {"name": name, **self._run("count_queue_now", {"name": name})[0]}
        keys = (
            "deferred_count",
            "blocked_count",
            "queued_count",
            "ready_count",
            "active_count",
            "failed_count",
            "total_count",
        )
        return {"name": name, **{k: queue.get(k, 0) for k in keys}, "captured_on": queue["monitor_on"]}

    # -- reading --------------------------------------------------------------------------------

    def find_jobs(
        self,
        name: str,
        *,
        id: str | None = None,  # noqa: A002  (pg-boss's option name)
        key: str | None = None,
        data: Any = None,
        queued: bool = False,
        limit: int = LIST_LIMIT_DEFAULT,
        after: str | None = None,
    ) -> list[dict[str, Any]]:
        """pg-boss ``findJobs(name, {id, key, data, queued, limit, after})``: a queue's jobs matching
        every filter given, oldest first. ``data`` matches jobs whose data contains it (jsonb @>);
        ``after`` is the last job id of the previous page."""
        names.validate_queue_name(name)
        _limit("find_jobs", limit)
        params: dict[str, Any] = {
            "name": name,
            "id": names.parse_job_id(id) if id is not None else None,
            "key": key,
            "data": None if data is None else _json_arg("find_jobs", "data", data),
            "queued": bool(queued),
            "limit": limit,
            "after_created": None,
            "after_id": None,
        }
        if after is not None:
            after_id = names.parse_job_id(after)
            anchor = self._run("find_jobs_anchor", {"name": name, "id": after_id})
            if not anchor:
                raise InvalidOption("find_jobs: after names a job that no longer exists")
            params.update(after_created=anchor[0]["created_on"], after_id=after_id)
        return [_job_row(r) for r in self._run("find_jobs", params)]

    def get_blocked_keys(
        self, name: str, *, limit: int = LIST_LIMIT_DEFAULT, after: str | None = None
    ) -> list[str]:
        """pg-boss ``getBlockedKeys``: the keys of a key_strict_fifo queue held back by a failed job."""
        queue = self._existing_queue("get_blocked_keys", name)
        if queue["policy"] != "key_strict_fifo":
            raise InvalidOption("get_blocked_keys is only available for key_strict_fifo queues")
        _limit("get_blocked_keys", limit)
        if after is not None and (not isinstance(after, str) or not after):
            raise InvalidOption("get_blocked_keys: after must be a non-empty string")
        rows = self._run("get_blocked_keys", {"name": name, "after": after, "limit": limit})
        return [r["singleton_key"] for r in rows]

    def get_dependencies(
        self,
        name: str,
        id: str,  # noqa: A002
        *,
        limit: int = LIST_LIMIT_DEFAULT,
        after: JobRef | None = None,
    ) -> list[JobRef]:
        """pg-boss ``getDependencies(name, id)``: the jobs this flow job waits for."""
        return self._flow_links("get_dependencies", name, id, limit, after)

    def get_dependents(
        self,
        name: str,
        id: str,  # noqa: A002
        *,
        limit: int = LIST_LIMIT_DEFAULT,
        after: JobRef | None = None,
    ) -> list[JobRef]:
        """pg-boss ``getDependents(name, id)``: the jobs that wait for this one."""
        return self._flow_links("get_dependents", name, id, limit, after)

    def _flow_links(
        self, statement: str, name: str, job_id: str, limit: int, after: Mapping[str, str] | None
    ) -> list[JobRef]:
        names.validate_queue_name(name)
        _limit(statement, limit)
        self._require(statement, "blocked", "pg-boss 12.19")
        if after is not None and not (isinstance(after, Mapping) and isinstance(after.get("name"), str)):
            raise InvalidOption(f"{statement}: after must be a mapping with string name and id")
        params = {
            "name": name,
            "id": names.parse_job_id(job_id),
            "after_name": after["name"] if after else None,
            "after_id": names.parse_job_id(after["id"]) if after else None,
            "limit": limit,
        }
        return [JobRef(name=r["name"], id=r["id"]) for r in self._run(statement, params)]

    def get_instances(
        self, *, limit: int = LIST_LIMIT_DEFAULT, after: str | None = None
    ) -> list[dict[str, Any]]:
        """pg-boss ``getInstances``: the Node PgBoss objects registered on this schema (zeke itself
        does not register), oldest first, each with ``live``."""
        if self.info.version is None or self.info.version < 44:
            raise UnsupportedBySchema("get_instances", "pg-boss 12.36", self.info.version)
        _limit("get_instances", limit)
        params = {
            "after": names.parse_job_id(after) if after is not None else None,
            "limit": limit,
            "quiet_beats": INSTANCE_QUIET_BEATS,
        }
        return [{**r, "id": str(r["id"])} for r in self._run("get_instances", params)]

    # -- bulk deletes ---------------------------------------------------------------------------

    def delete_queued_jobs(self, name: str) -> int:
        """pg-boss ``deleteQueuedJobs``: delete a queue's created and retry jobs; returns how many."""
        return self._delete_in_states("delete_queued_jobs", name, _QUEUED_STATES)

    def delete_stored_jobs(self, name: str) -> int:
        """pg-boss ``deleteStoredJobs``: delete a queue's completed, cancelled and failed jobs."""
        return self._delete_in_states("delete_stored_jobs", name, _STORED_STATES)

    def delete_all_jobs(self, name: str) -> int:
        """pg-boss ``deleteAllJobs(name)``: delete every job of a queue, active ones too."""
        return self._delete_in_states("delete_all_jobs", name, _ALL_STATES)

    def _delete_in_states(self, method: str, name: str, states: Sequence[str]) -> int:
        self._existing_queue(method, name)
        total = 0
        while True:
            params = {"name": name, "states": list(states), "batch": DELETION_BATCH}
            rows = self._run("delete_jobs_in_states", params)
            deleted = int(rows[0]["deleted"]) if rows else 0
            total += deleted
            if deleted < DELETION_BATCH:
                return total

    # -- sending variants -----------------------------------------------------------------------

    def send_throttled(
        self, name: str, data: Any, seconds: int, key: str | None = None, **options: Any
    ) -> str | None:
        """pg-boss ``sendThrottled``: at most one job per ``seconds`` slot (and key); later sends in
        the slot are dropped (None)."""
        return self.send(name, data, **options, singleton_seconds=seconds, singleton_key=key)

    def send_debounced(
        self, name: str, data: Any, seconds: int, key: str | None = None, **options: Any
    ) -> str | None:
        """pg-boss ``sendDebounced``: like send_throttled, but a send in a full slot is kept for the
        next slot, starting when that slot does (``singletonNextSlot``)."""
        return self.send_next_slot(name, data, **options, singleton_seconds=seconds, singleton_key=key)

    def send_next_slot(self, name: str, data: Any = None, **options: Any) -> str | None:
        """send() with pg-boss's ``singletonNextSlot``: when the current throttle slot is taken, try
        once more in the next slot, starting at its beginning (plus a second, as Node does)."""
        seconds = options.get("singleton_seconds")
        if seconds is None:
            raise InvalidOption("singleton_next_slot needs singleton_seconds")
        job_id = self.send(name, data, **options)
        if job_id is not None:
            return job_id
        now = self.now().timestamp()
        start_after = (seconds - math.floor(now - math.floor(now / seconds) * seconds)) or 1
        if seconds > 1:
            start_after += 1
        return self.send(name, data, **{**options, "singleton_offset": seconds, "start_after": start_after})

    # -- editing waiting jobs -------------------------------------------------------------------

    def update(
        self,
        name: str,
        data: Any = ...,
        *,
        id: str | None = None,  # noqa: A002
        singleton_key: str | None = None,
        match: Match | None = None,
        **options: Any,
    ) -> UpdateResult:
        """pg-boss ``update(name, data, {id | singletonKey, match, ...})``: edit jobs that have not
        started yet, in place. Only what is given changes (``data`` left out keeps the data).
        By key, ``match`` picks the newest (default), the oldest or all waiting jobs of the key."""
        names.validate_queue_name(name)
        payload, by_id, match = self._update_payload("update", data, id, singleton_key, match, options)
        jobs = self._run_update(name, payload, by_id, match, None)
        return UpdateResult(jobs=jobs, updated=len(jobs))

    def upsert(
        self,
        name: str,
        data: Any = ...,
        *,
        id: str | None = None,  # noqa: A002
        singleton_key: str | None = None,
        match: Match | None = None,
        **options: Any,
    ) -> UpsertResult:
        """pg-boss ``upsert``: update() the waiting job, or send it when there is none (with the id or
        singleton key given), in one transaction. Needs schema 45 (pg-boss 12.37) to upsert by key."""
        names.validate_queue_name(name)
        payload, by_id, match = self._update_payload("upsert", data, id, singleton_key, match, options)
        if not by_id:
            self._require("upsert by singleton_key", "upsert", "pg-boss 12.37")
        queue = self._existing_queue("upsert", name)
        if queue["policy"] == "key_strict_fifo" and not singleton_key:
            raise InvalidOption("key_strict_fifo queues require a singleton_key")
        send_options = {k: v for k, v in options.items() if v is not None}
        if id is not None:
            send_options["id"] = id
        if singleton_key is not None:
            send_options["singleton_key"] = singleton_key
        for attempt in (1, 2):
            with self.sql.connection() as conn:
                try:
                    jobs = self._run_update(name, payload, by_id, match, conn)
                    if jobs:
                        conn.commit()
                        return UpsertResult(jobs=jobs, updated=len(jobs), inserted=0)
                    new_id = self.send(name, None if data is ... else data, conn=conn, **send_options)
                    if new_id is not None:
                        if not by_id:
                            self._run("mark_upsert_by_key", {"name": name, "ids": [new_id]}, conn=conn)
                        conn.commit()
                        return UpsertResult(jobs=[new_id], updated=0, inserted=1)
                    # The insert lost to a concurrent send of the same id/key: edit that one.
                    jobs = self._run_update(name, payload, by_id, match, conn)
                    conn.commit()
                    return UpsertResult(jobs=jobs, updated=len(jobs), inserted=0)
                except UniqueViolation:
                    # Another upsert of this key marked its job first (job_i13): it is visible now.
                    conn.rollback()
                    if attempt == 2:
                        raise
        raise AssertionError("unreachable")

    def _run_update(
        self, name: str, payload: Mapping[str, Any], by_id: bool, match: str, conn: Any
    ) -> list[str]:
        params = {
            "name": name,
            "job": outputs.to_json(payload),
            "by_id": by_id,
            "match": match,
            "channel": self.channel,
        }
        return [r["id"] for r in self._run("update_jobs", params, conn=conn)]

    def _update_payload(
        self,
        verb: str,
        data: Any,
        job_id: str | None,
        singleton_key: str | None,
        match: str | None,
        options: Mapping[str, Any],
    ) -> tuple[dict[str, Any], bool, str]:
        if bool(job_id) == bool(singleton_key):
            raise InvalidOption(f"{verb}() requires exactly one of id or singleton_key")
        if job_id and match is not None:
            raise InvalidOption("match is only valid when targeting jobs by singleton_key")
        if match is not None and match not in ("newest", "oldest", "all"):
            raise InvalidOption("match must be one of: newest, oldest, all")
        unknown = set(options) - set(UPDATE_JOB_KEYS) - {"start_after", "group"}
        if unknown:
            raise InvalidOption(f"unknown {verb} option(s): {', '.join(sorted(unknown))}")
        check_job_options(options)
        priority = options.get("priority")
        if priority is not None and (not isinstance(priority, int) or isinstance(priority, bool)):
            raise InvalidOption("priority must be an integer")
        dead_letter = options.get("dead_letter")
        if dead_letter is not None and self.get_queue(dead_letter) is None:
            raise QueueNotFound(f"dead letter queue {dead_letter!r} does not exist; create it first")
        payload: dict[str, Any] = {
            UPDATE_JOB_KEYS[k]: v for k, v in options.items() if k in UPDATE_JOB_KEYS and v is not None
        }
        if options.get("group") is not None:
            self._require(f"{verb}(group=...)", "group", "pg-boss 12.6")
            columns = group_columns(options["group"])
            payload["groupId"] = columns["group_id"]
            if "group_tier" in columns:
                payload["groupTier"] = columns["group_tier"]
        if data is not ...:
            payload["data"] = data
            _json_arg(verb, "data", data)
        start_after = options.get("start_after")
        if isinstance(start_after, dt.datetime | str):
            payload["startAfterAt"] = iso(start_after)
        elif isinstance(start_after, int | float) and not isinstance(start_after, bool):
            if not math.isfinite(start_after):
                raise InvalidOption(f"start_after must be finite, not {start_after!r}")
            payload["startAfterSeconds"] = float(start_after)  # 0 or less: runnable now
        elif start_after is not None:
            raise InvalidOption(f"start_after must be a datetime, ISO string or seconds, not {start_after!r}")
        if job_id:
            payload["id"] = names.parse_job_id(job_id)
        else:
            if not isinstance(singleton_key, str):
                raise InvalidOption(f"singleton_key must be a string, not {singleton_key!r}")
            payload["singletonKey"] = singleton_key
        return payload, bool(job_id), match or "newest"
