"""Celery beat on pg-boss: ``celery -A app beat -S transport.beat:PgBossScheduler`` (alias ``pgboss``).

Two kinds of schedule run side by side, both safe with any number of beats (and Node instances)
running at once, so there is no leader lock to hand over:

* **pg-boss schedules**, the rows of ``pgboss.schedule`` that Node's ``boss.schedule()`` writes.
  Beat runs Node's timekeeper (:mod:`transport.cron`): each occurrence becomes one
  ``__pgboss__send-it`` job whatever the number of instances, and is then sent to its queue. Rows
  are read on every pass, so a schedule saved at runtime (:class:`PgBossScheduleEntry`, Node, SQL)
  fires without a restart. ``pgboss_schedules`` in the Celery config is installed at start-up.
* **Celery's own** ``beat_schedule`` entries (crontab, interval, solar) keep Celery's heap and
  normal producer; each run is claimed first in ``<schema>_zeke.beat_entry`` (compare-and-set on
  the run count), so N beats send it once. A crash between claim and send skips that run.

Configuration (``app.conf``):

* ``pgboss_schedules``: ``[{"name": queue, "cron": "*/5 * * * *", "tz": "UTC", "data": {...},
  "options": {...}, "key": ""}, ...]`` (or ``{queue: {...}}``), installed idempotently at start.
* ``pgboss_cron_monitor_interval``: seconds between cron claims (Node's cronMonitorIntervalSeconds,
  default 30).
* ``pgboss_cron_worker_interval``: seconds between polls of ``__pgboss__send-it`` (default 5; a
  pass that inserted jobs forwards them at once).
* ``pgboss_beat_url``: the database (default: ``broker_url``); the schema and queue options come from
  ``broker_transport_options`` (``schema``, ``queue_options``), as the transport reads them.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from celery import Celery
from celery import current_app as default_app
from celery.beat import ScheduleEntry, Scheduler

from transport import cron, outputs
from transport.db import CONNECTION_ERRORS
from transport.hub import hub_from_options
from transport.manager import JobManager
from transport.times import iso

logger = logging.getLogger("transport.beat")

#: After an error a tick waits this long before touching the database again.
ERROR_BACKOFF = 5.0

_timekeepers: dict[tuple[str, str], cron.Timekeeper] = {}
_lock = threading.Lock()


def _setting(app: Celery, name: str, default: Any) -> Any:
    value = app.conf.get(name)
    return default if value is None else value


def timekeeper_for(app: Celery) -> cron.Timekeeper:
    """The process's timekeeper on the app's database and pg-boss schema (one per pair), on the
    process's hub for that database (:mod:`transport.hub`)."""
    options = app.conf.broker_transport_options or {}
    url = str(_setting(app, "pgboss_beat_url", None) or app.conf.broker_url)
    schema = str(options.get("schema") or "pgboss")
    with _lock:
        keeper = _timekeepers.get((url, schema))
        if keeper is None:
            manager = hub_from_options(url, options, application_name="zeke-beat").manager(schema)
            interval = float(_setting(app, "pgboss_cron_monitor_interval", cron.DEFAULT_MONITOR_INTERVAL))
            keeper = _timekeepers[url, schema] = cron.Timekeeper(manager, monitor_interval=interval)
        return keeper


def close_timekeepers() -> None:
    """Close the idle pooled connections of every timekeeper's hub (they reopen on next use)."""
    with _lock:
        for keeper in _timekeepers.values():
            keeper.manager.db.close()


def queue_options(app: Celery) -> Mapping[str, Any]:
    """The app's ``broker_transport_options["queue_options"]``: ``{queue: create_queue kwargs}``."""
    return (app.conf.broker_transport_options or {}).get("queue_options") or {}


class PgBossScheduleEntry:
    """One pg-boss schedule (a ``pgboss.schedule`` row), with RedBeat's entry API.

    ``name`` is the queue the scheduled job goes to; ``key`` tells several schedules of one queue
    apart. ``data`` is the job payload (the task's kwargs) and ``options`` are Node send options
    (``retryLimit``, ``singletonKey``, ``missed: "once"``...).
    """

    def __init__(
        self,
        name: str,
        cron: str,
        data: Any = None,
        options: Mapping[str, Any] | None = None,
        key: str = "",
        tz: str = "UTC",
        app: Celery | None = None,
    ) -> None:
        self.name = name
        self.cron = cron
        self.data = {} if data is None else data
        self.options = {k: v for k, v in (options or {}).items() if k not in ("tz", "key")}
        self.key = key
        self.tz = tz or "UTC"
        self.app = app or default_app

    def __repr__(self) -> str:
        return f"<PgBossScheduleEntry {self.id} {self.cron!r} ({self.tz})>"

    @property
    def id(self) -> str:
        """``name`` or ``name:key``: unambiguous, since ``:`` is in neither."""
        return f"{self.name}:{self.key}" if self.key else self.name

    def save(self) -> PgBossScheduleEntry:
        """Create or replace the row (and the queue if missing); running beats see it on their next pass."""
        keeper = timekeeper_for(self.app)
        keeper.manager.create_queue(self.name, **dict(queue_options(self.app).get(self.name) or {}))
        keeper.schedule(self.name, self.cron, self.data, self.options, key=self.key, tz=self.tz)
        return self

    def delete(self) -> None:
        timekeeper_for(self.app).unschedule(self.name, self.key)

    @classmethod
    def from_key(cls, name: str, key: str = "", app: Celery | None = None) -> PgBossScheduleEntry:
        """The stored schedule of queue ``name`` (and ``key``); KeyError when there is none.

        ``name`` may also be an :attr:`id` (``"queue:key"``).
        """
        if not key and ":" in name:
            name, key = name.split(":", 1)
        app = app or default_app
        row = timekeeper_for(app).get_schedule(name, key)
        if row is None:
            raise KeyError(f"no pg-boss schedule for queue {name!r} with key {key!r}")
        return cls(row.name, row.cron, row.data, row.options, row.key, row.timezone, app=app)

    def next_run(self, after: dt.datetime | None = None) -> dt.datetime | None:
        """The first occurrence after ``after`` (default: now), in UTC; None when a rule has ended."""
        kind = cron.validate(self.cron, self.tz)
        return cron.next_after(self.cron, kind, self.tz, after or dt.datetime.now(dt.UTC))


