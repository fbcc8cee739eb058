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
* ``AsyncResult.get()`` is pushed: waiters subscribe to the state channel, which every job
  transition NOTIFYs, on the process's one LISTEN connection (:mod:`transport.hub`, shared with the
  broker and the API), and use the process's one pool. A claim announces a job running (``active``)
  only while some session holds the state presence; this process holds it while anything is waited on.
* What is not a job row (group metadata, chord counters, results of tasks that never were jobs,
  progress states and children lists) lives in ``<schema>_zeke.result``. A chord counts each header
  task once (``<schema>_zeke.chord_part``), committed together with the header task's completion, so
  a redelivered duplicate cannot count twice and there is no ``chord_unlock`` polling; the last part
  reads all header results in one query and sends the body, and no task ever waits on another.
* ``Task.replace``: the replaced job completes marked as replaced and its id reads PENDING; the
  replacement's final task, which inherits the id, reopens the row (see ``settle_ignored``).
* A task that fails for good stores FAILURE for the tasks chained after it (they never run and have
  no job row), so their ``get()`` raises as on Redis.

Connection String
=================
``pgboss://[USER[:PASSWORD]@]HOST[:PORT]/DATABASE`` (``postgres://`` and ``postgresql://`` work too).

Options
=======
``result_backend_transport_options`` (falling back to ``broker_transport_options``):

* ``schema``: the pg-boss schema (default ``pgboss``).
* ``max_connections``: most connections the process's pool opens at once (default 8); the pool
  is the process's one per database (:mod:`transport.hub`), the broker's too. ``statement_timeout``,
  ``connect_timeout`` and ``application_name`` as the broker's.
* ``result_retry_seconds``: how long a task's own run keeps trying to write its end through a
  database outage (refused connections included), with backoff (default 300). A success is never
  recorded as a failure; past this the worker hands the job back to its queue to run again.
* ``result_relay``: in a prefork worker, pool children hand plain results to the main process,
  which writes many per statement (default True; see :mod:`transport.result_relay`).

