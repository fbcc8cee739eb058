"""Celery result backend on pg-boss: ``result_backend = "pgboss://user@host/db"``.

Features
========
* The result of a task that is a pg-boss job *is* the job row. SUCCESS completes the job (output in
  Node's shape), FAILURE fails it (pg-boss retry with backoff, or ``failed`` plus dead letter),
  REVOKED cancels it, each fenced on the attempt the worker fetched. Node, SQL and Python all read
  the same truth, and nothing is stored twice.
* Reading maps job states onto Celery's: created → PENDING, retry → RETRY, active → STARTED,
  completed → SUCCESS, failed → FAILURE, cancelled → REVOKED. Failures re-raise with the task's
  message, rebuilt by Celery's own exception-from-dict machinery (JSON only, never pickle).
* ``AsyncResult.get()`` is pushed: one LISTEN connection per process on the manager's state
  channel, which every job transition NOTIFYs.
* What is not a job row (group metadata, chord counters, results of tasks that never were jobs,
  progress states and children lists) lives in ``<schema>_zeke.result``. Chords count with an
  in-database ``incr`` committed together with the header task's completion, so a redelivered
  duplicate cannot count twice and there is no ``chord_unlock`` polling.

Connection String
=================
``pgboss://[USER[:PASSWORD]@]HOST[:PORT]/DATABASE`` (``postgres://`` and ``postgresql://`` work too).

Options
=======
``result_backend_transport_options`` (falling back to ``broker_transport_options``):

* ``schema``: the pg-boss schema (default ``pgboss``).
* ``max_connections``: size of the backend's connection pool (default 8).

Results of job tasks live as long as their job (``deletion_seconds``); other values follow
``result_expires``. Expired values are swept by the backend itself (``supports_autoexpire``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from celery import signals, states
from celery.backends.asynchronous import AsyncBackendMixin, BaseResultConsumer
from celery.backends.base import BaseKeyValueStoreBackend, _is_request_ignore_result
from celery.exceptions import ImproperlyConfigured
from celery.result import task_join_will_block
from kombu.utils import json as kombu_json
from kombu.utils.url import maybe_sanitize_url

from transport import heartbeat, outputs
from transport.db import CONNECTION_ERRORS, Connection
from transport.envelope import RESERVED_KEY, job_id_for
from transport.manager import JobManager
from transport.prepared import PreparedDatabase, register
from transport.sessions import Sessions

logger = logging.getLogger("transport.backend")

#: pg-boss job state -> Celery state.
JOB_STATES: dict[str, str] = {
    "created": states.PENDING,
    "retry": states.RETRY,
    "active": states.STARTED,
    "completed": states.SUCCESS,
    "failed": states.FAILURE,
    "cancelled": states.REVOKED,
}
_FINISHED = frozenset({"completed", "failed", "cancelled"})
#: Job states after which a result will not change; NOTIFYs of other states wake nobody.
_FINAL_NOTIFY = frozenset({*_FINISHED, *states.READY_STATES})
#: A waiter re-reads its results at least this often even without a NOTIFY (results written by Node
#: or SQL), and this often at most for a job a zeke worker has announced running (it announces the end).
REREAD_INTERVAL = 2.0
#: A job nobody announced (queued, or running on a Node worker, which notifies nothing) is re-read
#: after REREAD_FIRST, the gap growing by REREAD_GROWTH per unchanged read up to REREAD_FAST_MAX; once
#: unchanged for REREAD_FAST_WINDOW the gap grows on to REREAD_INTERVAL. Only ids being waited on are
#: read, in one statement, and only while someone waits: an idle database sees nothing.
REREAD_FIRST = 0.025
REREAD_GROWTH = 1.5
REREAD_FAST_MAX = 0.1
REREAD_FAST_WINDOW = 60.0
#: Seconds a waiter pauses after losing the database before it tries again.
RECONNECT_DELAY = 0.5
#: Most task ids remembered as published by this process (older ones are simply re-read).
PUBLISHED_MAX = 10_000
#: Statements run prepared: planning them costs more than running them (see transport.prepared).
#: Statements that look jobs up by id (get_job, get_task_results, set_result, fail_jobs, cancel_jobs)
#: are planned per call instead: generic plans made while a queue was small kept scanning it as it grew.
PREPARED_STATEMENTS = (
    "get_results",
    "incr_result",
    "complete_jobs",
)
#: Expired values are swept at most this often per process.
SWEEP_INTERVAL = 600.0
SWEEP_BATCH = 1000


@dataclass(slots=True)
class _Pace:
    """When a waited-for task is re-read next, and why."""

    due: float
    gap: float = REREAD_FIRST
    #: When its state last changed (or the wait began).
    since: float = 0.0
    status: str | None = None
    #: A zeke worker announced it running: its end will be announced too.
    announced: bool = False

    def after_read(self, now: float, status: str | None) -> None:
        if status != self.status:
            self.status, self.since, self.gap = status, now, REREAD_FIRST
        elif self.announced:
            self.gap = REREAD_INTERVAL
        else:
            cap = REREAD_FAST_MAX if now - self.since < REREAD_FAST_WINDOW else REREAD_INTERVAL
            self.gap = min(self.gap * REREAD_GROWTH, cap)
        self.due = now + self.gap


@dataclass(frozen=True, slots=True)
class JobRef:
    """Where a task's job is: its queue, id and the attempt (retry_count) this worker runs."""

    queue: str
    id: str
    attempt: int | None
    active: bool = True


