"""What the dashboard's pages show, read through :class:`transport.monitor.Monitor` (all SQL lives in
``transport/sql/dashboard.sql``) and shaped for the templates. Blocking calls: views run them in the
threadpool."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from transport import cron
from transport.manager import JobManager
from transport.monitor import Monitor

#: pg-boss's job states, in its own order (the job_state enum).
STATES = ("created", "retry", "active", "completed", "cancelled", "failed")
#: States a job can still leave by itself.
PENDING = frozenset({"created", "retry", "active"})
PAGE_SIZE = 50


def counts_table(manager: JobManager) -> dict[str, Any]:
    """Queues with their job counts by state (bounded, see Monitor.queue_counts) and totals."""
    monitor = Monitor(manager)
    queues = monitor.queues()
    counts = monitor.queue_counts()
    rows = []
    totals = dict.fromkeys(STATES, 0)
    capped = dict.fromkeys(STATES, False)  # a total with a capped count in it is a lower bound
    for queue in queues:
        found = counts.get(queue["name"]) or {"counts": {}, "capped": {}}
        by_state = {s: found["counts"].get(s, 0) for s in STATES}
        cut = {s: bool(found["capped"].get(s)) for s in STATES}
        for state in STATES:
            totals[state] += by_state[state]
            capped[state] = capped[state] or cut[state]
        rows.append({**queue, "counts": by_state, "capped": cut})
    return {"queues": rows, "totals": totals, "capped": capped, "cap": Monitor.COUNT_CAP}


def throughput_series(manager: JobManager, name: str | None, minutes: int = 60) -> dict[str, Any]:
    """Per-minute series over the last ``minutes`` for Chart.js: finished jobs (completed, failed)
    and mean wait and run seconds, every queue (or one) together."""
    rows = Monitor(manager).throughput(name=name, minutes=minutes, bucket=60)
    now = manager.now().astimezone(dt.UTC).replace(second=0, microsecond=0)
    buckets = [now - dt.timedelta(minutes=m) for m in range(minutes - 1, -1, -1)]
    done = {b: [0, 0, 0.0, 0.0] for b in buckets}  # completed, failed, wait*n, run*n
    for row in rows:
        bucket = row["bucket"].astimezone(dt.UTC)
        if bucket not in done:
            continue
        n = row["completed"] + row["failed"]
        acc = done[bucket]
        acc[0] += row["completed"]
        acc[1] += row["failed"]
        acc[2] += (row["wait_seconds"] or 0.0) * n
        acc[3] += (row["run_seconds"] or 0.0) * n

    def mean(total: float, n: int) -> float | None:
        return round(total / n, 3) if n else None

    return {
        "labels": [b.strftime("%H:%M") for b in buckets],
        "completed": [done[b][0] for b in buckets],
        "failed": [done[b][1] for b in buckets],
        "wait": [mean(done[b][2], done[b][0] + done[b][1]) for b in buckets],
        "run": [mean(done[b][3], done[b][0] + done[b][1]) for b in buckets],
    }


@dataclass(frozen=True)
class JobFilter:
    queue: str | None = None
    state: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    text: str | None = None
    before: tuple[dt.datetime, str] | None = None

    def query(self, **changes: Any) -> dict[str, str]:
        """The filter as query parameters (for links), with ``changes`` applied."""
        values = {
            "queue": self.queue,
            "state": self.state,
            "since": _local_input(self.since),
            "until": _local_input(self.until),
            "q": self.text,
        }
        values.update(changes)
        return {k: v for k, v in values.items() if v}


def _local_input(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M") if value else None


def parse_time(value: str | None) -> dt.datetime | None:
    """A ``datetime-local`` input (read as UTC) or an ISO 8601 time; None when blank."""
    if not value or not value.strip():
        return None
    parsed = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def parse_cursor(value: str | None) -> tuple[dt.datetime, str] | None:
    """``"<created_on ISO>_<job id>"``, as :func:`cursor_of` writes it."""
    if not value:
        return None
    when, _, job_id = value.rpartition("_")
    from transport.names import parse_job_id

    return parse_time(when) or dt.datetime.now(dt.UTC), parse_job_id(job_id)


def cursor_of(row: Mapping[str, Any]) -> str:
    return f"{row['created_on'].isoformat()}_{row['id']}"


def jobs_page(manager: JobManager, where: JobFilter, limit: int = PAGE_SIZE) -> dict[str, Any]:
    rows = Monitor(manager).jobs_page(
        name=where.queue,
        state=where.state,
        since=where.since,
        until=where.until,
        text=where.text,
        before=where.before,
        limit=limit + 1,  # one more tells whether there is a next page
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return {"jobs": rows, "next": cursor_of(rows[-1]) if more and rows else None}


def job_detail(manager: JobManager, job_id: str) -> dict[str, Any] | None:
    """One job with its data, output, error and traceback, attempts and timeline."""
    row = manager.get_job(job_id)
    if row is None:
        return None
    data = row.get("data")
    envelope = None
    if isinstance(data, dict) and "__celery" in data:
        envelope = data["__celery"]
        data = {k: v for k, v in data.items() if k != "__celery"}
    output = row.get("output")
    error = _error(output) if row["state"] in ("failed", "retry") else None
    return {
        "row": row,
        "task": (envelope or {}).get("task") if isinstance(envelope, dict) else None,
        "data": _pretty(data),
        "envelope": _pretty(envelope) if envelope is not None else None,
        "output": _pretty(output) if output is not None else None,
        "error": error,
        "attempt": attempts_made(row),
        "attempts_allowed": row["retry_limit"] + 1,
        "timeline": timeline(row),
        "actions": actions(row["state"]),
    }


def actions(state: str) -> list[str]:
    """What an operator may do to a job in ``state`` (the manager decides, this only offers)."""
    offered = []
    if state == "failed":
        offered.append("retry")
    if state in PENDING:
        offered.append("cancel")
    offered.append("delete")
    return offered


def _error(output: Any) -> dict[str, Any] | None:
    """``{name, message, stack}`` of a failure's output, as Celery's and Node's workers store it."""
    if isinstance(output, dict) and set(output) == {"value"}:
        output = output["value"]
    if not isinstance(output, dict):
        return {"name": None, "message": json.dumps(output, default=str), "stack": None}
    message = output.get("message")
    return {
        "name": output.get("name"),
        "message": message if isinstance(message, str) else json.dumps(output, default=str)[:500],
        "stack": output.get("stack") if isinstance(output.get("stack"), str) else None,
    }


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str, sort_keys=True)