class PgBossScheduler(Scheduler):
    """Beat scheduler running pg-boss cron plus DB-claimed Celery ``beat_schedule`` entries."""

    Entry = ScheduleEntry

    def __init__(self, app: Celery, *args: Any, **kwargs: Any) -> None:
        self.timekeeper = timekeeper_for(app)
        self.worker_interval = float(
            _setting(app, "pgboss_cron_worker_interval", cron.DEFAULT_WORKER_INTERVAL)
        )
        self._next_pass = 0.0
        self._next_send_it = 0.0
        self._lost: set[str] = set()
        super().__init__(app, *args, **kwargs)

    @property
    def manager(self) -> JobManager:
        return self.timekeeper.manager

    @property
    def info(self) -> str:
        return (
            f"pg-boss schema {self.manager.schema}: cron pass every {self.timekeeper.monitor_interval:g}s, "
            f"send-it poll every {self.worker_interval:g}s"
        )

    # -- setup -----------------------------------------------------------------------------------

    def setup_schedule(self) -> None:
        super().setup_schedule()  # Celery's default entries and beat_schedule, into self.data
        self.timekeeper.start()
        self._ensure_entry_store()
        self.timekeeper.install(schedule_list(self.app.conf.get("pgboss_schedules")), queue_options(self.app))
        self._load_entries(self.schedule.values())

    def _ensure_entry_store(self) -> None:
        self.manager.schedules.install_beat_store()

    def _load_entries(self, entries: Iterable[ScheduleEntry]) -> None:
        """Adopt the shared run state of every entry, creating rows for new ones."""
        entries = list(entries)
        if not entries:
            return
        payload = [{"name": e.name, "last_run_at": iso(e.last_run_at)} for e in entries]
        rows = {r["name"]: r for r in self.manager.schedules.load_beat_entries(outputs.to_json(payload))}
        for entry in entries:
            row = rows.get(entry.name)
            if row is not None:
                self.schedule[entry.name] = _adopt(entry, row)

    # -- the loop --------------------------------------------------------------------------------

    def tick(self, *args: Any, **kwargs: Any) -> float:
        now = time.monotonic()
        try:
            if now >= self._next_pass:
                claim, _, inserted = self.timekeeper.run_pass()
                self._next_pass = now + self.timekeeper.retry_delay(claim)
                if inserted:
                    self._next_send_it = now  # forward what this pass filed right away
            if now >= self._next_send_it:
                self.timekeeper.work_send_it()
                self._next_send_it = now + self.worker_interval
        except Exception:  # the loop boundary: a lost database must not end beat
            logger.exception("beat: pg-boss cron failed; trying again in %ss", ERROR_BACKOFF)
            self._next_pass = max(self._next_pass, now + ERROR_BACKOFF)
            self._next_send_it = max(self._next_send_it, now + ERROR_BACKOFF)
        try:
            delay = super().tick(*args, **kwargs)
        except CONNECTION_ERRORS:  # claiming a beat_schedule run: the database is gone for now
            logger.exception("beat: could not claim a beat entry; trying again in %ss", ERROR_BACKOFF)
            self._heap = None  # the entry was popped off Celery's heap before the claim: rebuild it
            delay = ERROR_BACKOFF
        soonest = min(self._next_pass, self._next_send_it) - time.monotonic()
        return max(0.0, min(delay, soonest))

    def reserve(self, entry: ScheduleEntry) -> ScheduleEntry:
        """Claim this run in the database; a beat that loses adopts the winner's state and sends nothing."""
        new_entry = next(entry)
        row = self.manager.schedules.claim_beat_entry(
            entry.name, entry.total_run_count, iso(new_entry.last_run_at)
        )
        if row is None:  # the row vanished (a new entry since start-up): create it, then try again
            self._load_entries([entry])
            return self.reserve(self.schedule[entry.name])
        if not row["claimed"]:
            logger.debug("beat: %s already ran elsewhere (run %s)", entry.name, row["total_run_count"])
            self._lost.add(entry.name)
            new_entry = _adopt(entry, row)
        self.schedule[entry.name] = new_entry
        return new_entry

    def apply_entry(self, entry: ScheduleEntry, producer: Any = None) -> None:
        if entry.name in self._lost:
            self._lost.discard(entry.name)
            return
        super().apply_entry(entry, producer=producer)

    def close(self) -> None:
        super().close()
        self.manager.db.close()  # pid-guarded; reopened lazily if this process schedules again


def schedule_list(value: Any) -> list[dict[str, Any]]:
    """``pgboss_schedules`` as a list of dicts, accepting ``{queue: {...}}`` as well."""
    if not value:
        return []
    if isinstance(value, Mapping):
        return [{"name": name, **dict(spec)} for name, spec in value.items()]
    return [dict(spec) for spec in value]


def _adopt(entry: ScheduleEntry, row: Mapping[str, Any]) -> ScheduleEntry:
    fields = dict(entry)
    fields.update(last_run_at=row["last_run_at"] or entry.last_run_at, total_run_count=row["total_run_count"])
    return entry.__class__(**fields)