Results of job tasks live as long as their job (``deletion_seconds``); other values follow
``result_expires``. Expired values are swept by the backend itself (``supports_autoexpire``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from celery import signals, states
from celery._state import get_current_task
from celery.backends.asynchronous import AsyncBackendMixin, BaseResultConsumer
from celery.backends.base import BaseKeyValueStoreBackend, _is_request_ignore_result
from celery.canvas import maybe_signature
from celery.exceptions import ChordError, Ignore, ImproperlyConfigured, NotRegistered
from celery.result import GroupResult, task_join_will_block
from kombu.exceptions import EncodeError
from kombu.utils import json as kombu_json

from transport import celery_options, outputs, pids, result_relay
from transport.db import CONNECTION_ERRORS, Connection
from transport.envelope import RESERVED_KEY, job_id_for, request_attempt
from transport.errors import InvalidValue
from transport.hub import hub_from_options
from transport.listener import Subscription
from transport.outage import Backoff, Outage
from transport.redact import redact_url
from transport.sessions import Sessions

logger = logging.getLogger("transport.backend")
_T = TypeVar("_T")

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
#: What storing a result that PostgreSQL or JSON cannot hold raises (a NUL in a string, NaN, an
#: object kombu cannot encode).
UNSTORABLE = (InvalidValue, TypeError, ValueError)
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
#: Seconds a waiter pauses after losing the database before it tries again, doubling (with jitter)
#: on each failed attempt up to RECONNECT_MAX_DELAY.
RECONNECT_DELAY = 0.5
RECONNECT_MAX_DELAY = 5.0
#: Most task ids remembered as published by this process (older ones are simply re-read).
PUBLISHED_MAX = 10_000
#: Waits begun or ended and publishes noted, but not applied yet, past which the next one applies them.
PENDING_OPS_MAX = 1024
#: The kinds of those (see PgBossResultConsumer._apply_ops).
_JOIN, _LEAVE, _PUBLISHED = "join", "leave", "published"
#: Statements run prepared: planning them costs more than running them (see transport.prepared).
#: Statements that look jobs up by id (get_job, get_task_results, set_result, fail_jobs, cancel_jobs)
#: are planned per call instead: generic plans made while a queue was small kept scanning it as it grew.
PREPARED_STATEMENTS = (
    "get_results",
    "incr_result",
    "complete_jobs",
)
#: Seconds a task's own run keeps trying to write its end through a database outage (then the job
#: is handed back to its queue); ``result_retry_seconds`` in the transport options.
RESULT_RETRY_SECONDS = 300.0
#: Expired values are swept at most this often per process.
SWEEP_INTERVAL = 600.0
SWEEP_BATCH = 1000


class ResultNotStored(Exception):
    """A task ended, but its end could not be written within ``result_retry_seconds``: the worker's
    main process hands its job back to the queue (or lets it go), never records it as failed."""


def _running_now(task_id: str) -> bool:
    """Whether this thread is inside the run of ``task_id`` (a pool child, or a solo worker), where
    waiting for the database holds up nothing but this task."""
    task = get_current_task()
    return task is not None and getattr(task.request, "id", None) == task_id


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
        self._lock = threading.Lock()  # guards the maps below and the subscription (see _locked)
        #: Waits begun and ended and publishes, in order, applied to the maps by the next holder of
        #: the lock (see _apply_ops): a Celery group begins and ends a wait for each member as it
        #: sends it, and noting each costs a deque append instead of a turn at the lock. Ending one
        #: never blocks: Celery ends waits from ``AsyncResult.__del__``, and a garbage collection may
        #: run that on a thread that already holds the lock.
        self._ops: deque[tuple[Any, ...]] = deque()
        #: Bumped whenever announcements may have been lost: a publish noted before then is stale.
        self._generation = 0
        self._reader = threading.Lock()  # one thread waits for notices; the rest wait for it
        #: The state channel on the hub's LISTEN connection, and what arrived on it (appended by the
        #: listener thread, taken by the waiting thread).
        self._listening: Subscription | None = None
        self._inbox: deque[str] = deque()
        self._arrived = threading.Event()
        self._pid = pids.current()
        self._reconnected = False
        self._outage = Outage(logger, "result waiter")
        self._backoff = Backoff(first=RECONNECT_DELAY, cap=RECONNECT_MAX_DELAY)
        self._last_reread = time.monotonic()
        #: NOTIFY key (job id, or task id for a stored value) -> task id, for every id waited on.
        self.subscribed: dict[str, str] = {}
        #: Keys of tasks published since LISTEN began -> whether their end has been announced.
        self._published: OrderedDict[str, bool] = OrderedDict()
        #: Task id -> its re-read pace, for every task waited on.
        self._paces: dict[str, _Pace] = {}
        #: Whether the LISTEN connection holds the state presence for us: while anything is waited
        #: on, so claims announce jobs running (``active``) and paces can slow down (see _Pace).
        self._present = False

    def start(self, initial_task_id: str, **kwargs: Any) -> None:
        self.consume_from(initial_task_id)

    def consume_from(self, task_id: str) -> None:
        self._ops.append((_JOIN, task_id, time.monotonic()))
        if not self._present:  # the first wait takes the state presence now
            with self._lock:
                self._apply_ops()
        else:
            self._apply_if_many()
        self.listening()

    def cancel_for(self, task_id: str) -> None:
        self._ops.append((_LEAVE, task_id))
        self._apply_if_many()

    def _apply_if_many(self) -> None:
        """Apply the noted ones once many are pending and the lock is free (never waits for it)."""
        if len(self._ops) > PENDING_OPS_MAX and self._lock.acquire(blocking=False):
            try:
                self._apply_ops()
            finally:
                self._lock.release()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self._lock:
            self._apply_ops()
            yield

    def _apply_ops(self) -> None:
        """Apply the noted waits and publishes to the maps, in order (the lock held)."""
        ops = self._ops
        if not ops:
            return  # nothing changed: the presence stays as it is
        while ops:
            op = ops.popleft()
            kind, task_id = op[0], op[1]
            keys = _notify_keys(task_id)
            if kind is _JOIN:
                for key in keys:
                    self.subscribed[key] = task_id
                if task_id not in self._paces:
                    self._paces[task_id] = _Pace(due=op[2] + REREAD_FIRST, since=op[2])
            elif kind is _LEAVE:
                for key in keys:
                    self.subscribed.pop(key, None)
                    self._published.pop(key, None)
                self._paces.pop(task_id, None)
            elif op[2] == self._generation:  # _PUBLISHED, with no loss since
                self._published[keys[0]] = False
                if len(self._published) > PUBLISHED_MAX:
                    self._published.popitem(last=False)
        self._presence()

    def _presence(self) -> None:
        """Hold the state presence while anything is waited on (the lock held). A claim made before
        it is held announces nothing: its waiter re-reads at the pace of an unannounced job."""
        want = bool(self.subscribed) and self._pid == pids.current()
        if want != self._present:
            self._present = want
            listener = self.backend.hub.listener
            (listener.hold if want else listener.release)(self.backend.manager.state_presence)

    def published(self, task_id: str) -> None:
        """Called before ``task_id`` is sent: from now on its end is announced to this process."""
        generation = self._generation  # read before LISTEN is checked: a loss after it voids the note
        self.listening()
        self._ops.append((_PUBLISHED, task_id, generation))
        self._apply_if_many()

    def on_after_fork(self) -> None:
        with self._locked():
            self._forget_inherited()

    def stop(self) -> None:
        """Leave the state channel (this process's subscription only); waiting again subscribes."""
        with self._locked():
            listening, self._listening = self._listening, None
            present, self._present = self._present, False
        if present and self._pid == pids.current():
            self.backend.hub.listener.release(self.backend.manager.state_presence)
        if listening is not None and self._pid == pids.current():
            listening.close()

    def listening(self) -> Subscription:
        """The state channel's subscription, made on first use and listened on before this returns:
        before any re-read, so no NOTIFY is missed. Raises a connection error when the database
        cannot be reached."""
        listening = self._listening
        if listening is not None and listening.listening and self._pid == pids.current():
            return listening  # the common case, every publish and wait: no lock needed to see it
        with self._locked():
            if self._pid != pids.current():
                self._forget_inherited()
            listening = self._listening
            if listening is None:
                listening = self._listening = self.backend.hub.listener.subscribe(
                    (self.backend.manager.state_channel,), self._on_notice, on_lost=self._on_lost
                )
        if not listening.listening:
            listening.wait(self.backend.connect_timeout)
        return listening

    # Called on the listener thread: queue and wake, nothing more.

    def _on_notice(self, channel: str, payload: str) -> None:
        self._inbox.append(payload)
        self._arrived.set()

    def _on_lost(self, exc: BaseException) -> None:
        with self._locked():
            self._reconnected = True  # re-read everything once listening again
            self._forget_announcements()
        self._arrived.set()

    def _forget_inherited(self) -> None:
        # The subscription and the presence were the parent's (the hub forgot them at fork).
        self._listening, self._pid, self._present = None, pids.current(), False
        self._inbox.clear()
        self.subscribed.clear()
        self._forget_announcements()
        self._paces.clear()
        self._ops.clear()

    def _forget_announcements(self) -> None:
        """Announcements may have been lost with the connection (the lock held)."""
        self._generation += 1
        self._published.clear()

    def on_wait_for_pending(self, result: Any, **kwargs: Any) -> None:
        # LISTEN is already up (consume_from ran in add_pending_result), so a result stored before
        # the wait began is found here and one stored after it is announced. A task this process
        # published while listening, whose end has not been announced, cannot have one stored yet.
        if not hasattr(result, "results"):
            with self._locked():
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
        with self._locked():
            idle = not self.subscribed
        if idle:
            if timeout:
                time.sleep(timeout)
            return
        try:
            self.listening()
            if self._reconnected:
                self._reconnected = False
                self._reread_all()  # anything may have happened while we were away
            if not self._inbox:
                wait = min(timeout if timeout is not None else REREAD_INTERVAL, REREAD_INTERVAL)
                self._arrived.wait(min(wait, self._until_due()))
            self._arrived.clear()
            payloads = []
            while self._inbox:
                payloads.append(self._inbox.popleft())
            wanted: set[str] = set()
            with self._locked():
                for payload in payloads:
                    key, _, state = payload.partition(" ")
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
            # The LISTEN connection or a re-read lost the database (a restart): waiters keep waiting,
            # and once connected again everything waited for is re-read.
            self._outage.failed(exc)
            with self._locked():
                self._reconnected = True
                self._forget_announcements()
            delay = self._backoff.next()
            time.sleep(delay if timeout is None else min(timeout, delay))
        else:
            if self._outage.down:
                self._backoff.reset()
                self._outage.succeeded()

    def _until_due(self) -> float:
        """Seconds until the next task is due for a re-read (REREAD_INTERVAL when none waits)."""
        with self._locked():
            due = min((pace.due for pace in self._paces.values()), default=None)
        return REREAD_INTERVAL if due is None else max(0.0, due - time.monotonic())

    def _reread_due(self) -> None:
        now = time.monotonic()
        with self._locked():
            ids = {task_id for task_id, pace in self._paces.items() if pace.due <= now}
        self._reread(ids)

    def _reread_all(self) -> None:
        self._last_reread = time.monotonic()
        with self._locked():
            ids = set(self.subscribed.values())
        self._reread(ids)

    def _reread(self, task_ids: Iterable[str]) -> None:
        ids = list(task_ids)
        if not ids:
            return
        metas = self.backend.task_metas(ids)
        now = time.monotonic()
        with self._locked():
            for task_id in ids:
                if (pace := self._paces.get(task_id)) is not None:
                    pace.after_read(now, (metas.get(task_id) or {}).get("status"))
        for meta in metas.values():
            self.on_state_change(meta, None)


def _notify_keys(task_id: str) -> tuple[str, ...]:
    """What a NOTIFY about this task names: its job id, and the task id itself for stored values."""
    job_id = job_id_for(task_id) or str(task_id)
    return (job_id,) if job_id == str(task_id) else (job_id, str(task_id))


class PgBossBackend(BaseKeyValueStoreBackend, AsyncBackendMixin):
    """Results of pg-boss jobs from their rows; everything else in ``<schema>_zeke.result``."""

    ResultConsumer = PgBossResultConsumer

    key_t = str
    #: Chords are counted by our own apply_chord/on_chord_part_return, not Celery's generic incr path.
    implements_incr = False
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
        #: The process's pool and LISTEN connection for this database (the broker's too).
        self.hub = hub_from_options(self.url, options, application_name="zeke-results")
        self.hub.acquire()
        self._released = False
        self.connect_timeout = float(options.get("connect_timeout", 10.0))
        self.database = self.hub.db
        self.manager = self.hub.manager(str(options.get("schema") or "pgboss"))
        #: Autocommit checkouts: every hot path here is a single statement.
        self.sessions = Sessions(self.database)
        self.extended = bool(conf.find_value_for_key("extended", "result"))
        self.result_retry_seconds = float(options.get("result_retry_seconds", RESULT_RETRY_SECONDS))
        self.relay_results = _flag(options.get("result_relay", True))
        self._outage = Outage(logger, "result backend")
        self._store_ready = False
        self._store_lock = threading.Lock()
        self._last_sweep = time.monotonic()
        self.result_consumer = self.ResultConsumer(
            self, self.app, self.accept, self._pending_results, self._pending_messages
        )

    def close(self) -> None:
        """Leave the LISTEN connection and let go of the hub (the last user closes its idle pooled
        connections); everything reopens on next use."""
        self.result_consumer.stop()
        if not self._released:
            self._released = True
            self.hub.release()

    def as_uri(self, include_password: bool = False) -> str:
        return self.url if include_password else redact_url(self.url)

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
        part = _chord_part(task_id, request)
        value = self.encode_result(result, state) if store else None
        try:
            settled, count = self._through_outage(
                task_id, lambda: self._complete(ref, value, request, part, ignored=not store)
            )
        except UNSTORABLE as exc:
            # Celery records an EncodeError as the task's failure; a retry would return it again.
            raise EncodeError(f"the task's result cannot be stored as pg-boss output: {exc}") from exc
        if not settled:
            logger.warning(
                "result backend: job %s is no longer active in attempt %s; result dropped",
                ref.id,
                ref.attempt,
            )
            return
        if part is not None:
            self._chord_part_returned(request, part, count)

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
        if isinstance(exc, ResultNotStored):
            # Not the task's failure: the database was away for too long. The process heartbeating
            # the job (the worker's main process) hands it back; a pool child passes the error on.
            if not self.hub.holds(ref.id):
                raise exc
            self._hand_back(ref, exc)
            return
        if not ref.active:
            logger.warning(
                "result backend: job %s already left state active; failure of %s dropped", ref.id, task_id
            )
            return
        try:
            # A task this worker does not know is not worth retrying (Celery drops such a message).
            output = self._error_output(exc, traceback)
            if isinstance(exc, NotRegistered):
                output["message"] = f"no task named {exc} is registered in this worker"
            retry = not isinstance(exc, NotRegistered) and self._may_retry(exc, request)
            moved = self._through_outage(task_id, lambda: self._fail(ref, output, retry=retry))
        except CONNECTION_ERRORS as error:
            # Nothing could be recorded. In the worker's main process (where a pool child's failure
            # to write lands) the job is then let go: pg-boss retries it after its heartbeat
            # timeout, instead of it staying active, heartbeated, until its expiry.
            if not self.hub.release_job(ref.id):
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
        self._after_failure(exc, traceback, request, store_result, call_errbacks, state)

    def _after_failure(
        self,
        exc: BaseException,
        traceback: str | None,
        request: Any,
        store_result: bool,
        call_errbacks: bool,
        state: str,
    ) -> None:
        """What a failure means beyond the job's own row (failed already): its chord part returns,
        every task chained after it is stored as failed too (they never run, and have no job row),
        and its errbacks are called, as Celery's ``mark_as_failure`` does after storing the result."""
        if request is None:
            return
        if getattr(request, "chord", None):
            self.on_chord_part_return(request, state, exc)
        chain = getattr(request, "chain", None)
        self._fail_chain(chain, exc, traceback, store_result=store_result, state=state)
        if call_errbacks and getattr(request, "errbacks", None):
            self._call_task_errbacks(request, exc, traceback)

    def _through_outage(self, task_id: str, write: Callable[[], _T]) -> _T:
        """``write()``; inside the task's own run, connection errors (a restart, a refused connection,
        too many clients) are tried again with backoff until the database is back, for up to
        ``result_retry_seconds``: a task that ended is never recorded as failed, nor run again,
        because the database was away for a moment. Then :class:`ResultNotStored`."""
        if not _running_now(task_id):
            return write()
        backoff = Backoff(first=0.2, cap=5.0)
        deadline = time.monotonic() + self.result_retry_seconds
        while True:
            try:
                value = write()
            except CONNECTION_ERRORS as exc:
                self._outage.failed(exc)
                delay = backoff.next()
                if time.monotonic() + delay > deadline:
                    raise ResultNotStored(
                        f"the end of task {task_id} could not be written for "
                        f"{self.result_retry_seconds:g} s: {exc}"
                    ) from exc
                time.sleep(delay)
            else:
                self._outage.succeeded()
                return value

    def _capped(self, queue: str) -> bool:
        """Whether the queue has a global concurrency limit: its jobs' ends are written by the child
        itself, so that the ack that frees the slot (and wakes the workers the cap held back) comes
        after the end is committed."""
        limits = (self.app.conf.broker_transport_options or {}).get("concurrency_limits") or {}
        return queue in limits

    def hand_back_job(self, queue: str, job_id: str, attempt: int | None, exc: BaseException) -> None:
        """:meth:`_hand_back` for the result relay, which knows a job by queue, id and attempt."""
        self._hand_back(JobRef(queue, job_id, attempt), exc)

    def _hand_back(self, ref: JobRef, exc: BaseException) -> None:
        """Put a job whose end could not be written back in its queue, as if never fetched (no
        attempt is used); if even that cannot be written, let it go: pg-boss retries it once its
        heartbeat runs out."""
        try:
            handed = self.hub.hand_back(ref.id, ref.queue, ref.attempt)
        except CONNECTION_ERRORS as error:
            self.hub.release_job(ref.id)
            logger.error(
                "result backend: could not record the end of job %s (%s); pg-boss retries it once its "
                "heartbeat runs out",
                ref.id,
                error,
            )
            return
        if handed:
            logger.warning("result backend: job %s handed back to its queue to run again: %s", ref.id, exc)

    def _may_retry(self, exc: Any, request: Any) -> bool:
        """Whether pg-boss may retry this failure (within the job's retry budget): not when a retry
        cannot mend it, nor when Celery decides about the task's raises (it already retried, or
        chose not to); see :mod:`transport.celery_options`."""
        task = self._task_of(request)
        if celery_options.never_succeeds(exc, task, request):
            return False
        if celery_options.attempt_lost(exc, request):
            return True  # its worker process died, or it outlived its job's expire_seconds
        return celery_options.raise_is_retried_by_pgboss(task, request)

    def _task_of(self, request: Any) -> Any:
        task = getattr(request, "task", None) if request is not None else None
        if isinstance(task, str):
            return self.app.tasks.get(task)
        return task

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
            self._fail(ref, self._error_output(result, traceback), retry=self._may_retry(result, request))
        elif state == states.RETRY and result is not None and ref.attempt is not None:
            # self.retry(exc=...): the row is back in retry already (the republish); keep why.
            with self._single() as conn:
                self.manager.set_retry_output(
                    ref.queue, ref.id, self._error_output(result, traceback), retry_count=ref.attempt
                )
        elif state == states.REVOKED:
            with self._single() as conn:
                self.manager.cancel(ref.queue, [ref.id], conn=conn)
        elif state not in (states.STARTED, states.RETRY, states.PENDING, *states.READY_STATES):
            # A custom state (update_state(state="PROGRESS", meta=...)): kept beside the job for as
            # long as the job lives, and shown while the job is unfinished.
            meta = self._get_result_meta(result=result, state=state, traceback=traceback, request=request)
            meta["task_id"] = ref.id
            self._set(self.get_key_for_task(ref.id), self.encode(meta), state=state, job=ref)
        # STARTED: the row already says so (fetched active; read as STARTED when the task tracks it).
        return result

    def settle_ignored(self, task_id: str, request: Any, replaced: bool = False) -> None:
        """A task raised Ignore (Celery's ``Task.replace`` among others): Celery writes nothing, but
        the job must not stay active (heartbeated, then run again). It completes with no output, or,
        when replaced, with :data:`outputs.REPLACED_OUTPUT`: the id then reads as not finished until
        the replacement's final task (which inherits the id) ends, and that task's publish reopens
        this row (``JobManager.renew_replaced``). A replacement sent with the same id to the same
        queue while this row was active has already moved it back to retry for its own run, and the
        attempt fence leaves it alone. Only a worker's request names the row (queue and attempt):
        looked up by id, a replaced task's id finds its replacement."""
        ref = request_job_ref(task_id, request)
        if ref is not None:
            # No children kept for a replaced task: its id's result is the replacement's.
            value = outputs.REPLACED_OUTPUT if replaced else None
            self._complete(ref, value, request, None, keep_children=False)

    def _complete(
        self,
        ref: JobRef,
        value: Any,
        request: Any,
        part: tuple[str, str] | None,
        keep_children: bool = True,
        *,
        ignored: bool = False,
    ) -> tuple[bool, tuple[int, int | None] | None]:
        """Complete the job and, in the same transaction, count the chord part and keep its children.
        ``ignored``: Celery does not store this result (ignore_result); the row then reads PENDING."""
        count = None
        children = self.current_task_children(request) if value is not None and keep_children else []
        json_value = _to_json_value(value)
        result = [(ref.id, json_value, ref.attempt)]
        if part is None and not children:
            relay = None if self._capped(ref.queue) else result_relay.of_app(self.app)
            if relay is not None and relay.hand(ref.queue, ref.id, ref.attempt, json_value, ignored=ignored):
                return True, None  # the main process writes it (durably, before get() can see it)
            with self._single() as conn:
                return bool(self.manager.complete(ref.queue, result, conn=conn, ignored=ignored)), None
        with self._transaction() as conn:
            done = self.manager.complete(ref.queue, result, conn=conn, ignored=ignored)
            if done and part is not None:
                count = self._count_chord_part(part[0], part[1], request, conn=conn)
            if done and children:
                meta = {"task_id": ref.id, "status": states.SUCCESS, "children": children}
                self._set(self.get_key_for_task(ref.id), self.encode(meta), job=ref, conn=conn)
        return bool(done), count

    def _fail(self, ref: JobRef, output: dict[str, Any], *, retry: bool = True) -> list[dict[str, Any]]:
        attempts = {ref.id: ref.attempt} if ref.attempt is not None else None
        with self._single() as conn:
            return self.manager.fail(ref.queue, [ref.id], output, attempts=attempts, retry=retry, conn=conn)

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
        ids = [j for j in job_ids.values() if j]
        rows = self._store(lambda conn: self.manager.results.task_results(ids, keys, self.extended, conn))
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
        task = self.app.tasks.get(job["task_name"]) if job.get("task_name") else None
        if self._ignored(job, task) and not (state == states.FAILURE and self._errors_kept(task)):
            # As Celery: an ignored result is never stored, so it reads PENDING.
            return {
                "task_id": task_id,
                "status": states.PENDING,
                "result": None,
                "traceback": None,
                "children": [],
                "date_done": None,
            }
        if state == states.STARTED and not self._tracked(task):
            state = states.PENDING  # STARTED only when the task tracks it (task_track_started)
        output = job["output"]
        if state == states.SUCCESS and outputs.is_replaced(output):
            # Replaced (Task.replace): the replacement's final task has not reopened the row yet.
            return {"task_id": task_id, "status": states.PENDING, "result": None, "children": []}
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

    def _ignored(self, job: Mapping[str, Any], task: Any) -> bool:
        flag = job.get("ignore_result")
        if isinstance(flag, bool):
            return flag
        if task is not None and task.ignore_result is not None:
            return bool(task.ignore_result)
        return bool(self.app.conf.task_ignore_result) and job.get("task_name") is not None

    def _errors_kept(self, task: Any) -> bool:
        if task is not None:
            return bool(task.store_errors_even_if_ignored)
        return bool(self.app.conf.task_store_errors_even_if_ignored)

    def _tracked(self, task: Any) -> bool:
        if task is not None:
            return bool(task.track_started)
        return bool(self.app.conf.task_track_started)

    # -- key/value primitives (BaseKeyValueStoreBackend) ---------------------------------------

    def get(self, key: str) -> str | None:
        return self.mget([key])[0]

    def mget(self, keys: Sequence[str]) -> list[str | None]:
        keys = [str(k) for k in keys]
        prefix = self.task_keyprefix
        task_ids = [k[len(prefix) :] for k in keys if k.startswith(prefix)]
        metas = self._raw_metas(task_ids) if task_ids else {}
        others = [k for k in keys if not k.startswith(prefix)]
        stored = self._store(lambda conn: self.manager.results.get(others, conn)) if others else []
        values = {r["key"]: r["value"] for r in stored}
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
        self._store(lambda c: self.manager.results.set(params, c), conn)
        self._maybe_sweep()

    def delete(self, key: str) -> None:
        self._store(lambda conn: self.manager.results.delete([str(key)], conn))

    def incr(self, key: str, conn: Any = None) -> int:
        rows = self._store(lambda c: self.manager.results.incr(str(key), self.chord_expires, c), conn)
        return int(rows[0]["counter"])

    # -- chords --------------------------------------------------------------------------------
    # Counted in the database, like Redis's sorted set: each header task adds its part (once per
    # task id) in the transaction that ends its job, and the part that makes the count reach the
    # chord's size collects every header result with one read and sends the body. No task waits
    # on another and no part restores the whole group.

    def apply_chord(self, header_result_args: Any, body: Any, **kwargs: Any) -> None:
        """Before the header is sent: a header of nested groups is saved (its shape is the body's
        argument); a flat one only needs its size, which ``set_chord_size`` may still correct."""
        self.ensure_chords_allowed()
        group_id, results = header_result_args[0], header_result_args[1]
        if not isinstance(results, list | tuple):
            return  # a lazy header: Celery sets the size once it has sent the last task
        header = self.app.GroupResult(*header_result_args)
        if any(isinstance(r, GroupResult) for r in header.results):
            header.save(backend=self)
        else:
            self.set_chord_size(group_id, len(header.results))

    def set_chord_size(self, group_id: str, chord_size: int) -> None:
        key = self.get_key_for_chord(group_id)
        size, expires = str(chord_size), self.chord_expires
        self._store(lambda conn: self.manager.results.set_chord_size(key, size, expires, conn))

    def _count_chord_part(
        self, group_id: str, task_id: str, request: Any, conn: Any = None
    ) -> tuple[int, int | None] | None:
        """Count a header task once: (count, size), or None when it was counted already."""
        index = getattr(request, "group_index", None)
        params = {
            "key": self.get_key_for_chord(group_id),
            "group_id": group_id,
            "task_id": task_id,
            "group_index": index if isinstance(index, int) else None,
            "expires": self.chord_expires,
        }
        rows = self._store(lambda c: self.manager.results.count_chord_part(params, c), conn)
        if not rows:
            return None
        size = rows[0]["value"]
        return int(rows[0]["counter"]), int(size) if size is not None else None

    def on_chord_part_return(self, request: Any, state: str, result: Any, **kwargs: Any) -> None:
        task_id = getattr(request, "id", None)
        part = _chord_part(task_id, request) if task_id else None
        if part is not None:
            self._chord_part_returned(request, part, self._count_chord_part(*part, request))

    def _chord_part_returned(
        self, request: Any, part: tuple[str, str], count: tuple[int, int | None] | None
    ) -> None:
        """A header part has been counted (``count``: parts done, header size): once all are, run the
        chord's body with the header's results. A part that completed counted itself in the same
        transaction (:meth:`_complete`); others are counted by :meth:`on_chord_part_return`."""
        if count is None or count[1] is None or count[0] < count[1]:
            return
        group_id = part[0]
        callback = maybe_signature(request.chord, app=self.app)
        try:
            values = self._chord_header_values(str(group_id))
        except ChordError as exc:
            logger.error("Chord %r raised: %r", group_id, exc)
            self.chord_error_from_stack(callback, exc)
        except Exception as exc:
            logger.exception("Chord %r raised: %r", group_id, exc)
            self.chord_error_from_stack(callback, ChordError(f"Join error: {exc!r}"))
        else:
            try:
                self.app.amqp._retry_publish(callback.delay, values)
            except Exception as exc:
                logger.exception("Chord callback for %r raised: %r", group_id, exc)
                self.chord_error_from_stack(callback, ChordError(f"Callback error: {exc!r}"))
        finally:
            key = self.get_key_for_chord(group_id)
            self._store(lambda conn: self.manager.results.delete_chord(str(group_id), key, conn))

    def _chord_header_values(self, group_id: str) -> list[Any]:
        """The header's results in header order (nested as a saved header is), read in one go;
        ChordError for the first one that failed."""
        saved = self._restore_group(group_id)
        header = saved["result"] if saved else None
        if header is not None:
            ids = [r.id for r in _leaves(header)]
        else:
            ids = self._store(lambda conn: self.manager.results.chord_part_ids(group_id, conn))
        metas = self.task_metas(ids)

        def value(task_id: str) -> Any:
            meta = metas.get(task_id)
            if meta is None or meta["status"] not in states.READY_STATES:
                raise ChordError(f"Dependency {task_id} has no result")
            if meta["status"] in states.PROPAGATE_STATES:
                raise ChordError(f"Dependency {task_id} raised {meta['result']!r}")
            return meta["result"]

        if header is None:
            return [value(i) for i in ids]

        def shaped(node: Any) -> Any:
            if isinstance(node, GroupResult):
                return [shaped(child) for child in node.results]
            return value(node.id)

        return [shaped(node) for node in header.results]

    def expire(self, key: str, value: Any) -> None:
        if str(key).startswith(self.task_keyprefix):
            return  # a job's result lives exactly as long as its job
        self._store(lambda conn: self.manager.results.expire(str(key), value, conn))

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
        return self.manager.results.delete_expired(SWEEP_BATCH)

    def _maybe_sweep(self) -> None:
        if time.monotonic() - self._last_sweep < SWEEP_INTERVAL:
            return
        self._last_sweep = time.monotonic()
        try:
            self._delete_expired()
        except CONNECTION_ERRORS:
            logger.debug("result backend: sweep of expired results failed", exc_info=True)

    # -- plumbing ------------------------------------------------------------------------------

    def _ensure_store(self, session: Connection | None = None) -> None:
        """Create the result store once per process: on ``session`` (an autocommit connection, in a
        transaction of its own) when given, else on a pooled connection."""
        if self._store_ready:
            return
        with self._store_lock:
            if self._store_ready:
                return
            if session is None:
                self.manager.results.install()
            else:
                session.autocommit = False
                try:
                    self.manager.results.install(session)
                    session.commit()
                except BaseException:
                    if not session.closed:
                        session.rollback()
                    raise
                finally:
                    if not session.closed:
                        session.autocommit = True
            self.manager.sql.prepare(PREPARED_STATEMENTS)
        self._store_ready = True

    @contextlib.contextmanager
    def _single(self) -> Iterator[Connection]:
        """An autocommit checkout of the pool: a single statement commits as it ends (one round
        trip, no BEGIN/COMMIT); dropped after a connection error. The store is created on it too, and
        the schema read before it is taken, so that a pool child holds one connection, never two."""
        self.manager.queries  # noqa: B018  (read on a connection of its own: before ours is taken)
        with self.sessions.connection() as conn:
            self._ensure_store(conn)
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

    def _store(self, call: Callable[[Any], _T], conn: Any = None) -> _T:
        """One call of the result store: in the caller's transaction, else alone on this thread's
        session."""
        if conn is not None:
            return call(conn)
        with self._single() as session:
            return call(session)


def _chord_part(task_id: str, request: Any) -> tuple[str, str] | None:
    """(group id, task id) of a chord header task, else None."""
    group_id = getattr(request, "group", None) if request is not None else None
    if group_id and getattr(request, "chord", None):
        return str(group_id), str(task_id)
    return None


def _leaves(node: Any) -> Iterator[Any]:
    if isinstance(node, GroupResult):
        for child in node.results:
            yield from _leaves(child)
    else:
        yield node


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
        "retries": job.get("retry_count"),  # one budget: request.retries is the job's retry_count
        "worker": None,
    }
    if headers.get("group"):
        fields["group_id"] = headers["group"]
    if headers.get("parent_id"):
        fields["parent_id"] = headers["parent_id"]
    return fields


#: What Celery's ``Task.on_replace`` raises (``Ignore``) once the replacement is sent.
_REPLACED_MESSAGE = "Replaced by new task"


@signals.task_postrun.connect(weak=False)
def _settle_ignored(
    task: Any = None, task_id: str | None = None, state: str | None = None, retval: Any = None, **_: Any
) -> None:
    if state == states.IGNORED and task is not None and task_id is not None:
        backend = task.backend
        if isinstance(backend, PgBossBackend):
            replaced = isinstance(retval, Ignore) and str(retval) == _REPLACED_MESSAGE
            backend.settle_ignored(task_id, task.request, replaced=replaced)


def _flag(value: Any) -> bool:
    """A boolean option, also from a URL query or environment text ("false", "0", "no", "off")."""
    if isinstance(value, str):
        return value.strip().lower() not in ("", "0", "false", "no", "off")
    return bool(value)


celery_options.connect()  # results of tasks sent from this process honour the task's ignore_result