def attempts_made(row: Mapping[str, Any]) -> int:
    """Attempts started so far: pg-boss counts re-runs in retry_count, bumped when a retry starts."""
    return row["retry_count"] + 1 if row.get("started_on") else 0


def timeline(row: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The job's life as pg-boss records it: created, earlier failed attempts (pg-boss keeps their
    count, not their times), the latest attempt, the next retry or the end, and its deletion."""
    state = row["state"]
    made = attempts_made(row)
    finished = state in ("completed", "failed", "cancelled")

    def event(label: str, at: Any, note: str | None = None) -> dict[str, Any]:
        return {"label": label, "at": at, "note": note}

    events = [event("created", row["created_on"])]
    if not made and row["start_after"] > row["created_on"] + dt.timedelta(seconds=1):
        events.append(event("runs from", row["start_after"], "deferred"))
    if made > 1:
        earlier = made - 1
        events.append(event(f"{earlier} earlier attempt{'s' if earlier > 1 else ''} failed", None, "retried"))
    if made:
        events.append(event(f"attempt {made} started", row["started_on"]))
    if state == "retry":
        if made:
            events.append(event(f"attempt {made} failed", None))
        events.append(event(f"attempt {made + 1} due", row["start_after"], f"of {row['retry_limit'] + 1}"))
    if state == "active" and row.get("heartbeat_on"):
        events.append(event("last heartbeat", row["heartbeat_on"]))
    if finished and row.get("completed_on"):
        events.append(event(state, row["completed_on"]))
        if row.get("deletion_seconds"):
            deleted = row["completed_on"] + dt.timedelta(seconds=row["deletion_seconds"])
            events.append(event("deleted after", deleted, "maintenance"))
    elif not finished:
        events.append(event("kept until", row["keep_until"], "expires unless started"))
    return events


def schedules(manager: JobManager) -> list[dict[str, Any]]:
    """Every schedule with its next firing (from its cron or rrule) and its last one (the job it sent
    last, on schema 41+ where pg-boss records it)."""
    monitor = Monitor(manager)
    rows = monitor.schedules()
    last_jobs = monitor.jobs_by_id([r["last_job_id"] for r in rows if r.get("last_job_id")])
    now = manager.now()
    out = []
    for row in rows:
        try:
            upcoming = cron.next_after(
                row["cron"], row.get("kind") or "cron", row.get("timezone") or "UTC", now
            )
            previous = cron.latest_before(
                row["cron"], row.get("kind") or "cron", row.get("timezone") or "UTC", now
            )
            problem = None
        except Exception as exc:  # a schedule Node wrote that this side cannot read: show why
            upcoming = previous = None
            problem = f"{type(exc).__name__}: {exc}"
        out.append(
            {
                **row,
                "next": upcoming,
                "previous": previous,
                "problem": problem,
                "last_job": last_jobs.get(row["last_job_id"]) if row.get("last_job_id") else None,
                "data_text": json.dumps(row.get("data"), default=str) if row.get("data") is not None else "",
            }
        )
    return out


def node_instances(manager: JobManager) -> list[dict[str, Any]]:
    return Monitor(manager).node_instances()


def celery_workers(timeout: float = 1.0) -> dict[str, Any]:
    """Celery workers that answer a broadcast within ``timeout``: their consumed queues and the
    tasks they run now (remote control over the pg-boss transport)."""
    from zeke.app import app

    try:
        inspect = app.control.inspect(timeout=timeout)
        queues = inspect.active_queues() or {}
        active = inspect.active() or {}
    except Exception as exc:  # the broker is away: the page says so instead of failing
        return {"workers": [], "error": f"{type(exc).__name__}: {exc}"}
    workers = []
    for name in sorted(set(queues) | set(active)):
        workers.append(
            {
                "name": name,
                "queues": sorted(q.get("name", "?") for q in queues.get(name) or ()),
                "active": [
                    {
                        "id": t.get("id"),
                        "name": t.get("name"),
                        "queue": (t.get("delivery_info") or {}).get("routing_key"),
                        "started": t.get("time_start"),
                    }
                    for t in active.get(name) or ()
                ],
            }
        )
    return {"workers": workers, "error": None}
