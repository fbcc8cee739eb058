"""pg-boss cron, as Node pg-boss 12.38's timekeeper runs it, so Python beats and Node instances can
share one ``pgboss.schedule`` table and send each occurrence exactly once between them.

A pass goes like this, as Node pg-boss 12's timekeeper does it:

1. Claim the interval: ``version.cron_on`` moves for only one instance per interval.
2. For every schedule row, find the occurrences in the due window ``(now - 60 s, now]`` (plus, with
   ``missed: 'once'``, the latest one in the gap since the previous pass), evaluated in the row's
   time zone against the *database* clock.
3. Insert one ``__pgboss__send-it`` job per occurrence, keyed ``<name>__<key>`` and filed in the
   60-second throttle slot the occurrence falls in. The throttle unique index turns every other
   insert of the same occurrence, from any Python or Node instance, into a no-op.

Separately, ``__pgboss__send-it`` jobs are worked: each sends the schedule's job to its queue. Here
the fetch, the send and the completion of the send-it job commit together, so a crash can neither
forward twice nor strand a fetched send-it job until its expiry.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from dateutil import rrule

from transport import cronwalk, names, outputs
from transport.db import CONNECTION_ERRORS
from transport.exceptions import InvalidOption
from transport.manager import JobManager

logger = logging.getLogger("transport.cron")

#: How long an occurrence stays due, and the width of the throttle slot it is filed in. One value,
#: as in pg-boss: a wider window would let two slots claim one occurrence.
OCCURRENCE_WINDOW = dt.timedelta(seconds=60)
#: Node's defaults: cronMonitorIntervalSeconds and cronWorkerIntervalSeconds.
DEFAULT_MONITOR_INTERVAL = 30.0
DEFAULT_WORKER_INTERVAL = 5.0
SEND_IT_BATCH = 50
MISSED_POLICIES = ("skip", "once")
#: Node's createQueue(SEND_IT) passes only the policy, so the queue gets pg-boss's SQL defaults.
SEND_IT_QUEUE_OPTIONS: dict[str, Any] = {
    "policy": "standard",
    "retry_limit": 2,
    "retry_delay": 0,
    "retry_backoff": False,
    "expire_in_seconds": 900,
    "delete_after_seconds": 7 * 24 * 3600,
    "notify": False,
}

# Node send options -> JobManager.send keyword, with a unit factor for the *Minutes/Hours/Days forms.
_SEND_OPTIONS: dict[str, tuple[str, int]] = {
    "id": ("id", 0),
    "priority": ("priority", 0),
    "startAfter": ("start_after", 0),
    "singletonKey": ("singleton_key", 0),
    "singletonSeconds": ("singleton_seconds", 1),
    "singletonMinutes": ("singleton_seconds", 60),
    "singletonHours": ("singleton_seconds", 3600),
    "expireInSeconds": ("expire_in_seconds", 1),
    "expireInMinutes": ("expire_in_seconds", 60),
    "expireInHours": ("expire_in_seconds", 3600),
    "retentionSeconds": ("retention_seconds", 1),
    "retentionMinutes": ("retention_seconds", 60),
    "retentionHours": ("retention_seconds", 3600),
    "retentionDays": ("retention_seconds", 86400),
    "deleteAfterSeconds": ("delete_after_seconds", 1),
    "deleteAfterMinutes": ("delete_after_seconds", 60),
    "deleteAfterHours": ("delete_after_seconds", 3600),
    "deleteAfterDays": ("delete_after_seconds", 86400),
    "retryLimit": ("retry_limit", 0),
    "retryDelay": ("retry_delay", 0),
    "retryBackoff": ("retry_backoff", 0),
    "retryDelayMax": ("retry_delay_max", 0),
    "deadLetter": ("dead_letter", 0),
    "heartbeatSeconds": ("heartbeat_seconds", 0),
    "keepUntil": ("keep_until", 0),
}
#: Options that describe the schedule, not the job it sends.
_SCHEDULE_ONLY = frozenset({"tz", "key", "missed", "db"})


@dataclass(frozen=True, slots=True)
class Schedule:
    """One row of ``pgboss.schedule``."""

    name: str
    key: str
    kind: str
    cron: str
    timezone: str
    data: Any
    options: dict[str, Any]
    created_on: dt.datetime | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Schedule:
        return cls(
            name=row["name"],
            key=row["key"] or "",
            kind=row.get("kind") or "cron",
            cron=row["cron"],
            timezone=row.get("timezone") or "UTC",
            data=row.get("data"),
            options=dict(row.get("options") or {}),
            created_on=row.get("created_on"),
        )

    @property
    def missed(self) -> str:
        """The catch-up policy; anything pg-boss would not recognise reads as ``skip``, as in Node."""
        value = self.options.get("missed")
        return value if value in MISSED_POLICIES else "skip"


@dataclass(frozen=True, slots=True)
class Claim:
    """The answer of the cron claim: whether this instance owns the interval, and the clock it read."""

    claimed: bool
    now: dt.datetime
    prior_cron_on: dt.datetime | None
    elapsed: float | None


# -- occurrences ----------------------------------------------------------------------------------


def occurrence_key(name: str, key: str, *, escape: bool = True) -> str:
    """The singleton key of a forwarded occurrence. pg-boss 12.38 escapes the name's underscores so
    ('report_', 'daily') and ('report', '_daily') cannot collide; older releases joined them raw."""
    return (name.replace("_", "\\_") if escape else name) + "__" + key


def throttle_slot(instant: dt.datetime) -> str:
    """The 60 s slot an instant falls in, as the UTC wall-time text pg-boss files it under."""
    epoch = instant.timestamp()
    width = OCCURRENCE_WINDOW.total_seconds()
    start = dt.datetime.fromtimestamp(math.floor(epoch / width) * width, dt.UTC)
    return start.strftime("%Y-%m-%d %H:%M:%S")


def is_rrule(expression: str) -> bool:
    """RRULE text, not cron: an iCalendar property or a FREQ part, which no cron field can contain."""
    return any(ch in expression for ch in "=;:")


def validate(expression: str, tz: str = "UTC") -> str:
    """The kind of a valid expression (``cron`` or ``rrule``); InvalidOption otherwise."""
    if not isinstance(expression, str) or not expression.strip():
        raise InvalidOption("cron expression must be a non-empty string")
    zone(tz)
    kind = "rrule" if is_rrule(expression) else "cron"
    try:
        latest_before(expression, kind, tz, dt.datetime.now(dt.UTC))
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidOption(f"invalid {kind} expression {expression!r}: {exc}") from None
    return kind


def zone(tz: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(tz or "UTC")
    except (ValueError, KeyError) as exc:
        raise InvalidOption(f"unknown time zone {tz!r}") from exc


def latest_before(expression: str, kind: str, tz: str, until: dt.datetime) -> dt.datetime | None:
    """The latest occurrence at or before ``until`` (inclusive, as Node reads it: prev() of until+1ms)."""
    local = until.astimezone(zone(tz))
    if kind == "rrule":
        found = _rrule(expression, local).before(local.replace(tzinfo=None), inc=True)
        return _from_local(found, local)
    return cronwalk.latest_before(expression, zone(tz), until.astimezone(dt.UTC))


def next_after(expression: str, kind: str, tz: str, after: dt.datetime) -> dt.datetime | None:
    """The first occurrence strictly after ``after``, in UTC (None when a finite rule has ended)."""
    local = after.astimezone(zone(tz))
    if kind == "rrule":
        found = _rrule(expression, local).after(local.replace(tzinfo=None), inc=False)
        return _from_local(found, local)
    return cronwalk.next_after(expression, zone(tz), after.astimezone(dt.UTC))


def _from_local(found: dt.datetime | None, local: dt.datetime) -> dt.datetime | None:
    if found is None:
        return None
    if found.tzinfo is None:
        found = found.replace(tzinfo=local.tzinfo)
    return found.astimezone(dt.UTC)


_FINE_FREQUENCIES = {"HOURLY": 3600, "MINUTELY": 60, "SECONDLY": 1}


def _rrule(expression: str, local: dt.datetime) -> Any:
    """The dateutil rule for an RRULE text, evaluated in wall time of the schedule's zone.

    pg-boss anchors a rule without DTSTART at 1970-01-01 00:00 in the schedule's zone. dateutil
    walks from DTSTART, which is cheap for daily and coarser rules but takes seconds for a minutely
    one; those are walked from a later anchor a whole number of INTERVALs on, which keeps the phase
    (wall-time arithmetic, as dateutil's own).
    """
    text = expression.strip()
    if "DTSTART" not in text.upper():
        text = "DTSTART:19700101T000000\n" + (text if ":" in text else "RRULE:" + text)
    rule = rrule.rrulestr(text)
    parts = dict(p.split("=", 1) for p in re.findall(r"[A-Z]+=[^;\s]+", text.upper()))
    unit = _FINE_FREQUENCIES.get(parts.get("FREQ", ""))
    if isinstance(rule, rrule.rrule) and unit and "COUNT" not in parts:
        start = rule._dtstart  # noqa: SLF001  (dateutil has no public accessor)
        step = unit * int(parts.get("INTERVAL", "1"))
        anchor = local.replace(tzinfo=None) - dt.timedelta(days=2)
        steps = math.floor((anchor - start.replace(tzinfo=None)).total_seconds() / step)
        if steps > 0:
            rule = rule.replace(dtstart=start + dt.timedelta(seconds=steps * step))
    return rule


def due_slots(schedule: Schedule, now: dt.datetime, last_pass: dt.datetime | None) -> list[str]:
    """The throttle slots a pass at ``now`` owes ``schedule`` a job for (pg-boss 12.38 semantics)."""
    window_start = now - OCCURRENCE_WINDOW
    slots: list[str] = []
    latest = latest_before(schedule.cron, schedule.kind, schedule.timezone, now)
    if schedule.missed == "once" and last_pass is not None:
        # The most recent occurrence in the gap no pass covered: after the previous pass (and after
        # the row existed), up to where the due window opens.
        since = max(last_pass, schedule.created_on or last_pass)
        if since < window_start:
            missed = latest_before(schedule.cron, schedule.kind, schedule.timezone, window_start)
            if missed is not None and missed > since:
                slots.append(throttle_slot(missed))
    if latest is not None and latest > window_start and throttle_slot(latest) not in slots:
        slots.append(throttle_slot(latest))
    return slots


def send_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """A schedule's Node send options as :meth:`JobManager.send` keywords (unknown ones are dropped)."""
    converted: dict[str, Any] = {}
    for name, value in options.items():
        if name in _SCHEDULE_ONLY or value is None:
            continue
        if name not in _SEND_OPTIONS:
            logger.debug("cron: ignoring send option %s the Python sender does not support", name)
            continue
        target, factor = _SEND_OPTIONS[name]
        if name == "startAfter" and isinstance(value, str):
            try:
                value = float(value)  # Node reads '30' as 30 seconds
            except ValueError:
                pass  # an ISO date-time, which the manager parses
        elif factor:
            value = int(value * factor)
        converted[target] = value
    return converted


# -- the timekeeper -------------------------------------------------------------------------------


class Timekeeper:
    """Runs cron passes and forwards ``__pgboss__send-it`` jobs for one pg-boss schema."""

    def __init__(
        self,
        manager: JobManager,
        *,
        monitor_interval: float = DEFAULT_MONITOR_INTERVAL,
        send_it_batch: int = SEND_IT_BATCH,
    ) -> None:
        self.manager = manager
        self.monitor_interval = monitor_interval
        self.send_it_batch = send_it_batch
        # Only (name, key, cron, tz) tuples that failed to evaluate, so a broken row warns once.
        self._warned: set[tuple[str, str, str, str]] = set()
        self._started = False

    @property
    def escape_keys(self) -> bool:
        return (self.manager.info.version or 0) >= 46

    def start(self) -> None:
        """Create ``__pgboss__send-it`` like Node's timekeeper does on start (idempotent)."""
        if not self._started:
            self.manager.create_queue(names.SEND_IT_QUEUE, **SEND_IT_QUEUE_OPTIONS)
            self._started = True

    # -- the pass ------------------------------------------------------------------------------

    def claim(self) -> Claim:
        row = self.manager.schedules.claim_cron_time(self.monitor_interval)
        if row is None:
            raise RuntimeError("try_set_cron_time returned no row; is the pg-boss version table empty?")
        return Claim(
            claimed=bool(row["claimed"]),
            now=row["now"],
            prior_cron_on=row["prior_cron_on"],
            elapsed=None if row["elapsed"] is None else float(row["elapsed"]),
        )

    def retry_delay(self, claim: Claim) -> float:
        """Seconds until the next claim attempt: a full interval after a win; after a loss, until the
        winner's interval ends plus a beat (pg-boss's claimRetryDelay), so passes stay an interval apart."""
        interval = self.monitor_interval
        if claim.claimed:
            return interval
        age = claim.elapsed if claim.elapsed and claim.elapsed > 0 else None
        remaining = max(0.0, interval - age) if age is not None else interval
        return remaining + min(1.0, interval / 4)

    def run_pass(self) -> tuple[Claim, int, int]:
        """Claim and, when this instance won, run one pass. Returns (claim, slots offered, jobs inserted)."""
        self.start()
        claim = self.claim()
        if not claim.claimed:
            return claim, 0, 0
        offered, inserted = self.cron(claim.now, claim.prior_cron_on)
        return claim, offered, inserted

    def cron(self, now: dt.datetime, last_pass: dt.datetime | None = None) -> tuple[int, int]:
        """Insert a send-it job for every due occurrence at ``now`` (no claim: callers that own the pass)."""
        jobs: list[dict[str, Any]] = []
        broken: set[tuple[str, str, str, str]] = set()
        for schedule in self.schedules():
            try:
                slots = due_slots(schedule, now, last_pass)
            except Exception as exc:  # one unusable row must not stop every other schedule
                ident = (schedule.name, schedule.key, schedule.cron, schedule.timezone)
                broken.add(ident)
                if ident not in self._warned:
                    logger.warning(
                        "cron: schedule %r (key %r) could not be evaluated and was skipped: %s",
                        schedule.name,
                        schedule.key,
                        exc,
                    )
                continue
            key = occurrence_key(schedule.name, schedule.key, escape=self.escape_keys)
            payload = {"name": schedule.name, "key": schedule.key, "data": schedule.data}
            payload["options"] = schedule.options
            for slot in slots:
                jobs.append({"data": {**payload, "slot": slot}, "singleton_key": key, "singleton_slot": slot})
        self._warned = broken
        if not jobs:
            return 0, 0
        inserted = self.manager.send_many(names.SEND_IT_QUEUE, jobs)
        logger.info(
            "cron: pass at %s offered %d occurrence(s), %d new", now.isoformat(), len(jobs), len(inserted)
        )
        return len(jobs), len(inserted)

    # -- forwarding ----------------------------------------------------------------------------

    def work_send_it(self) -> int:
        """Fetch and forward ``__pgboss__send-it`` jobs until none are left; returns how many were sent.

        A batch is fetched, forwarded and completed in one transaction, so a beat that dies halfway
        leaves its send-it jobs as it found them, for another instance to forward at once (fetched
        in a transaction of their own, they would sit ``active`` until their 15-minute expiry).
        """
        self.start()
        sent = 0
        while True:
            with self.manager.sql.connection() as conn:
                try:
                    fetched = self.manager.fetch([names.SEND_IT_QUEUE], self.send_it_batch, conn=conn)
                    for job in fetched:
                        sent += self._forward(job, conn)
                    conn.commit()
                except BaseException:
                    conn.rollback()
                    raise
            if len(fetched) < self.send_it_batch:
                return sent

    def _forward(self, job: Any, conn: Any) -> int:
        data = job.data if isinstance(job.data, dict) else {}
        name, key = data.get("name"), data.get("key")
        options = dict(data.get("options") or {})
        job_id: str | None = None
        self.manager.schedules.savepoint(conn)
        try:
            job_id = self.manager.send(name, data.get("data"), conn=conn, **send_options(options))
            if job_id is not None and key is not None:
                self.manager.schedules.set_last_job_id(name, key, job_id, conn)
        except CONNECTION_ERRORS:
            raise  # the whole batch is rolled back and forwarded on a later poll
        except Exception as exc:
            # Like Node: report it and settle the send-it job anyway, so a bad schedule cannot loop.
            logger.error("cron: could not send scheduled job to %r (key %r): %s", name, key, exc)
            self.manager.schedules.rollback_to_savepoint(conn)
            job_id = None
        self.manager.complete(names.SEND_IT_QUEUE, [(job.id, None, job.retry_count)], conn=conn)
        if job_id is not None:
            logger.debug("cron: sent %s to %r for slot %s", job_id, name, data.get("slot"))
        return 1 if job_id else 0

    # -- the schedule table --------------------------------------------------------------------

    def schedules(self) -> list[Schedule]:
        return [Schedule.from_row(r) for r in self.manager.schedules.all()]

    def get_schedule(self, name: str, key: str = "") -> Schedule | None:
        row = self.manager.schedules.get(name, key)
        return Schedule.from_row(row) if row is not None else None

    def schedule(
        self,
        name: str,
        cron: str,
        data: Any = None,
        options: Mapping[str, Any] | None = None,
        *,
        key: str = "",
        tz: str = "UTC",
        only_if_changed: bool = False,
        conn: Any = None,
    ) -> bool:
        """Upsert a schedule row as Node's ``boss.schedule(name, cron, data, {tz, key, ...})`` writes it.

        The queue must exist (the table's foreign key). Returns whether the row was written.
        """
        names.validate_queue_name(name)
        if key and not names.QUEUE_NAME.match(key):
            raise InvalidOption(f"invalid schedule key {key!r}: must match ^[\\w.\\-/]+$")
        kind = validate(cron, tz)
        stored = dict(options or {})
        if stored.get("missed") not in (None, *MISSED_POLICIES):
            raise InvalidOption(f"missed must be one of: {', '.join(MISSED_POLICIES)}")
        stored = {**stored, "tz": tz, **({"key": key} if key else {})}
        params = {
            "name": name,
            "key": key,
            "kind": kind,
            "cron": cron,
            "tz": tz,
            "data": outputs.to_json(data),
            "options": outputs.to_json(stored),
            "only_if_changed": only_if_changed,
        }
        return self.manager.schedules.upsert(params, conn)

    def unschedule(self, name: str, key: str = "") -> bool:
        return self.manager.schedules.delete(name, key)

    def install(self, entries: Iterable[Mapping[str, Any]], queue_options: Mapping[str, Any]) -> None:
        """Install schedules at start-up: create each queue, upsert its row only when it changed."""
        for entry in entries:
            name = entry["name"]
            self.manager.create_queue(name, **dict(queue_options.get(name) or {}))
            written = self.schedule(
                name,
                entry["cron"],
                entry.get("data", {}),
                entry.get("options"),
                key=entry.get("key", ""),
                tz=entry.get("tz") or "UTC",
                only_if_changed=True,
            )
            if written:
                logger.info(
                    "cron: installed schedule %r %r (%s)", name, entry["cron"], entry.get("tz") or "UTC"
                )
