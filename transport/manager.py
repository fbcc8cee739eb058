"""The pg-boss job state machine: the one owner of every transition of a ``pgboss.job`` row.

The Kombu channel, the result backend, beat, the client, the API and the CLI all call this class;
none of them holds SQL of its own. Semantics follow Node pg-boss 12: fetch with SKIP LOCKED,
complete fenced on the attempt, fail by delete-and-reinsert with pg-boss's backoff and dead-letter
copy, and so on.
"""

from __future__ import annotations

import datetime as dt
import math
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from transport import names, outputs, schema, sql
from transport.db import Database
from transport.deadletters import DeadLetterVerbs
from transport.errors import CheckViolation, UniqueViolation
from transport.exceptions import InvalidOption, InvalidPayload, QueueNotFound, UnsupportedBySchema
from transport.executor import Executor
from transport.flows import FlowVerbs
from transport.jobrows import PLAIN_FETCH_POLICIES, FetchedJob, _fetched_jobs, _job_row
from transport.jobspec import (
    DELETION_BATCH,
    EXPIRY_BATCH,
    FLOW_BATCH,
    INT4_MAX,
    START_AFTER_MAX_SECONDS,
    check_job_options,
    group_columns,
)
from transport.repositories.exchanges import ExchangeStore
from transport.repositories.results import ResultStore
from transport.repositories.schedules import ScheduleStore
from transport.repositories.supervision import SupervisionStore
from transport.times import iso
from transport.verbs import PgBossVerbs

#: The seed's queue defaults (Zeke's boss.ts): retryLimit 3, retryDelay 1 s with backoff,
#: expire after 1 h active, delete 7 days after finishing. Node's own defaults differ (2/0/false/900).
SEED_QUEUE_DEFAULTS: dict[str, Any] = {
    "policy": "standard",
    "retry_limit": 3,
    "retry_delay": 1,
    "retry_backoff": True,
    "expire_in_seconds": 3600,
    "delete_after_seconds": 7 * 24 * 3600,
    "notify": True,
}

POLICIES = frozenset({"standard", "short", "singleton", "stately", "exclusive", "key_strict_fifo"})
#: How long a process trusts the policies it read (a queue deleted and created again with another
#: policy is seen after this; pg-boss's own queue cache refreshes every 60 s too).
POLICY_CACHE_SECONDS = 60.0

#: Python option name -> Node pg-boss createQueue option name.
QUEUE_OPTION_KEYS: dict[str, str] = {
    "policy": "policy",
    "retry_limit": "retryLimit",
    "retry_delay": "retryDelay",
    "retry_backoff": "retryBackoff",
    "retry_delay_max": "retryDelayMax",
    "expire_in_seconds": "expireInSeconds",
    "retention_seconds": "retentionSeconds",
    "delete_after_seconds": "deleteAfterSeconds",
    "warning_queue_size": "warningQueueSize",
    "dead_letter": "deadLetter",
    "partition": "partition",
    "heartbeat_seconds": "heartbeatSeconds",
    "notify": "notify",
}

#: Python send option name -> column of the send_jobs recordset.
SEND_OPTION_KEYS = frozenset(
    {
        "id",
        "priority",
        "start_after",
        "singleton_key",
        "singleton_seconds",
        "singleton_offset",
        "singleton_slot",
        "expire_in_seconds",
        "delete_after_seconds",
        "retention_seconds",
        "keep_until",
        "retry_limit",
        "retry_delay",
        "retry_backoff",
        "retry_delay_max",
        "dead_letter",
        "heartbeat_seconds",
        "singleton_next_slot",
        "group",
    }
)

#: Columns a failure rewrites itself; every other column is copied from the deleted row. Node's
#: re-insert leaves upsert_by_key out too, so a retried job never keeps its upsert slot.
_FAIL_REWRITTEN = frozenset(
    {"state", "start_after", "completed_on", "output", "heartbeat_on", "upsert_by_key"}
)