def request_attempt(request: Any) -> int | None:
    """The ``pgboss_attempt`` header the broker set on the message, wherever Celery put it.

    Celery copies message headers into the request dict, so it is an attribute of the task's
    ``Context`` (worker child) and of the parent's ``Request._context``; custom headers also
    show up in ``request.headers`` for protocol-2 messages.
    """
    if request is None:
        return None
    value = getattr(request, "pgboss_attempt", None)
    if value is None:
        headers = getattr(request, "headers", None) or {}
        value = headers.get("pgboss_attempt") if isinstance(headers, dict) else None
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def request_queue(request: Any) -> str | None:
    delivery_info = getattr(request, "delivery_info", None) or {}
    return delivery_info.get("routing_key") or None


def request_job_ref(task_id: str, request: Any) -> JobRef | None:
    """The job row a worker's request names (queue and attempt from the broker's delivery), or None."""
    job_id, queue, attempt = job_id_for(task_id), request_queue(request), request_attempt(request)
    if job_id is None or queue is None or attempt is None:
        return None
    return JobRef(queue, job_id, attempt)


class PgBossResultConsumer(BaseResultConsumer):
    """Wakes ``AsyncResult.get()`` from NOTIFYs on the state channel ("<job id> <state>").

    NOTIFYs name jobs, so waiters are kept by job id (a task id that is not a UUID has a uuid5 job
    id, :func:`transport.envelope.job_id_for`). A task published by this process was listened for
    before it was sent, so its first wait needs no re-read unless its end was announced already.
    Results written without a NOTIFY (a Node worker, plain SQL) are caught by re-reading the awaited
    ids: every few tens of milliseconds while nothing announced them (see REREAD_FIRST), every
    REREAD_INTERVAL once a zeke worker announced one running.
    """

    _connection_errors = CONNECTION_ERRORS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lock = threading.Lock()  # guards the maps below and the connection handle
        self._reader = threading.Lock()  # one thread waits on the socket; the rest wait for it
        self._conn: Connection | None = None
        self._pid = os.getpid()
        self._reconnected = False
        self._last_reread = time.monotonic()
        #: NOTIFY key (job id, or task id for a stored value) -> task id, for every id waited on.
        self.subscribed: dict[str, str] = {}
        #: Keys of tasks published since LISTEN began -> whether their end has been announced.
        self._published: OrderedDict[str, bool] = OrderedDict()
        #: Task id -> its re-read pace, for every task waited on.
        self._paces: dict[str, _Pace] = {}

    def start(self, initial_task_id: str, **kwargs: Any) -> None:
        self.consume_from(initial_task_id)

    def consume_from(self, task_id: str) -> None:
        with self._lock:
            for key in _notify_keys(task_id):
                self.subscribed[key] = task_id
            now = time.monotonic()
            self._paces.setdefault(task_id, _Pace(due=now + REREAD_FIRST, since=now))
        self.listening()

    def cancel_for(self, task_id: str) -> None:
        with self._lock:
            for key in _notify_keys(task_id):
                self.subscribed.pop(key, None)
                self._published.pop(key, None)
            self._paces.pop(task_id, None)

    def published(self, task_id: str) -> None:
        """Called before ``task_id`` is sent: from now on its end is announced to this process."""
        self.listening()
        with self._lock:
            self._published[_notify_keys(task_id)[0]] = False
            while len(self._published) > PUBLISHED_MAX:
                self._published.popitem(last=False)

    def on_after_fork(self) -> None:
        with self._lock:
            self._forget_inherited()

    def stop(self) -> None:
        """Close the LISTEN connection (this process's own only); waiting again reopens it."""
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                with contextlib.suppress(Exception):
                    self._conn.close()
            self._conn = None

    def listening(self) -> Connection:
        """The LISTEN connection, opened on first use: before any re-read, so no NOTIFY is missed."""
        with self._lock:
            if self._pid != os.getpid():
                self._forget_inherited()
            if self._conn is None or self._conn.closed:
                conn = self.backend.database.connect(autocommit=True)
                with conn.cursor() as cur:
                    cur.execute(f'LISTEN "{self.backend.manager.state_channel}"')
                self._conn = conn
            return self._conn

    def _forget_inherited(self) -> None:
        # A connection inherited across fork shares the parent's socket: closing it here would
        # send Terminate on the parent's session. Keep a reference so it is never finalised.
        if self._conn is not None:
            _INHERITED.append(self._conn)
        self._conn, self._pid = None, os.getpid()
        self.subscribed.clear()
        self._published.clear()
        self._paces.clear()

    def on_wait_for_pending(self, result: Any, **kwargs: Any) -> None:
        # LISTEN is already up (consume_from ran in add_pending_result), so a result stored before
        # the wait began is found here and one stored after it is announced. A task this process
        # published while listening, whose end has not been announced, cannot have one stored yet.
        if not hasattr(result, "results"):
            with self._lock:
                if self._published.get(_notify_keys(result.id)[0]) is False:
                    return
        for meta in result._iter_meta(**kwargs):
            if meta is not None:
                self.on_state_change(meta, None)

    def on_state_change(self, meta: dict[str, Any], message: Any) -> None:
        super().on_state_change(meta, message)
        if meta["status"] in states.READY_STATES:
            self.cancel_for(meta["task_id"])

    def drain_events(self, timeout: float | None = None) -> None:
        if not self._reader.acquire(timeout=-1 if timeout is None else timeout):
            return
        try:
            self._drain(timeout)
        finally:
            self._reader.release()

    def _drain(self, timeout: float | None) -> None:
        with self._lock:
            idle = not self.subscribed
        if idle:
            if timeout:
                time.sleep(timeout)
            return
        try:
            conn = self.listening()
            if self._reconnected:
                self._reconnected = False
                self._reread_all()  # anything may have happened while we were away
            if not conn.notifies:
                wait = min(timeout if timeout is not None else REREAD_INTERVAL, REREAD_INTERVAL)
                readable, _, _ = select.select([conn], [], [], min(wait, self._until_due()))
                if readable:
                    conn.poll()
            else:
                conn.poll()
            notifies = list(conn.notifies)
            conn.notifies.clear()
            wanted: set[str] = set()
            with self._lock:
                for notify in notifies:
                    key, _, state = notify.payload.partition(" ")
                    final = state in _FINAL_NOTIFY
                    if key in self.subscribed and (pace := self._paces.get(self.subscribed[key])):
                        pace.announced = state == "active"  # a zeke worker runs it and will say when done
                    if key in self.subscribed and (final or self.on_message is not None):
                        wanted.add(self.subscribed[key])
                    elif final and key in self._published:
                        self._published[key] = True
            self._reread(wanted)
            if time.monotonic() - self._last_reread >= REREAD_INTERVAL:
                self._reread_all()
            else:
                self._reread_due()
        except CONNECTION_ERRORS as exc:
            # The LISTEN socket or a re-read lost the database (a restart): waiters keep waiting,
            # and once connected again everything waited for is re-read.
            logger.warning("result backend: database connection lost (%s); reconnecting", exc)
            with self._lock:
                if self._conn is not None:
                    with contextlib.suppress(Exception):
                        self._conn.close()
                self._conn = None
                self._reconnected = True
                self._published.clear()  # announcements may have been lost with the connection
            time.sleep(RECONNECT_DELAY if timeout is None else min(timeout, RECONNECT_DELAY))

    def _until_due(self) -> float:
        """Seconds until the next task is due for a re-read (REREAD_INTERVAL when none waits)."""
        with self._lock:
            due = min((pace.due for pace in self._paces.values()), default=None)
        return REREAD_INTERVAL if due is None else max(0.0, due - time.monotonic())

    def _reread_due(self) -> None:
        now = time.monotonic()
        with self._lock:
            ids = {task_id for task_id, pace in self._paces.items() if pace.due <= now}
        self._reread(ids)

    def _reread_all(self) -> None:
        self._last_reread = time.monotonic()
        with self._lock:
            ids = set(self.subscribed.values())
        self._reread(ids)

    def _reread(self, task_ids: Iterable[str]) -> None:
        ids = list(task_ids)
        if not ids:
            return
        metas = self.backend.task_metas(ids)
        now = time.monotonic()
        with self._lock:
            for task_id in ids:
                if (pace := self._paces.get(task_id)) is not None:
                    pace.after_read(now, (metas.get(task_id) or {}).get("status"))
        for meta in metas.values():
            self.on_state_change(meta, None)