class JobManager(PgBossVerbs, FlowVerbs, DeadLetterVerbs):
    """pg-boss jobs and queues in one schema of one database (the rest of pg-boss's API: transport.verbs,
    transport.flows, transport.deadletters)."""

    def __init__(self, db: Database, schema_name: str = "pgboss") -> None:
        self.db = db
        self.schema = names.validate_schema_name(schema_name)
        self.channel = names.notify_channel(self.schema)
        #: zeke's own channel: "<job id> <state>" on every transition made here (SSE, result waiters).
        self.state_channel = names.state_channel(self.schema)
        #: Held (shared) by LISTEN sessions that want the claims' ``active`` notices (transport.listener).
        self.state_presence = names.state_presence_key(self.schema)
        #: The transport's channel: a failure that schedules a retry for later announces it there.
        self.broker_channel = names.broker_channel(self.schema)
        self._lock = threading.Lock()
        self._info: schema.SchemaInfo | None = None
        self._queries: dict[str, str] | None = None
        #: Where this schema's named statements run (the manager, its mixins and the repositories).
        self.sql = Executor(db, lambda: self.queries)
        #: The owners of zeke's state beside the job table (transport.repositories).
        self.results = ResultStore(self.sql, self.schema)
        self.schedules = ScheduleStore(self.sql, self.schema)
        self.exchanges = ExchangeStore(self.sql, self.schema)
        self.supervision = SupervisionStore(self.sql, self.schema)
        #: queue name -> (policy, monotonic time read); a policy cannot change after creation.
        self._policies: dict[str, tuple[str | None, float]] = {}

    # -- schema ---------------------------------------------------------------------------------

    @property
    def info(self) -> schema.SchemaInfo:
        if self._info is None:
            self._load()
        assert self._info is not None
        return self._info

    @property
    def queries(self) -> dict[str, str]:
        if self._queries is None:
            self._load()
        assert self._queries is not None
        return self._queries

    def _load(self) -> None:
        with self._lock:
            if self._queries is not None:
                return
            with self.db.connection() as conn:
                info = schema.ensure(conn, self.schema)
                conn.commit()
            copy = [c for c in info.job_columns if c not in _FAIL_REWRITTEN]
            quoted = '"' + self.schema + '"'
            values = {
                "schema": quoted,
                "aux": '"' + self.schema + '_zeke"',  # zeke's own tables beside pg-boss's
                "now": "{schema}.job_now()" if "job_now" in info.features else "now()",
                "copy_columns": ", ".join(copy),
            }
            self._queries = sql.resolve(info.features, values)
            self._info = info

    def _params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        # "retry": failures may retry unless a caller says otherwise (fail(..., retry=False)).
        base = {
            "state_channel": self.state_channel,
            "state_presence": self.state_presence,
            "retry": True,
            "wake_channel": self.channel,
            "timer_channel": self.broker_channel,
            "timer_notice": names.TIMER_NOTICE,
        }
        return {**base, **params}

    def _run(self, name: str, params: Mapping[str, Any], *, conn: Any = None) -> list[dict[str, Any]]:
        return self.sql.rows(name, self._params(params), conn=conn)

    def _locked(
        self, key: str, name: str, params: Mapping[str, Any], *, conn: Any = None
    ) -> list[dict[str, Any]]:
        """Run a statement inside pg-boss's advisory lock for ``key``, in one transaction."""
        return self.sql.locked(self.schema, key, name, params, conn=conn)

    def now(self) -> dt.datetime:
        return self._run("database_now", {})[0]["now"]

    # -- queues ---------------------------------------------------------------------------------

    def create_queue(self, name: str, *, conn: Any = None, **options: Any) -> None:
        """Create a queue if it does not exist (pg-boss's create_queue under its create-queue lock)."""
        names.validate_queue_name(name, allow_reserved=name == names.SEND_IT_QUEUE)
        merged = {**SEED_QUEUE_DEFAULTS, **options}
        node_options = _queue_options(merged)
        if "deadLetter" in node_options:
            names.validate_queue_name(node_options["deadLetter"])
        params = {"name": name, "options": outputs.to_json(node_options)}
        self._locked("create-queue", "create_queue", params, conn=conn)

    def get_queue(self, name: str) -> dict[str, Any] | None:
        rows = self._run("get_queue", {"name": name})
        return rows[0] if rows else None

    def enable_notify(self, name: str) -> bool:
        """Turn pg-boss's ``notify`` on for a queue (schema 32+), so Node's inserts into it NOTIFY
        (once each Node process has refreshed its queue cache, every 60 s by default). True when it
        was off; False when it was on already, the queue does not exist or the schema has no notify."""
        if not self.info.has("notify"):
            return False
        return bool(self._run("enable_queue_notify", {"name": names.validate_queue_name(name)}))

    def list_queues(self) -> list[dict[str, Any]]:
        return self._run("list_queues", {})

    def delete_queue(self, name: str) -> None:
        names.validate_queue_name(name)
        self._locked("delete-queue", "delete_queue", {"name": name})
        self._policies.pop(name, None)

    # -- sending --------------------------------------------------------------------------------

    def send(self, name: str, data: Any = None, *, conn: Any = None, **options: Any) -> str | None:
        """Insert one job. Returns its id, or None when a policy/singleton/throttle rule deduplicated it.
        ``singleton_next_slot=True`` is pg-boss's debounce (:meth:`send_next_slot`)."""
        if options.pop("singleton_next_slot", False):
            return self.send_next_slot(name, data, conn=conn, **options)
        ids = self.send_many(name, [{"data": data, **options}], conn=conn)
        return ids[0] if ids else None

    def send_many(self, name: str, jobs: Sequence[Mapping[str, Any]], *, conn: Any = None) -> list[str]:
        """Insert many jobs of one queue in one statement; each item is ``{"data": ..., **options}``."""
        names.validate_queue_name(name, allow_reserved=name == names.SEND_IT_QUEUE)
        rows = [_send_row(job) for job in jobs]
        if len(rows) == 1 and rows[0].keys() <= _SEND_JOB_COLUMNS:  # one plain job: a lighter statement
            params = {column: rows[0].get(column) for column in _SEND_JOB_COLUMNS}
            # None stays SQL NULL, as the recordset of send_jobs reads it (not JSON null).
            params["data"] = None if rows[0]["data"] is None else _data_json(rows[0]["data"])
            return self._insert(name, "send_job", params, 1, conn)
        return self._send_encoded(name, [_encoded(row) for row in rows], conn)

    def encode_job(self, job: Mapping[str, Any]) -> EncodedJob:
        """One ``{"data": ..., **options}`` item checked and serialised now, for :meth:`send_encoded`
        later: what a long batch holds while it is built is then one string per job."""
        return _encoded(_send_row(job))

    def send_encoded(self, name: str, jobs: Sequence[EncodedJob], *, conn: Any = None) -> list[str]:
        """:meth:`send_many` for jobs made by :meth:`encode_job`."""
        names.validate_queue_name(name, allow_reserved=name == names.SEND_IT_QUEUE)
        return self._send_encoded(name, jobs, conn)

    def _send_encoded(self, name: str, jobs: Sequence[EncodedJob], conn: Any) -> list[str]:
        if not jobs:
            return []
        if not self.info.has("group") and any(job.grouped for job in jobs):
            raise UnsupportedBySchema("send(group=...)", "pg-boss 12.6", self.info.version)
        # The job table's dead-letter key is checked only at commit (a raw foreign-key error then, and
        # in the caller's transaction not even here): ask first.
        for dead_letter in sorted({job.dead_letter for job in jobs if job.dead_letter is not None}):
            if not self._run("get_queue", {"name": dead_letter}, conn=conn):
                raise QueueNotFound(
                    f"dead letter queue {dead_letter!r} does not exist; create it first", queue=dead_letter
                )
        ids = self._insert(name, "send_jobs", {"jobs": _batch_text(job.text for job in jobs)}, 0, conn)
        if len(ids) < len(jobs) and any(job.debounce is not None for job in jobs):
            ids += self._send_next_slot(name, [job.debounce for job in jobs], ids, conn)
        return self._queue_checked(name, ids, len(jobs), conn)

    def _insert(self, name: str, statement: str, params: dict[str, Any], count: int, conn: Any) -> list[str]:
        """Run a send statement; ``count`` > 0: check the queue exists unless that many were inserted."""
        params.update(name=name, channel=self.channel)
        try:
            ids: list[str] = self._run(statement, params, conn=conn)[0]["ids"]
        except CheckViolation as exc:
            raise _check_violation(name, exc) from None
        return self._queue_checked(name, ids, count, conn) if count else ids

    def _queue_checked(self, name: str, ids: list[str], count: int, conn: Any) -> list[str]:
        # Asked on the caller's connection: a queue created earlier in their transaction counts.
        if len(ids) < count and not self._run("get_queue", {"name": name}, conn=conn):
            raise QueueNotFound(f"queue {name!r} does not exist; create it first", queue=name)
        return ids

    def _send_next_slot(
        self, name: str, debounced: Sequence[dict[str, Any] | None], ids: Sequence[str], conn: Any
    ) -> list[str]:
        """pg-boss's debounce (``singleton_next_slot``): a job whose throttle slot is taken goes into
        the next slot instead, starting when that slot begins. ``debounced`` holds the row of each
        such job (None for the others). Jobs without an id cannot be told apart from the inserted
        ones, so they are only retried when the whole batch was refused."""
        sent = set(ids)
        retry = [
            {
                **row,
                "singleton_offset": row["singleton_seconds"],
                "start_after_seconds": _debounce_delay(row["singleton_seconds"]),
            }
            for row in debounced
            if row is not None
            and row.get("singleton_seconds")
            and (row.get("id") not in sent if row.get("id") else not sent)
        ]
        for row in retry:
            row.pop("start_after_at", None)
        if not retry:
            return []
        params = {"jobs": _batch_text(_row_json(row) for row in retry), "name": name, "channel": self.channel}
        return list(self._run("send_jobs", params, conn=conn)[0]["ids"])

    # -- working --------------------------------------------------------------------------------

    def fetch(
        self,
        queue_names: Sequence[str],
        batch_size: int = 1,
        *,
        concurrency_limits: Mapping[str, int] | None = None,
        conn: Any = None,
        synchronous_commit: bool = True,
    ) -> list[FetchedJob]:
        """Claim up to ``batch_size`` runnable jobs across queues: state active, started_on/heartbeat_on now.

        ``concurrency_limits`` caps how many jobs of a queue may be active at once across every
        worker; fetchers of such queues serialise on an advisory lock so the count cannot race.
        ``synchronous_commit=False`` lets a consumer skip the WAL flush wait: losing this claim in a
        crash only means the job is fetched again.
        """
        if batch_size <= 0 or not queue_names:
            return []
        limits = {k: int(v) for k, v in (concurrency_limits or {}).items() if k in queue_names}
        statement, params = self._fetch_statement(queue_names, batch_size, limits, conn)
        try:
            with self.sql.transaction(conn, tuples=True, async_commit=not synchronous_commit) as tx:
                if limits:
                    tx.run("lock_concurrency_slots", self.concurrency_locks(sorted(limits)))
                rows = tx.rows(statement, params)
        except UniqueViolation:
            # Another fetcher claimed the same singleton/stately key first (job_i2/job_i3): like
            # pg-boss 12.38, this fetch finds nothing. A caller's transaction is theirs to handle.
            if conn is not None:
                raise
            return []
        return _fetched_jobs(rows)

    def concurrency_locks(self, queue_names: Sequence[str]) -> dict[str, Any]:
        """Parameters of ``lock_concurrency_slots``: the capped queues whose fetchers serialise."""
        return {"lock_prefix": f"{self.schema}.concurrency.", "names": list(queue_names)}

    def _fetch_statement(
        self, queue_names: Sequence[str], batch_size: int, limits: Mapping[str, int], conn: Any
    ) -> tuple[str, dict[str, Any]]:
        """The fetch as (statement name, parameters): the plain statement when no queue has a concurrency
        limit and every queue's policy allows it. ``conn`` reads policies not seen before."""
        params: dict[str, Any] = {"names": list(queue_names), "batch_size": batch_size}
        if not limits and self._plain_fetch(queue_names, conn):
            return "fetch_plain_jobs", self._params(params)
        return "fetch_jobs", self._params({**params, "limits": outputs.to_json(limits)})

    def _plain_fetch(self, queue_names: Sequence[str], conn: Any) -> bool:
        """Whether every queue's policy lets ``fetch_plain_jobs`` claim its jobs (pg-boss, too,
        chooses its fetch statement by the queue's cached policy). New queues are read once."""
        now = time.monotonic()
        known = self._policies
        missing = [q for q in queue_names if q not in known or now - known[q][1] > POLICY_CACHE_SECONDS]
        if missing:
            rows = self._run("get_queue_policies", {"names": missing}, conn=conn)
            for row in rows:
                known[row["name"]] = (row["policy"], now)
            if len(rows) < len(missing):
                return False  # a queue that does not exist (yet): the full statement finds nothing anyway
        return all(known[q][0] in PLAIN_FETCH_POLICIES for q in queue_names)

    def next_start_after(self, queue_names: Sequence[str]) -> dt.datetime | None:
        rows = self._run("next_start_after", {"names": list(queue_names)})
        return rows[0]["at"] if rows else None

    def complete(
        self,
        name: str,
        results: Iterable[tuple[str, Any, int | None]],
        *,
        conn: Any = None,
        synchronous_commit: bool = True,
        ignored: bool = False,
    ) -> list[str]:
        """Complete active jobs: ``(id, return value, retry_count fence or None)`` each.

        The value is stored in Node's shape. A job no longer active in that attempt (expired by a
        supervisor, cancelled, already settled) is left alone and missing from the returned ids.
        ``ignored``: Celery ignores these results; their envelope records it (they read PENDING).
        """
        items = [
            {"id": names.parse_job_id(i), "output": outputs.completion_output(v), "retry_count": rc}
            for i, v, rc in results
        ]
        if ignored:
            for item in items:
                item["ignored"] = True
        if not items:
            return []
        params = self._params({"name": name, "jobs": outputs.to_json(items)})
        with self.sql.transaction(conn, async_commit=not synchronous_commit) as tx:
            return [str(r["id"]) for r in tx.rows("complete_jobs", params)]

    def fail(
        self,
        name: str,
        ids: Sequence[str],
        output: Any,
        *,
        attempts: Mapping[str, int] | None = None,
        retry: bool = True,
        conn: Any = None,
    ) -> list[dict[str, Any]]:
        """Fail jobs: retry with pg-boss's backoff while retries remain, else ``failed`` + dead letter.

        ``output`` is stored as given (use :func:`transport.outputs.error_output` for exceptions).
        ``attempts`` fences each id on the retry_count it was fetched with. ``retry=False`` fails for
        good even with retries left (dead letter still applies). Returns ``{id, state, start_after,
        retry_count}`` of every job that moved.
        """
        fence = [{"id": names.parse_job_id(k), "retry_count": v} for k, v in (attempts or {}).items()]
        params = {
            "name": name,
            "ids": [names.parse_job_id(i) for i in ids],
            "attempts": outputs.to_json(fence),
            "output": outputs.to_json(output),
            "retry": retry,
        }
        rows = self._run("fail_jobs", params, conn=conn)
        return [{**r, "id": str(r["id"]), "state": str(r["state"])} for r in rows]

    def retry_in_place(
        self,
        name: str,
        job_id: str,
        *,
        start_after: dt.datetime,
        data: Any,
        output: Any = None,
        retry_count: int | None = None,
    ) -> bool:
        """Move an active job back to ``retry`` at ``start_after`` with new ``data`` (Celery's retry()).

        ``retry_count`` fences it on the attempt that asks: a late request from an attempt that was
        expired meanwhile must not move the attempt running now. The retry Celery asked for is an
        allowed attempt: ``retry_limit`` grows to at least the attempt it starts, so the one budget
        (``retry_count`` against ``retry_limit``) still bounds what the supervisor retries after it.
        """
        rows = self._run(
            "retry_in_place",
            {
                "name": name,
                "id": names.parse_job_id(job_id),
                "start_after": start_after,
                "data": outputs.to_json(data),
                "output": outputs.to_json(output),
                "retry_count": retry_count,
            },
        )
        return bool(rows)

    def renew_replaced(self, name: str, job_id: str, *, start_after: dt.datetime, data: Any) -> bool:
        """Run a replaced task's id again: the completed row of a task Celery replaced (output
        :data:`outputs.REPLACED_OUTPUT`) takes the data of the replacement's final task, which
        inherits the id. Any other row is left alone (False)."""
        rows = self._run(
            "renew_replaced",
            {
                "name": name,
                "id": names.parse_job_id(job_id),
                "start_after": start_after,
                "data": outputs.to_json(data),
            },
        )
        return bool(rows)

    def set_retry_output(self, name: str, job_id: str, output: Any, *, retry_count: int | None) -> bool:
        """Store why a job waiting in ``retry`` is retried (Celery's ``self.retry(exc=...)``), fenced
        on the attempt that asked; a job fetched again meanwhile is left alone."""
        params = {
            "name": name,
            "id": names.parse_job_id(job_id),
            "output": outputs.to_json(output),
            "retry_count": retry_count,
        }
        return bool(self._run("set_retry_output", params))

    def list_scheduled(self, queue_names: Sequence[str], limit: int = 1000) -> list[dict[str, Any]]:
        """Jobs of some queues waiting for a later ``start_after`` (Celery's ETA tasks), soonest first."""
        if not queue_names:
            return []
        rows = self._run("list_scheduled_jobs", {"names": list(queue_names), "limit": limit})
        return [_job_row(r) for r in rows]

    def touch(self, name: str, ids: Sequence[str]) -> list[str]:
        """Heartbeat: refresh ``heartbeat_on``; returns the ids still active."""
        rows = self._run("touch_jobs", {"name": name, "ids": [names.parse_job_id(i) for i in ids]})
        return [str(r["id"]) for r in rows]

    # -- operator actions -----------------------------------------------------------------------

    def cancel(self, name: str, ids: Sequence[str], *, conn: Any = None) -> list[str]:
        return self._ids("cancel_jobs", name, ids, conn=conn)

    def resume(self, name: str, ids: Sequence[str]) -> list[str]:
        return self._ids("resume_jobs", name, ids)

    def retry(self, name: str, ids: Sequence[str]) -> list[str]:
        """Give failed jobs another attempt (pg-boss ``retry()``)."""
        return self._ids("retry_jobs", name, ids)

    def restore(self, name: str, ids: Sequence[str], *, retry_count: int | None = None) -> list[str]:
        """Return active jobs to ``created`` untouched, as if never fetched (warm shutdown)."""
        rows = self._run(
            "restore_jobs",
            {"name": name, "ids": [names.parse_job_id(i) for i in ids], "retry_count": retry_count},
        )
        return [str(r["id"]) for r in rows]

    def delete(self, name: str, ids: Sequence[str]) -> list[str]:
        return self._ids("delete_jobs", name, ids)

    def _ids(self, statement: str, name: str, ids: Sequence[str], *, conn: Any = None) -> list[str]:
        params = {"name": name, "ids": [names.parse_job_id(i) for i in ids]}
        return [str(r["id"]) for r in self._run(statement, params, conn=conn)]

    # -- reading --------------------------------------------------------------------------------

    def get_job(self, job_id: str, *, conn: Any = None) -> dict[str, Any] | None:
        rows = self._run("get_job", {"id": names.parse_job_id(job_id)}, conn=conn)
        return _job_row(rows[0]) if rows else None

    def get_jobs(self, job_ids: Sequence[str]) -> list[dict[str, Any]]:
        if not job_ids:
            return []
        rows = self._run("get_jobs", {"ids": [names.parse_job_id(i) for i in job_ids]})
        return [_job_row(r) for r in rows]

    def queue_size(self, name: str) -> int:
        return int(self._run("count_ready_jobs", {"name": name})[0]["n"])

    def purge(self, name: str) -> int:
        """Delete a queue's jobs that have not started; returns how many."""
        return self.sql.run("purge_queued_jobs", {"name": name})

    def counts(self, name: str | None = None) -> list[dict[str, Any]]:
        return self._run("count_jobs_by_state", {"name": name})

    def list_jobs(self, *, state: str | None = None, name: str | None = None, limit: int = 20) -> list[dict]:
        rows = self._run("list_jobs", {"state": state, "name": name, "limit": limit})
        return [_job_row(r) for r in rows]

    # -- supervision (pg-boss's monitor and maintenance passes) ----------------------------------

    def claim_for_monitor(self, queue_names: Sequence[str], interval_seconds: float) -> list[str]:
        rows = self._run(
            "claim_queues_for_monitor", {"names": list(queue_names), "seconds": interval_seconds}
        )
        return [r["name"] for r in rows]

    def claim_for_deletion(self, queue_names: Sequence[str], interval_seconds: float) -> list[str]:
        rows = self._run(
            "claim_queues_for_deletion", {"names": list(queue_names), "seconds": interval_seconds}
        )
        return [r["name"] for r in rows]

    def expire(self, queue_names: Sequence[str]) -> int:
        """Fail active jobs past expire_seconds ("job timed out"), batch by batch, under Node's lock."""
        return self._sweep("failJobsByTimeout", "expire_jobs", queue_names, outputs.TIMED_OUT, EXPIRY_BATCH)

    def fail_lost_heartbeats(self, queue_names: Sequence[str]) -> int:
        return self._sweep(
            "failJobsByHeartbeat", "fail_lost_heartbeats", queue_names, outputs.HEARTBEAT_LOST, EXPIRY_BATCH
        )

    def delete_finished(self, queue_names: Sequence[str]) -> int:
        return self._sweep("deletion", "delete_finished_jobs", queue_names, None, DELETION_BATCH)

    def claim_flow_pass(self, interval_seconds: float) -> bool:
        """pg-boss's flow-resolver claim (``version.flow_on``): True when this caller owns the pass."""
        return bool(self._run("claim_flow_pass", {"seconds": interval_seconds}))

    def resolve_flows(self, queue_names: Sequence[str]) -> tuple[int, int]:
        """Resolve flows as pg-boss's background resolver does: each completed parent still marked
        ``blocking`` takes one dependency off each child and stops blocking; a child left with none is
        unblocked and its queue woken. Batch by batch per table; returns (parents, children unblocked)."""
        parents = unblocked = 0
        for _table, queues in self._queues_by_table(queue_names).items():
            while True:
                [row] = self._run("resolve_flows", {"names": queues, "limit": FLOW_BATCH})
                parents, unblocked = parents + row["parents"], unblocked + row["unblocked"]
                if row["parents"] < FLOW_BATCH:
                    break
        return parents, unblocked

    def _sweep(self, lock: str, statement: str, queue_names: Sequence[str], output: Any, batch: int) -> int:
        total = 0
        for table, queues in self._queues_by_table(queue_names).items():
            while True:
                params = self._params({"names": queues, "limit": batch, "output": outputs.to_json(output)})
                with self.sql.transaction() as tx:
                    tx.run("advisory_lock", {"schema": self.schema, "key": table + lock})
                    moved = tx.run(statement, params)
                total += moved
                if moved < batch:
                    break
        return total

    def _queues_by_table(self, queue_names: Sequence[str]) -> dict[str, list[str]]:
        grouped: dict[str, list[str]] = {}
        for row in self._run("get_queues", {"names": list(queue_names)}):
            grouped.setdefault(row["table_name"], []).append(row["name"])
        return grouped