def _notify_keys(task_id: str) -> tuple[str, ...]:
    """What a NOTIFY about this task names: its job id, and the task id itself for stored values."""
    job_id = job_id_for(task_id) or str(task_id)
    return (job_id,) if job_id == str(task_id) else (job_id, str(task_id))


_INHERITED: list[Connection] = []
_local = threading.local()


class PgBossBackend(BaseKeyValueStoreBackend, AsyncBackendMixin):
    """Results of pg-boss jobs from their rows; everything else in ``<schema>_zeke.result``."""

    ResultConsumer = PgBossResultConsumer

    key_t = str
    implements_incr = True
    supports_native_join = True
    supports_autoexpire = True
    persistent = True

    def __init__(self, app: Any, url: str | None = None, **kwargs: Any) -> None:
        super().__init__(app, url=url, **kwargs)
        if self.serializer != "json":
            raise ImproperlyConfigured(
                "the pgboss result backend stores JSON only: set result_serializer = 'json'"
            )
        # Results are JSON in the database, read back as JSON whatever accept_content says.
        self.accept = {"application/json"}
        conf = app.conf
        options = {**(conf.broker_transport_options or {}), **(conf.result_backend_transport_options or {})}
        self.url = _database_url(url or conf.result_backend or "")
        self.database = PreparedDatabase(
            self.url,
            max_connections=int(options.get("max_connections", 8)),
            application_name="zeke-results",
        )
        self.manager = JobManager(self.database, str(options.get("schema") or "pgboss"))
        #: One autocommit connection per thread: every hot path here is a single statement.
        self.sessions = Sessions(self.database)
        self.extended = bool(conf.find_value_for_key("extended", "result"))
        self._store_ready = False
        self._store_lock = threading.Lock()
        self._last_sweep = time.monotonic()
        self.result_consumer = self.ResultConsumer(
            self, self.app, self.accept, self._pending_results, self._pending_messages
        )

    def close(self) -> None:
        """Close this process's connections (LISTEN and pool); they reopen on next use."""
        self.result_consumer.stop()
        self.sessions.close()
        self.database.close()

    def as_uri(self, include_password: bool = False) -> str:
        return self.url if include_password else maybe_sanitize_url(self.url)

    def __reduce__(self, args: tuple = (), kwargs: dict | None = None) -> Any:
        return super().__reduce__(args, {**(kwargs or {}), "url": self.url})

    def exception_safe_to_retry(self, exc: BaseException) -> bool:
        return isinstance(exc, CONNECTION_ERRORS)

    def on_task_call(self, producer: Any, task_id: str) -> dict:
        # Listen before the task is sent, so its end is announced here (never inside a worker,
        # where joins block and no one waits).
        if not task_join_will_block():
            self.result_consumer.published(task_id)
        return {}

    # -- writing: jobs ------------------------------------------------------------------------

    def job_ref(self, task_id: str, request: Any = None) -> JobRef | None:
        """The job behind a task id, or None when the task is not (or no longer) a pg-boss job."""
        ref = request_job_ref(task_id, request)
        if ref is not None:
            return ref
        job_id = job_id_for(task_id)
        if job_id is None:
            return None
        # No broker headers (parent-process failures, a Celery call outside a worker): look it up.
        row = self.manager.get_job(job_id)
        if row is None:
            return None
        active = row["state"] == "active"
        return JobRef(row["name"], job_id, row["retry_count"] if active else None, active=active)

    def mark_as_done(
        self,
        task_id: str,
        result: Any,
        request: Any = None,
        store_result: bool = True,
        state: str = states.SUCCESS,
    ) -> None:
        ref = self.job_ref(task_id, request)
        if ref is None:
            return super().mark_as_done(task_id, result, request, store_result, state)
        # Even with ignore_result the job must be settled; then its output is simply empty.
        store = store_result and not _is_request_ignore_result(request)
        chord_key = None
        if request is not None and request.chord and getattr(request, "group", None):
            chord_key = self.get_key_for_chord(request.group)
        settled, count = self._complete(
            ref, self.encode_result(result, state) if store else None, request, chord_key
        )
        if not settled:
            logger.warning(
                "result backend: job %s is no longer active in attempt %s; result dropped",
                ref.id,
                ref.attempt,
            )
            return
        if chord_key is not None:
            _precounted()[chord_key] = count
            try:
                self.on_chord_part_return(request, state, result)
            finally:
                _precounted().pop(chord_key, None)

    def mark_as_failure(
        self,
        task_id: str,
        exc: BaseException,
        traceback: str | None = None,
        request: Any = None,
        store_result: bool = True,
        call_errbacks: bool = True,
        state: str = states.FAILURE,
    ) -> None:
        ref = self.job_ref(task_id, request)
        if ref is None:
            return super().mark_as_failure(
                task_id, exc, traceback, request, store_result, call_errbacks, state
            )
        if not ref.active:
            logger.warning(
                "result backend: job %s already left state active; failure of %s dropped", ref.id, task_id
            )
            return
        try:
            moved = self._fail(ref, self._error_output(exc, traceback))
        except CONNECTION_ERRORS as error:
            # Nothing could be recorded. In the worker's main process (where a pool child's failure
            # to write lands) the job is then let go: pg-boss retries it after its heartbeat
            # timeout, instead of it staying active, heartbeated, until its expiry.
            if not heartbeat.release(ref.id):
                raise
            logger.error(
                "result backend: could not record the end of job %s (%s); pg-boss retries it once its "
                "heartbeat runs out",
                ref.id,
                error,
            )
            return
        if not any(row["state"] == "failed" for row in moved):
            # pg-boss will run the job again (retry with backoff), or another attempt owns it:
            # not a Celery failure yet, so no chord error, chain failure or errback.
            return
        super().mark_as_failure(task_id, exc, traceback, request, False, call_errbacks, state)

    def _store_result(
        self,
        task_id: str,
        result: Any,
        state: str,
        traceback: str | None = None,
        request: Any = None,
        **kwargs: Any,
    ) -> Any:
        ref = self.job_ref(task_id, request)
        if ref is None:
            return super()._store_result(task_id, result, state, traceback, request, **kwargs)
        if state == states.SUCCESS and ref.active:
            self._complete(ref, result, request, None)
        elif state == states.FAILURE and ref.active:
            self._fail(ref, self._error_output(result, traceback))
        elif state == states.REVOKED:
            with self._single() as conn:
                self.manager.cancel(ref.queue, [ref.id], conn=conn)
        elif state not in (states.STARTED, states.RETRY, states.PENDING, *states.READY_STATES):
            # A custom state (update_state(state="PROGRESS", meta=...)): kept beside the job for as
            # long as the job lives, and shown while the job is unfinished.
            meta = self._get_result_meta(result=result, state=state, traceback=traceback, request=request)
            meta["task_id"] = ref.id
            self._set(self.get_key_for_task(ref.id), self.encode(meta), state=state, job=ref)
        # STARTED and RETRY: the row already says so (fetched active; the broker moved it to retry).
        return result

    def settle_ignored(self, task_id: str, request: Any) -> None:
        """A task raised Ignore (Celery's ``Task.replace`` among others): Celery writes nothing, but
        the job must not stay active (heartbeated, then run again). It completes with no output. A
        replacement sent with the same id to the same queue has already moved this row back to retry
        for its own run, and the attempt fence leaves it alone. Only a worker's request names the
        row (queue and attempt): looked up by id, a replaced task's id finds its replacement."""
        ref = request_job_ref(task_id, request)
        if ref is not None:
            self._complete(ref, None, request, None)

    def _complete(
        self, ref: JobRef, value: Any, request: Any, chord_key: str | None
    ) -> tuple[bool, int | None]:
        """Complete the job and, in the same transaction, count the chord part and keep its children."""
        count = None
        children = self.current_task_children(request) if value is not None else []
        result = [(ref.id, _to_json_value(value), ref.attempt)]
        if chord_key is None and not children:
            with self._single() as conn:
                return bool(self.manager.complete(ref.queue, result, conn=conn)), None
        with self._transaction() as conn:
            done = self.manager.complete(ref.queue, result, conn=conn)
            if done and chord_key is not None:
                count = self.incr(chord_key, conn=conn)
            if done and children:
                meta = {"task_id": ref.id, "status": states.SUCCESS, "children": children}
                self._set(self.get_key_for_task(ref.id), self.encode(meta), job=ref, conn=conn)
        return bool(done), count

    def _fail(self, ref: JobRef, output: dict[str, Any]) -> list[dict[str, Any]]:
        attempts = {ref.id: ref.attempt} if ref.attempt is not None else None
        with self._single() as conn:
            return self.manager.fail(ref.queue, [ref.id], output, attempts=attempts, conn=conn)

    def _error_output(self, exc: Any, traceback: str | None) -> dict[str, Any]:
        """Node's {name, message, stack} plus Celery's exception dict under "__celery" for Python readers."""
        if isinstance(exc, BaseException):
            output = outputs.error_output(exc, traceback or "")
            output["__celery"] = json.loads(kombu_json.dumps(self.prepare_exception(exc)))
            return output
        exc = dict(exc or {})
        message = exc.get("exc_message")
        text = " ".join(str(m) for m in message) if isinstance(message, list | tuple) else str(message or "")
        return {
            "name": exc.get("exc_type") or "Error",
            "message": text,
            "stack": traceback or "",
            "__celery": exc,
        }

    # -- reading ------------------------------------------------------------------------------

    def _get_task_meta_for(self, task_id: str) -> dict[str, Any]:
        meta = self.task_metas([task_id]).get(str(task_id))
        return meta or {"status": states.PENDING, "result": None, "task_id": str(task_id)}

    def task_metas(self, task_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Decoded metas (exceptions rebuilt) for the given ids that have any; one round trip."""
        return {k: self.meta_from_decoded(v) for k, v in self._raw_metas(task_ids).items()}

    def _raw_metas(self, task_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        job_ids = {str(t): job_id_for(t) for t in task_ids}
        keys = [self.get_key_for_task(str(t)) for t in task_ids]
        rows = self._rows(
            "get_task_results",
            {"ids": [j for j in job_ids.values() if j], "keys": keys, "extended": self.extended},
        )
        jobs = {r["id"]: r for r in rows if r["source"] == "job"}
        stored = {
            r["id"][len(self.task_keyprefix) :]: self.decode(r["value"])
            for r in rows
            if r["source"] == "store"
        }
        metas: dict[str, dict[str, Any]] = {}
        for task_id in map(str, task_ids):
            job = jobs.get(job_ids[task_id] or "")
            if job is not None:
                metas[task_id] = self._meta_from_job(task_id, job, stored.get(task_id))
            elif task_id in stored:
                metas[task_id] = stored[task_id]
        return metas

    def _meta_from_job(
        self, task_id: str, job: Mapping[str, Any], extra: dict[str, Any] | None
    ) -> dict[str, Any]:
        state = JOB_STATES.get(job["state"], states.PENDING)
        extra = extra or {}
        if extra.get("status") not in (None, *states.ALL_STATES) and state not in states.READY_STATES:
            return extra  # a custom progress state of an unfinished job
        output = job["output"]
        result: Any = None
        if state == states.SUCCESS:
            result = _from_json_value(outputs.completion_value(output))
        elif state in (states.FAILURE, states.RETRY):
            result = _exception_dict(output) if (output is not None or state == states.FAILURE) else None
        elif state == states.REVOKED:
            result = {
                "exc_type": "TaskRevokedError",
                "exc_module": "celery.exceptions",
                "exc_message": ["cancelled"],
            }
        meta: dict[str, Any] = {
            "task_id": task_id,
            "status": state,
            "result": result,
            "traceback": output.get("stack")
            if state == states.FAILURE and isinstance(output, dict)
            else None,
            "children": extra.get("children") or [],
            "date_done": job["completed_on"].isoformat() if job["completed_on"] else None,
        }
        if self.extended and job.get("data") is not None:
            meta.update(_extended_fields(job))
        return meta

    # -- key/value primitives (BaseKeyValueStoreBackend) ---------------------------------------

    def get(self, key: str) -> str | None:
        return self.mget([key])[0]

    def mget(self, keys: Sequence[str]) -> list[str | None]:
        keys = [str(k) for k in keys]
        prefix = self.task_keyprefix
        task_ids = [k[len(prefix) :] for k in keys if k.startswith(prefix)]
        metas = self._raw_metas(task_ids) if task_ids else {}
        others = [k for k in keys if not k.startswith(prefix)]
        values = {r["key"]: r["value"] for r in self._rows("get_results", {"keys": others})} if others else {}
        out: list[str | None] = []
        for key in keys:
            if key.startswith(prefix):
                meta = metas.get(key[len(prefix) :])
                out.append(self.encode(meta) if meta is not None else None)
            else:
                out.append(values.get(key))
        return out

    def _set_with_state(self, key: str, value: str, state: str) -> None:
        self._set(key, value, state=state)

    def set(self, key: str, value: str) -> None:
        self._set(key, value)

    def _set(
        self,
        key: str,
        value: str,
        *,
        state: str | None = None,
        job: JobRef | None = None,
        conn: Any = None,
    ) -> None:
        key = str(key)
        notify = None
        if state is not None and key.startswith(self.task_keyprefix):
            notify = f"{key[len(self.task_keyprefix) :]} {state}"
        params = {
            "key": key,
            "value": value,
            "expires": self.expires,
            "queue": job.queue if job else None,
            "job_id": job.id if job else None,
            "channel": self.manager.state_channel,
            "notify": notify,
        }
        self._rows("set_result", params, conn=conn)
        self._maybe_sweep()

    def delete(self, key: str) -> None:
        self._rows("delete_results", {"keys": [str(key)]})

    def incr(self, key: str, conn: Any = None) -> int:
        precounted = _precounted().pop(str(key), None)
        if precounted is not None:
            return precounted  # counted with the header task's completion (mark_as_done)
        rows = self._rows("incr_result", {"key": str(key), "expires": self.chord_expires}, conn=conn)
        return int(rows[0]["counter"])

    def expire(self, key: str, value: Any) -> None:
        if str(key).startswith(self.task_keyprefix):
            return  # a job's result lives exactly as long as its job
        self._rows("expire_result", {"key": str(key), "expires": value})

    def _forget(self, task_id: str) -> None:
        """Drop the stored extras and, once the job has finished, the job row itself."""
        self.delete(self.get_key_for_task(task_id))
        job_id = job_id_for(task_id)
        job = self.manager.get_job(job_id) if job_id else None
        if job is not None and job["state"] in _FINISHED:
            self.manager.delete(job["name"], [job["id"]])

    def cleanup(self) -> None:
        """Delete every expired value (celery.backend_cleanup; the backend also sweeps by itself)."""
        while self._delete_expired() >= SWEEP_BATCH:
            pass

    def _delete_expired(self) -> int:
        self._ensure_store()
        with self.database.cursor() as cur:
            cur.execute(self.manager.queries["delete_expired_results"], {"limit": SWEEP_BATCH})
            return cur.rowcount

    def _maybe_sweep(self) -> None:
        if time.monotonic() - self._last_sweep < SWEEP_INTERVAL:
            return
        self._last_sweep = time.monotonic()
        try:
            self._delete_expired()
        except CONNECTION_ERRORS:
            logger.debug("result backend: sweep of expired results failed", exc_info=True)

    # -- plumbing ------------------------------------------------------------------------------

    def _ensure_store(self) -> None:
        if self._store_ready:
            return
        with self._store_lock, self.database.cursor() as cur:
            if not self._store_ready:
                cur.execute(
                    self.manager.queries["advisory_lock"], {"schema": self.manager.schema, "key": "zeke-aux"}
                )
                cur.execute(self.manager.queries["create_result_store"])
                register(self.manager.queries[name] for name in PREPARED_STATEMENTS)
        self._store_ready = True

    @contextlib.contextmanager
    def _single(self) -> Iterator[Connection]:
        """This thread's autocommit connection: a single statement commits as it ends (one round
        trip, no BEGIN/COMMIT); dropped and reopened after a connection error."""
        self._ensure_store()
        with self.sessions.connection() as conn:
            yield conn

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Connection]:
        self._ensure_store()
        with self.database.connection() as conn:
            try:
                yield conn
                conn.commit()
            except BaseException:
                conn.rollback()
                raise

    def _rows(self, statement: str, params: Mapping[str, Any], conn: Any = None) -> list[dict[str, Any]]:
        """Run one statement: in the caller's transaction, else alone on this thread's session."""
        if conn is not None:
            return self._execute(statement, params, conn)
        with self._single() as session:
            return self._execute(statement, params, session)

    def _execute(self, statement: str, params: Mapping[str, Any], conn: Any) -> list[dict[str, Any]]:
        with self.database.cursor(conn) as cur:
            cur.execute(self.manager.queries[statement], params)
            return list(cur.fetchall()) if cur.description else []


def _precounted() -> dict[str, int]:
    counts = getattr(_local, "chord_counts", None)
    if counts is None:
        counts = _local.chord_counts = {}
    return counts


def _database_url(url: str) -> str:
    """Drop a ``module:Class`` prefix (``transport.backend:PgBossBackend://…``) from the backend URL."""
    scheme, sep, rest = url.partition("://")
    if sep and ":" in scheme:
        return "postgresql://" + rest
    return url


def _to_json_value(value: Any) -> Any:
    """A result in plain JSON types, via Celery's own JSON encoder (datetimes, UUIDs, decimals...)."""
    if value is None:
        return None
    return json.loads(kombu_json.dumps(value))


def _from_json_value(value: Any) -> Any:
    """The inverse of :func:`_to_json_value`: revive kombu's tagged types (``{"__type__": ...}``)."""
    if isinstance(value, dict | list):
        return kombu_json.loads(json.dumps(value))
    return value


def _exception_dict(output: Any) -> dict[str, Any]:
    """Celery's exception dict for a job output: ours carries it; Node's {name, message} is mapped."""
    if (
        isinstance(output, dict)
        and isinstance(output.get("__celery"), dict)
        and "exc_type" in output["__celery"]
    ):
        return output["__celery"]
    if isinstance(output, dict) and "value" in output and "message" not in output:
        output = output["value"]  # pg-boss's own failures: {"value": {"message": "job timed out"}}
    if isinstance(output, dict):
        name, message = output.get("name") or "Error", output.get("message", "")
    else:
        name, message = "Error", "" if output is None else str(output)
    if not isinstance(name, str) or not name.isidentifier():
        name = "Error"
    return {"exc_type": name, "exc_module": None, "exc_message": [str(message)]}


def _extended_fields(job: Mapping[str, Any]) -> dict[str, Any]:
    """result_extended fields from the job: Celery's envelope under data["__celery"], else Node's job."""
    data = job.get("data")
    data = data if isinstance(data, dict) else {}
    envelope = data.get(RESERVED_KEY) if isinstance(data.get(RESERVED_KEY), dict) else {}
    headers = envelope.get("headers") if isinstance(envelope.get("headers"), dict) else {}
    fields = {
        "name": envelope.get("task") or job["name"],
        "args": envelope.get("args") or [],
        "kwargs": {k: v for k, v in data.items() if k != RESERVED_KEY},
        "queue": job["name"],
        "retries": headers.get("retries", 0) if envelope else job.get("retry_count"),
        "worker": None,
    }
    if headers.get("group"):
        fields["group_id"] = headers["group"]
    if headers.get("parent_id"):
        fields["parent_id"] = headers["parent_id"]
    return fields


@signals.task_postrun.connect(weak=False)
def _settle_ignored(task: Any = None, task_id: str | None = None, state: str | None = None, **_: Any) -> None:
    if state == states.IGNORED and task is not None and task_id is not None:
        backend = task.backend
        if isinstance(backend, PgBossBackend):
            backend.settle_ignored(task_id, task.request)