def _check_violation(name: str, exc: CheckViolation) -> InvalidOption:
    """A job the table's CHECK constraints refuse, as pg-boss words the refusal."""
    if "key_strict_fifo" in (exc.constraint or ""):
        return InvalidOption(f"queue {name!r}: key_strict_fifo queues require a singleton_key")
    return InvalidOption(f"queue {name!r} refused the job: {exc.message_primary}")


def _queue_options(options: Mapping[str, Any]) -> dict[str, Any]:
    unknown = set(options) - set(QUEUE_OPTION_KEYS)
    if unknown:
        raise InvalidOption(f"unknown queue option(s): {', '.join(sorted(unknown))}")
    policy = options.get("policy", "standard")
    if policy not in POLICIES:
        raise InvalidOption(f"unknown queue policy {policy!r}; one of {', '.join(sorted(POLICIES))}")
    check_job_options(options)
    return {QUEUE_OPTION_KEYS[k]: v for k, v in options.items() if v is not None}


#: Send options copied as they are into the send_jobs recordset: option name -> column.
_SEND_COLUMNS = (
    ("singleton_key", "singleton_key"),
    ("singleton_seconds", "singleton_seconds"),
    ("singleton_offset", "singleton_offset"),
    ("expire_in_seconds", "expire_seconds"),
    ("delete_after_seconds", "deletion_seconds"),
    ("retention_seconds", "retention_seconds"),
    ("retry_limit", "retry_limit"),
    ("retry_delay", "retry_delay"),
    ("retry_backoff", "retry_backoff"),
    ("retry_delay_max", "retry_delay_max"),
    ("dead_letter", "dead_letter"),
    ("heartbeat_seconds", "heartbeat_seconds"),
)


def _send_row(job: Mapping[str, Any]) -> dict[str, Any]:
    """One job as a row of the send_jobs recordset, options checked; unset columns are left out (the
    recordset reads a missing key as NULL, so the batch's JSON stays small). The data is checked as
    JSON when the row is serialised (:func:`_row_json`)."""
    row: dict[str, Any] = {"data": job.get("data")}
    unknown = job.keys() - _SEND_ROW_KEYS
    if unknown:
        raise InvalidOption(f"unknown send option(s): {', '.join(sorted(unknown))}")
    # An option set to None is an option not given (every check below reads it so).
    options = {k: v for k, v in job.items() if v is not None and k != "data"}
    if not options:
        return row
    job_id = options.get("id")
    if job_id:
        row["id"] = names.parse_job_id(job_id)
    priority = options.get("priority")
    if priority is not None:
        if not isinstance(priority, int) or isinstance(priority, bool) or abs(priority) > INT4_MAX:
            raise InvalidOption(f"priority must be an integer (a PostgreSQL integer), not {priority!r}")
        row["priority"] = priority
    if options.keys() <= _ID_AND_PRIORITY:  # a Celery publish: nothing else to check
        return row
    check_job_options(options)
    for option, column in _SEND_COLUMNS:
        value = options.get(option)
        if value is not None:
            row[column] = value
    if options.get("group") is not None:
        row.update(group_columns(options["group"]))
    for option in ("singleton_slot", "keep_until"):
        if options.get(option) is not None:
            row[option] = iso(options[option])
    if options.get("singleton_next_slot"):
        row["singleton_next_slot"] = True  # taken out again when the row is encoded
    start_after = options.get("start_after")
    if isinstance(start_after, dt.datetime | str):
        row["start_after_at"] = iso(start_after)
    elif isinstance(start_after, int | float) and not isinstance(start_after, bool):
        if not abs(start_after) <= START_AFTER_MAX_SECONDS:  # also NaN
            raise InvalidOption(f"start_after must be within 1e10 seconds, not {start_after!r}")
        row["start_after_seconds"] = float(start_after)
    elif start_after is not None:
        raise InvalidOption(f"start_after must be a datetime, ISO string or seconds, not {start_after!r}")
    return row


#: What a send_jobs item may hold: its data and the send options.
_SEND_ROW_KEYS = SEND_OPTION_KEYS | {"data"}
_ID_AND_PRIORITY = frozenset({"id", "priority"})


#: The columns of a row that the single-job statement send_job takes.
_SEND_JOB_COLUMNS = frozenset({"data", "id", "priority", "start_after_at", "keep_until"})


def _debounce_delay(singleton_seconds: int) -> int:
    """Seconds until a debounced job may start: the rest of the current slot, plus one (pg-boss)."""
    now = time.time()
    slot = math.floor(now / singleton_seconds) * singleton_seconds
    delay = (singleton_seconds - math.floor(now - slot)) or 1
    return delay + 1 if singleton_seconds > 1 else delay


def _data_json(data: Any) -> str:
    """One job's data as JSON text, or InvalidPayload saying why it cannot be stored."""
    try:
        return outputs.to_json(data)
    except (TypeError, ValueError) as exc:
        raise InvalidPayload(f"job data must be JSON: {exc}") from None


def _row_json(row: Mapping[str, Any]) -> str:
    """One send_jobs row as JSON text; data or an option that is not storable JSON is named."""
    try:
        return outputs.to_json(row)
    except (TypeError, ValueError):
        pass
    _data_json(row.get("data"))  # serialise again, the data alone, to say which part is bad
    try:
        outputs.to_json({k: v for k, v in row.items() if k != "data"})
    except (TypeError, ValueError) as exc:
        raise InvalidOption(f"send options must be JSON values: {exc}") from None
    raise AssertionError("unreachable: the row failed to serialise but neither part does")


def _batch_text(rows: Iterable[str]) -> str:
    """The send_jobs recordset: its rows' JSON texts as one JSON array."""
    return "[" + ",".join(rows) + "]"


class EncodedJob(NamedTuple):
    """A job for :meth:`JobManager.send_encoded`: its send_jobs row as JSON text, checked, and what
    the send still reads of it."""

    text: str
    dead_letter: str | None
    grouped: bool
    #: The row of a debounced job (``singleton_next_slot``), whose retry re-reads it; else None.
    debounce: dict[str, Any] | None


def _encoded(row: dict[str, Any]) -> EncodedJob:
    debounce = row.pop("singleton_next_slot", None) is True
    return EncodedJob(_row_json(row), row.get("dead_letter"), "group_id" in row, row if debounce else None)
