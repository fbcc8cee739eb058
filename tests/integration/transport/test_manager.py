"""The pg-boss job state machine (transport.manager.JobManager) read back from the job table itself.

Part one is a table: every transition a job row can take, each with the row's column values read
straight from ``<schema>.job`` afterwards (send with queue defaults and every option form; fetch;
complete with Node's output shapes and the attempt fence; fail with backoff, fixed delay, cap, limit,
dead letter and the stately fallback; cancel/resume/retry/restore/touch/delete; supervisor expiry and
heartbeat loss; deletion rules). Part two covers behaviour that spans rows: policies, SKIP LOCKED,
ordering, batches, start_after, global concurrency limits, NOTIFY. Part three is bad input at the
edge: each error leaves nothing half-written.

Time is the database's (``manager.now()``). Where pg-boss's rules need hours or days to pass, the test
moves the schema's clock the way pg-boss's own TestClock does: it redefines ``<schema>.job_now()``,
which every statement of schema 42+ reads. Each test has a schema of its own (``boss`` fixture).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.dbutil import drain, listen
from transport import names, outputs
from transport.db import Database
from transport.exceptions import InvalidJobId, InvalidOption, InvalidPayload, InvalidQueueName, QueueNotFound
from transport.manager import FetchedJob, JobManager

pytestmark = pytest.mark.own_database("sm")

Q = "q"
DLQ = "dlq"
ERROR = outputs.error_output(ValueError("boom"), "ValueError: boom\n  at test")
DAY = 24 * 3600
DELETED = object()  # expectation: the row is gone


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


class Ctx:
    """One case's world: the manager, marks taken around the transition under test, labelled ids."""

    def __init__(self, boss: JobManager) -> None:
        self.boss = boss
        self.t0: dt.datetime | None = None
        self.t1: dt.datetime | None = None
        self.before: dict[str, Any] | None = None
        self.ids: dict[str, str] = {}
        self.clock_offset = 0.0

    def row(self, job_id: str) -> dict[str, Any] | None:
        return job_row(self.boss, job_id)

    def send(self, data: Any = None, queue: str = Q, **options: Any) -> str:
        job_id = self.boss.send(queue, {"n": 1} if data is None else data, **options)
        assert job_id is not None, "send was deduplicated"
        return job_id

    def fetch(self, queue: str = Q, expect: str | None = None) -> FetchedJob:
        jobs = self.boss.fetch([queue])
        assert len(jobs) == 1, f"fetched {jobs}"
        if expect is not None:
            assert jobs[0].id == expect
        return jobs[0]

    def active(self, **send_options: Any) -> FetchedJob:
        """A job sent and fetched: state active."""
        job_id = self.send(**send_options)
        return self.fetch(expect=job_id)

    @contextlib.contextmanager
    def transition(self, job_id: str) -> Iterator[None]:
        """Mark the database time just before and after the transition under test."""
        self.before = self.row(job_id)
        self.t0 = self.boss.now()
        yield
        self.t1 = self.boss.now()

    def shift_clock(self, seconds: float) -> None:
        """Move this schema's clock forward (pg-boss TestClock style: redefine job_now())."""
        self.clock_offset += seconds
        shift_clock(self.boss, self.clock_offset)


def job_row(boss: JobManager, job_id: str) -> dict[str, Any] | None:
    with boss.db.cursor() as cur:
        cur.execute(f'SELECT * FROM "{boss.schema}".job WHERE id = %s', (job_id,))
        row = cur.fetchone()
    return dict(row) if row else None


def rows_of(boss: JobManager, queue: str) -> list[dict[str, Any]]:
    with boss.db.cursor() as cur:
        cur.execute(f'SELECT * FROM "{boss.schema}".job WHERE name = %s ORDER BY created_on', (queue,))
        return [dict(r) for r in cur.fetchall()]


def count(boss: JobManager, table: str) -> int:
    boss.info  # noqa: B018  (installs the schema first)
    with boss.db.cursor() as cur:
        cur.execute(f'SELECT count(*) AS n FROM "{boss.schema}".{table}')
        return int(cur.fetchone()["n"])


def shift_clock(boss: JobManager, seconds: float) -> None:
    assert "job_now" in boss.info.features
    with boss.db.cursor() as cur:
        cur.execute(
            f'CREATE OR REPLACE FUNCTION "{boss.schema}".job_now() RETURNS timestamp with time zone '
            f"LANGUAGE sql STABLE AS $$ SELECT pg_catalog.now() + interval '{float(seconds)} seconds' $$"
        )


@dataclass(frozen=True)
class Check:
    """An expectation computed from the case (marks, the row before, the row after)."""

    text: str
    test: Callable[[Ctx, dict[str, Any], str], bool]

    def __repr__(self) -> str:
        return self.text


def now_plus(low: float, high: float | None = None) -> Check:
    """The database time of the transition plus [low, high] seconds."""
    high = low if high is None else high

    def test(ctx: Ctx, row: dict[str, Any], col: str) -> bool:
        value = row[col]
        assert ctx.t0 and ctx.t1, "the case did not mark its transition"
        return value is not None and (
            ctx.t0 + dt.timedelta(seconds=low) <= value <= ctx.t1 + dt.timedelta(seconds=high)
        )

    return Check(f"now+[{low},{high}]s", test)


NOW = now_plus(0)


def col_plus(other: str, seconds: float) -> Check:
    return Check(
        f"{other}+{seconds}s",
        lambda ctx, row, col: row[col] == row[other] + dt.timedelta(seconds=seconds),
    )


UNCHANGED = Check("unchanged", lambda ctx, row, col: ctx.before is not None and row[col] == ctx.before[col])
LATER = Check("later", lambda ctx, row, col: ctx.before is not None and row[col] > ctx.before[col])


def of_label(label: str) -> Check:
    return Check(f"id of {label}", lambda ctx, row, col: str(row[col]) == ctx.ids[label])


def created_on_of(label: str) -> Check:
    return Check(
        f"created_on of {label}",
        lambda ctx, row, col: row[col] == ctx.row(ctx.ids[label])["created_on"],
    )


def slot_of_created_on(seconds: int) -> Check:
    """pg-boss's throttle slot: UTC wall time floor(epoch / s) * s."""

    def test(ctx: Ctx, row: dict[str, Any], col: str) -> bool:
        epoch = row["created_on"].timestamp()
        slot = dt.datetime.fromtimestamp(math.floor(epoch / seconds) * seconds, dt.UTC).replace(tzinfo=None)
        return row[col] == slot

    return Check(f"slot({seconds}s) of created_on", test)


def check_row(ctx: Ctx, row: dict[str, Any] | None, expect: Any, label: str) -> None:
    if expect is DELETED:
        assert row is None, f"{label}: expected the row to be deleted, found {row}"
        return
    assert row is not None, f"{label}: row missing"
    wrong = {}
    for col, want in expect.items():
        assert col in row, f"{label}: no column {col}"
        got = row[col]
        ok = want.test(ctx, row, col) if isinstance(want, Check) else (_plain(got) == want)
        if not ok:
            wrong[col] = (got, want)
    assert not wrong, f"{label}: " + "; ".join(f"{c}={g!r}, expected {w!r}" for c, (g, w) in wrong.items())


def _plain(value: Any) -> Any:
    return str(value) if value.__class__.__name__ == "UUID" else value


# --------------------------------------------------------------------------------------------------
# Part one: the transition table
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    act: Callable[[Ctx], str]
    expect: Any  # {column: value | Check} for the row whose id act returns, or DELETED
    queues: dict[str, dict[str, Any]] = field(default_factory=lambda: {Q: {}})
    also: dict[str, Any] = field(default_factory=dict)  # label (in ctx.ids) -> expectation


SEED_ROW = {
    "state": "created",
    "name": Q,
    "data": {"n": 1},
    "priority": 0,
    "retry_limit": 3,
    "retry_delay": 1,
    "retry_backoff": True,
    "retry_delay_max": None,
    "retry_count": 0,
    "expire_seconds": 3600,
    "deletion_seconds": 7 * DAY,
    "policy": "standard",
    "dead_letter": None,
    "singleton_key": None,
    "singleton_on": None,
    "start_after": NOW,
    "created_on": NOW,
    "started_on": None,
    "completed_on": None,
    "heartbeat_on": None,
    "heartbeat_seconds": None,
    "keep_until": col_plus("start_after", 14 * DAY),  # Node's retention default, seed sets none
    "output": None,
}


def timed_send(**options: Any) -> Callable[[Ctx], str]:
    def act(ctx: Ctx) -> str:
        ctx.t0 = ctx.boss.now()
        job_id = ctx.send(**options)
        ctx.t1 = ctx.boss.now()
        return job_id

    return act


def send_throttled(ctx: Ctx) -> str:
    ctx.t0 = ctx.boss.now()
    first = ctx.send(singleton_key="k", singleton_seconds=3600)
    ctx.t1 = ctx.boss.now()
    assert ctx.boss.send(Q, {"n": 2}, singleton_key="k", singleton_seconds=3600) is None
    # Another key, or no key, is another slot.
    assert ctx.boss.send(Q, {"n": 3}, singleton_key="other", singleton_seconds=3600) is not None
    assert ctx.boss.send(Q, {"n": 4}, singleton_seconds=3600) is not None
    assert ctx.boss.send(Q, {"n": 5}, singleton_seconds=3600) is None
    assert len(rows_of(ctx.boss, Q)) == 3
    return first


def send_key_without_seconds(ctx: Ctx) -> str:
    # pg-boss 10+: a singletonKey alone does not deduplicate on a standard queue.
    first = timed_send(singleton_key="k")(ctx)
    assert ctx.boss.send(Q, {"n": 2}, singleton_key="k") is not None
    return first


def fetch_created(ctx: Ctx) -> str:
    job_id = ctx.send()
    with ctx.transition(job_id):
        ctx.fetch(expect=job_id)
    return job_id


def fetch_reclaim(ctx: Ctx) -> str:
    job = ctx.active()
    ctx.boss.fail(Q, [job.id], ERROR)  # retry_delay 0, no backoff: runnable at once
    with ctx.transition(job.id):
        again = ctx.fetch(expect=job.id)
    assert (job.retry_count, again.retry_count) == (0, 1)
    return job.id


def fetch_after_restore(ctx: Ctx) -> str:
    job = ctx.active()
    assert ctx.boss.restore(Q, [job.id]) == [job.id]
    with ctx.transition(job.id):
        again = ctx.fetch(expect=job.id)
    assert again.retry_count == 0
    return job.id


def complete_with(value: Any) -> Callable[[Ctx], str]:
    def act(ctx: Ctx) -> str:
        job = ctx.active()
        with ctx.transition(job.id):
            assert ctx.boss.complete(Q, [(job.id, value, job.retry_count)]) == [job.id]
        return job.id

    return act


def complete_wrong_attempt(ctx: Ctx) -> str:
    job = ctx.active()
    with ctx.transition(job.id):
        assert ctx.boss.complete(Q, [(job.id, {"late": True}, job.retry_count + 1)]) == []
    return job.id


def complete_twice(ctx: Ctx) -> str:
    job = ctx.active()
    assert ctx.boss.complete(Q, [(job.id, "first", None)]) == [job.id]
    with ctx.transition(job.id):
        assert ctx.boss.complete(Q, [(job.id, "second", None)]) == []
    return job.id


def fail_times(times: int, **fail_options: Any) -> Callable[[Ctx], str]:
    """Fetch and fail ``times`` times; the last failure is the transition under test."""

    def act(ctx: Ctx) -> str:
        job_id = ctx.send()
        for attempt in range(times):
            if attempt:
                # The retry waits out its backoff: move the clock to it instead of sleeping.
                wait = (ctx.row(job_id)["start_after"] - ctx.boss.now()).total_seconds()
                if wait > 0:
                    ctx.shift_clock(wait + 0.001)
            job = ctx.fetch(expect=job_id)
            assert job.retry_count == attempt
            if attempt == times - 1:
                with ctx.transition(job_id):
                    moved = ctx.boss.fail(Q, [job_id], ERROR, attempts={job_id: attempt}, **fail_options)
                assert [m["id"] for m in moved] == [job_id]
            else:
                ctx.boss.fail(Q, [job_id], ERROR)
        return job_id

    return act


def fail_created(ctx: Ctx) -> str:
    job_id = ctx.send()
    with ctx.transition(job_id):
        ctx.boss.fail(Q, [job_id], ERROR)
    return job_id


def fail_wrong_attempt(ctx: Ctx) -> str:
    job = ctx.active()
    with ctx.transition(job.id):
        assert ctx.boss.fail(Q, [job.id], ERROR, attempts={job.id: job.retry_count + 1}) == []
    return job.id


def fail_into_dead_letter(ctx: Ctx) -> str:
    job_id = ctx.send(priority=2, singleton_key="k")
    ctx.ids["main"] = job_id
    ctx.fetch(expect=job_id)
    with ctx.transition(job_id):
        ctx.boss.fail(Q, [job_id], ERROR)
    dead = rows_of(ctx.boss, DLQ)
    assert len(dead) == 1
    ctx.ids["dead"] = str(dead[0]["id"])
    return job_id


def fail_with_retries_left_no_dead_letter(ctx: Ctx) -> str:
    job = ctx.active()
    with ctx.transition(job.id):
        ctx.boss.fail(Q, [job.id], ERROR)
    assert rows_of(ctx.boss, DLQ) == []
    return job.id


def fail_stately_fallback(ctx: Ctx) -> str:
    first = ctx.active(singleton_key="k")
    ctx.boss.fail(Q, [first.id], ERROR)  # first now waits 60 s in the key's one "retry" slot
    second = ctx.active(singleton_key="k")
    with ctx.transition(second.id):
        moved = ctx.boss.fail(Q, [second.id], ERROR)
    assert moved == [
        {"id": second.id, "state": "failed", "start_after": ctx.before["start_after"], "retry_count": 0}
    ]
    assert ctx.row(first.id)["state"] == "retry"
    return second.id


def on_state(setup: Callable[[Ctx], str], action: Callable[[Ctx, str], list[str]], moved: bool = True):
    def act(ctx: Ctx) -> str:
        job_id = setup(ctx)
        with ctx.transition(job_id):
            result = action(ctx, job_id)
        assert result == ([job_id] if moved else []), result
        return job_id

    return act


def created(ctx: Ctx) -> str:
    return ctx.send()


def created_later(ctx: Ctx) -> str:
    return ctx.send(start_after=3600)


def active(ctx: Ctx) -> str:
    return ctx.active().id


def completed(ctx: Ctx) -> str:
    job = ctx.active()
    ctx.boss.complete(Q, [(job.id, "ok", None)])
    return job.id


def cancelled(ctx: Ctx) -> str:
    job_id = ctx.send()
    ctx.boss.cancel(Q, [job_id])
    return job_id


def cancelled_later(ctx: Ctx) -> str:
    job_id = created_later(ctx)
    ctx.boss.cancel(Q, [job_id])
    return job_id


def failed(ctx: Ctx) -> str:
    job = ctx.active(retry_limit=0)
    ctx.boss.fail(Q, [job.id], ERROR)
    return job.id


def touch_later(ctx: Ctx) -> str:
    job = ctx.active()
    ctx.shift_clock(5)
    with ctx.transition(job.id):
        assert ctx.boss.touch(Q, [job.id]) == [job.id]
    return job.id


def expire_after_a_second(retry_limit: int) -> Callable[[Ctx], str]:
    def act(ctx: Ctx) -> str:
        job = ctx.active(expire_in_seconds=1, retry_limit=retry_limit)
        time.sleep(1.2)  # a real second: expire_in_seconds is the smallest pg-boss allows
        with ctx.transition(job.id):
            assert ctx.boss.expire([Q]) == 1
        # The worker finishing late finds nothing to settle: its attempt is over.
        assert ctx.boss.complete(Q, [(job.id, "too late", job.retry_count)]) == []
        assert ctx.boss.complete(Q, [(job.id, "too late", None)]) == []
        return job.id

    return act


def expire_not_due(ctx: Ctx) -> str:
    job = ctx.active()
    ctx.shift_clock(3599)
    with ctx.transition(job.id):
        assert ctx.boss.expire([Q]) == 0
    return job.id


def heartbeat_lost(ctx: Ctx) -> str:
    job = ctx.active(heartbeat_seconds=10)
    ctx.shift_clock(10.5)
    with ctx.transition(job.id):
        assert ctx.boss.fail_lost_heartbeats([Q]) == 1
    return job.id


def heartbeat_kept(ctx: Ctx) -> str:
    job = ctx.active(heartbeat_seconds=10)
    ctx.shift_clock(8)
    ctx.boss.touch(Q, [job.id])
    ctx.shift_clock(8)  # 16 s after the fetch, 8 s after the touch
    with ctx.transition(job.id):
        assert ctx.boss.fail_lost_heartbeats([Q]) == 0
    return job.id


def deletion_after(setup: Callable[[Ctx], str], seconds: float, deleted: int) -> Callable[[Ctx], str]:
    def act(ctx: Ctx) -> str:
        job_id = setup(ctx)
        ctx.shift_clock(seconds)
        with ctx.transition(job_id):
            assert ctx.boss.delete_finished([Q]) == deleted
        return job_id

    return act


def completed_never_deleted(ctx: Ctx) -> str:
    job = ctx.active(delete_after_seconds=0)
    ctx.boss.complete(Q, [(job.id, "ok", None)])
    return job.id


def queued_short_retention(ctx: Ctx) -> str:
    return ctx.send(retention_seconds=60)


def active_short_retention(ctx: Ctx) -> str:
    return ctx.active(retention_seconds=60).id


FIXED_DT = dt.datetime(2031, 2, 3, 4, 5, 6, 789000, tzinfo=dt.UTC)

CASES = [
    # -- send ------------------------------------------------------------------------------------
    Case("send/seed-defaults", timed_send(), SEED_ROW),
    Case(
        "send/queue-options-copied",
        timed_send(),
        {
            **SEED_ROW,
            "retry_limit": 5,
            "retry_delay": 7,
            "retry_backoff": False,
            "expire_seconds": 120,
            "deletion_seconds": 60,
            "keep_until": col_plus("start_after", 600),
            "dead_letter": DLQ,
            "heartbeat_seconds": 30,
            "policy": "exclusive",
        },
        queues={
            DLQ: {},
            Q: {
                "policy": "exclusive",
                "retry_limit": 5,
                "retry_delay": 7,
                "retry_backoff": False,
                "expire_in_seconds": 120,
                "retention_seconds": 600,
                "delete_after_seconds": 60,
                "dead_letter": DLQ,
                "heartbeat_seconds": 30,
            },
        },
    ),
    Case(
        "send/job-options-win",
        timed_send(
            priority=5,
            retry_limit=0,
            retry_delay=9,
            retry_backoff=True,
            retry_delay_max=30,
            expire_in_seconds=5,
            delete_after_seconds=0,
            retention_seconds=60,
            dead_letter="dlq2",
            singleton_key="k",
            heartbeat_seconds=15,
        ),
        {
            **SEED_ROW,
            "priority": 5,
            "retry_limit": 0,
            "retry_delay": 9,
            "retry_delay_max": 30,
            "expire_seconds": 5,
            "deletion_seconds": 0,
            "keep_until": col_plus("start_after", 60),
            "dead_letter": "dlq2",
            "singleton_key": "k",
            "heartbeat_seconds": 15,
        },
        queues={DLQ: {}, "dlq2": {}, Q: {"dead_letter": DLQ, "retry_backoff": False}},
    ),
    Case(
        "send/start_after-datetime",
        timed_send(start_after=FIXED_DT),
        {**SEED_ROW, "start_after": FIXED_DT, "keep_until": FIXED_DT + dt.timedelta(days=14)},
    ),
    Case(
        "send/start_after-naive-datetime-is-utc",
        timed_send(start_after=FIXED_DT.replace(tzinfo=None)),
        {**SEED_ROW, "start_after": FIXED_DT},
    ),
    Case("send/start_after-seconds", timed_send(start_after=90), {**SEED_ROW, "start_after": now_plus(90)}),
    Case(
        "send/start_after-fractional-seconds",
        timed_send(start_after=1.5),
        {**SEED_ROW, "start_after": now_plus(1.5)},
    ),
    Case(
        "send/start_after-iso-z",
        timed_send(start_after="2031-02-03T04:05:06.789Z"),
        {**SEED_ROW, "start_after": FIXED_DT},
    ),
    Case(
        "send/start_after-iso-offset",
        timed_send(start_after="2031-02-03T06:05:06.789+02:00"),
        {**SEED_ROW, "start_after": FIXED_DT},
    ),
    Case(
        "send/keep_until-follows-start_after",
        timed_send(start_after=3600, retention_seconds=100),
        {**SEED_ROW, "start_after": now_plus(3600), "keep_until": col_plus("start_after", 100)},
    ),
    Case(
        "send/singleton_seconds-throttles",
        send_throttled,
        {**SEED_ROW, "singleton_key": "k", "singleton_on": slot_of_created_on(3600)},
    ),
    Case("send/singleton_key-alone-no-dedup", send_key_without_seconds, {**SEED_ROW, "singleton_key": "k"}),
    Case(
        "send/queue-policy-copied",
        timed_send(),
        {**SEED_ROW, "policy": "stately"},
        queues={Q: {"policy": "stately"}},
    ),
    # -- fetch -----------------------------------------------------------------------------------
    Case(
        "fetch/created->active",
        fetch_created,
        {
            "state": "active",
            "started_on": NOW,
            "heartbeat_on": NOW,
            "retry_count": 0,
            "created_on": UNCHANGED,
            "start_after": UNCHANGED,
            "completed_on": None,
        },
    ),
    Case(
        "fetch/retry->active-counts-reclaim",
        fetch_reclaim,
        {"state": "active", "started_on": NOW, "heartbeat_on": NOW, "retry_count": 1, "output": ERROR},
        queues={Q: {"retry_delay": 0, "retry_backoff": False}},
    ),
    Case(
        "fetch/after-restore-not-a-reclaim",
        fetch_after_restore,
        {"state": "active", "started_on": NOW, "retry_count": 0},
    ),
    # -- complete --------------------------------------------------------------------------------
    *[
        Case(
            f"complete/output-{label}",
            complete_with(value),
            {"state": "completed", "completed_on": NOW, "output": stored, "started_on": UNCHANGED},
        )
        for label, value, stored in [
            ("dict-as-is", {"a": [1, {"b": None}]}, {"a": [1, {"b": None}]}),
            ("string", "done", {"value": "done"}),
            ("number", 42, {"value": 42}),
            ("bool", False, {"value": False}),
            ("list", [1, "x"], {"value": [1, "x"]}),
            ("none", None, None),
        ]
    ],
    Case(
        "complete/wrong-attempt-fenced",
        complete_wrong_attempt,
        {"state": "active", "completed_on": None, "output": None},
    ),
    Case(
        "complete/already-completed",
        complete_twice,
        {"state": "completed", "output": {"value": "first"}, "completed_on": UNCHANGED},
    ),
    # -- fail ------------------------------------------------------------------------------------
    Case(
        "fail/backoff-first",
        fail_times(1),
        {
            "state": "retry",
            "start_after": now_plus(2, 4),  # delay·2^0 .. 2·delay·2^0
            "completed_on": None,
            "output": ERROR,
            "retry_count": 0,
            "started_on": UNCHANGED,
            "heartbeat_on": None,
            "created_on": UNCHANGED,
            "keep_until": UNCHANGED,
        },
        queues={Q: {"retry_delay": 2, "retry_backoff": True, "retry_limit": 5}},
    ),
    Case(
        "fail/backoff-second",
        fail_times(2),
        {"state": "retry", "start_after": now_plus(4, 8), "retry_count": 1},
        queues={Q: {"retry_delay": 2, "retry_backoff": True, "retry_limit": 5}},
    ),
    Case(
        "fail/backoff-third",
        fail_times(3),
        {"state": "retry", "start_after": now_plus(8, 16), "retry_count": 2},
        queues={Q: {"retry_delay": 2, "retry_backoff": True, "retry_limit": 5}},
    ),
    Case(
        "fail/backoff-zero-delay-counts-as-one",
        fail_times(1),
        {"state": "retry", "start_after": now_plus(1, 2)},
        queues={Q: {"retry_delay": 0, "retry_backoff": True}},
    ),
    Case(
        "fail/fixed-delay",
        fail_times(2),
        {"state": "retry", "start_after": now_plus(5), "retry_count": 1},
        queues={Q: {"retry_delay": 5, "retry_backoff": False}},
    ),
    Case(
        "fail/no-delay",
        fail_times(1),
        {"state": "retry", "start_after": NOW},
        queues={Q: {"retry_delay": 0, "retry_backoff": False}},
    ),
    Case(
        "fail/retry_delay_max-caps",
        fail_times(1),
        {"state": "retry", "start_after": now_plus(3)},
        queues={Q: {"retry_delay": 10, "retry_backoff": True, "retry_delay_max": 3}},
    ),
    Case(
        "fail/at-limit",
        fail_times(1),
        {"state": "failed", "completed_on": NOW, "start_after": UNCHANGED, "output": ERROR, "retry_count": 0},
        queues={Q: {"retry_limit": 0}},
    ),
    Case(
        "fail/last-retry-used",
        fail_times(3),
        {"state": "failed", "completed_on": NOW, "start_after": UNCHANGED, "retry_count": 2},
        queues={Q: {"retry_limit": 2, "retry_delay": 0, "retry_backoff": False}},
    ),
    Case(
        "fail/retry-false-fails-for-good",
        fail_times(1, retry=False),
        {"state": "failed", "completed_on": NOW, "start_after": UNCHANGED, "retry_count": 0},
    ),
    Case("fail/created-job-retries", fail_created, {"state": "retry", "started_on": None, "output": ERROR}),
    Case(
        "fail/wrong-attempt-fenced",
        fail_wrong_attempt,
        {"state": "active", "output": None, "start_after": UNCHANGED, "started_on": UNCHANGED},
    ),
    Case(
        "fail/dead-letter",
        fail_into_dead_letter,
        {"state": "failed", "completed_on": NOW, "output": ERROR, "dead_letter": DLQ},
        queues={
            DLQ: {"retry_limit": 4, "retry_delay": 3, "retry_backoff": False, "retention_seconds": 500},
            Q: {"dead_letter": DLQ, "retry_limit": 0},
        },
        also={
            "dead": {
                "name": DLQ,
                "state": "created",
                "data": {"n": 1},
                "output": None,
                "policy": None,  # Node does not set policy on dead-letter copies
                "priority": 2,
                "singleton_key": "k",
                "retry_limit": 4,  # the dead-letter queue's own settings
                "retry_delay": 3,
                "retry_backoff": False,
                "retry_count": 0,
                "start_after": NOW,
                "created_on": NOW,
                "keep_until": col_plus("created_on", 500),
                "expire_seconds": 3600,
                "deletion_seconds": 7 * DAY,
                "dead_letter": None,
                "source_name": Q,
                "source_id": of_label("main"),
                "source_created_on": created_on_of("main"),
                "source_retry_count": 0,
                "source_output": ERROR,
                "source_root_id": of_label("main"),
            }
        },
    ),
    Case(
        "fail/dead-letter-waits-for-last-retry",
        fail_with_retries_left_no_dead_letter,
        {"state": "retry", "dead_letter": DLQ},
        queues={DLQ: {}, Q: {"dead_letter": DLQ, "retry_limit": 1}},
    ),
    Case(
        "fail/stately-falls-back-to-failed",
        fail_stately_fallback,
        {"state": "failed", "completed_on": NOW, "output": ERROR, "retry_count": 0},
        queues={Q: {"policy": "stately", "retry_delay": 60, "retry_backoff": False}},
    ),
    # -- operator actions ------------------------------------------------------------------------
    Case(
        "cancel/created",
        on_state(created, lambda c, i: c.boss.cancel(Q, [i])),
        {"state": "cancelled", "completed_on": NOW},
    ),
    Case(
        "cancel/active",
        on_state(active, lambda c, i: c.boss.cancel(Q, [i])),
        {"state": "cancelled", "completed_on": NOW, "started_on": UNCHANGED},
    ),
    Case(
        "cancel/completed-untouched",
        on_state(completed, lambda c, i: c.boss.cancel(Q, [i]), moved=False),
        {"state": "completed", "completed_on": UNCHANGED},
    ),
    Case(
        "resume/cancelled",
        on_state(cancelled, lambda c, i: c.boss.resume(Q, [i])),
        {"state": "created", "completed_on": None, "start_after": NOW},
    ),
    Case(
        "resume/keeps-future-start_after",
        on_state(cancelled_later, lambda c, i: c.boss.resume(Q, [i])),
        {"state": "created", "completed_on": None, "start_after": UNCHANGED},
    ),
    Case(
        "resume/created-untouched",
        on_state(created, lambda c, i: c.boss.resume(Q, [i]), moved=False),
        {"state": "created", "start_after": UNCHANGED},
    ),
    Case(
        "retry/failed",
        on_state(failed, lambda c, i: c.boss.retry(Q, [i])),
        {"state": "retry", "retry_limit": 1, "completed_on": None, "start_after": NOW, "output": ERROR},
    ),
    Case(
        "retry/active-untouched",
        on_state(active, lambda c, i: c.boss.retry(Q, [i]), moved=False),
        {"state": "active", "retry_limit": 3},
    ),
    Case(
        "restore/active",
        on_state(active, lambda c, i: c.boss.restore(Q, [i], retry_count=0)),
        {"state": "created", "started_on": None, "heartbeat_on": None, "retry_count": 0},
    ),
    Case(
        "restore/wrong-attempt-untouched",
        on_state(active, lambda c, i: c.boss.restore(Q, [i], retry_count=1), moved=False),
        {"state": "active", "started_on": UNCHANGED},
    ),
    Case("touch/active", touch_later, {"state": "active", "heartbeat_on": LATER, "started_on": UNCHANGED}),
    Case(
        "touch/created-untouched",
        on_state(created, lambda c, i: c.boss.touch(Q, [i]), moved=False),
        {"state": "created", "heartbeat_on": None},
    ),
    Case("delete/active", on_state(active, lambda c, i: c.boss.delete(Q, [i])), DELETED),
    # -- supervision -----------------------------------------------------------------------------
    Case(
        "expire/retry",
        expire_after_a_second(retry_limit=3),
        {
            "state": "retry",
            "output": {"value": {"message": "job timed out"}},
            "start_after": now_plus(1, 2),
            "completed_on": None,
            "heartbeat_on": None,
        },
    ),
    Case(
        "expire/at-limit-fails",
        expire_after_a_second(retry_limit=0),
        {"state": "failed", "output": {"value": {"message": "job timed out"}}, "completed_on": NOW},
    ),
    Case("expire/not-due", expire_not_due, {"state": "active", "output": None}),
    Case(
        "heartbeat/lost",
        heartbeat_lost,
        {"state": "retry", "output": {"value": {"message": "job heartbeat timeout"}}, "heartbeat_on": None},
    ),
    Case("heartbeat/kept-by-touch", heartbeat_kept, {"state": "active", "output": None}),
    # -- deletion --------------------------------------------------------------------------------
    Case("deletion/completed-after-deletion_seconds", deletion_after(completed, 7 * DAY + 5, 1), DELETED),
    Case(
        "deletion/completed-before-deletion_seconds",
        deletion_after(completed, 7 * DAY - 60, 0),
        {"state": "completed"},
    ),
    Case("deletion/cancelled-after-deletion_seconds", deletion_after(cancelled, 7 * DAY + 5, 1), DELETED),
    Case("deletion/failed-after-deletion_seconds", deletion_after(failed, 7 * DAY + 5, 1), DELETED),
    Case(
        "deletion/deletion_seconds-0-never",
        deletion_after(completed_never_deleted, 1000 * DAY, 0),
        {"state": "completed", "deletion_seconds": 0},
    ),
    Case("deletion/queued-past-keep_until", deletion_after(queued_short_retention, 61, 1), DELETED),
    Case(
        "deletion/queued-before-keep_until",
        deletion_after(queued_short_retention, 50, 0),
        {"state": "created"},
    ),
    Case(
        "deletion/active-past-keep_until-kept",
        deletion_after(active_short_retention, 61, 0),
        {"state": "active"},
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_transition(boss: JobManager, case: Case) -> None:
    for queue, options in case.queues.items():
        boss.create_queue(queue, **options)
    ctx = Ctx(boss)
    job_id = case.act(ctx)
    check_row(ctx, ctx.row(job_id), case.expect, case.id)
    for label, expect in case.also.items():
        check_row(ctx, ctx.row(ctx.ids[label]), expect, f"{case.id} [{label}]")


# --------------------------------------------------------------------------------------------------
# Part two: behaviour across rows
# --------------------------------------------------------------------------------------------------


def states(boss: JobManager, queue: str = Q) -> dict[str, str]:
    return {str(r["id"]): str(r["state"]) for r in rows_of(boss, queue)}


def test_policy_short(boss: JobManager) -> None:
    boss.create_queue(Q, policy="short")
    first = boss.send(Q, {}, singleton_key="k")
    assert first is not None
    assert boss.send(Q, {}, singleton_key="k") is None  # one created job per key
    assert boss.send(Q, {}, singleton_key="j") is not None
    assert boss.send(Q, {}) is not None
    assert boss.send(Q, {}) is None  # no key is the key ''
    assert len(boss.fetch([Q], 10)) == 3
    # Once the created job is active the key takes a new one.
    assert boss.send(Q, {}, singleton_key="k") is not None


def test_policy_singleton(boss: JobManager) -> None:
    boss.create_queue(Q, policy="singleton")
    a1 = boss.send(Q, {"i": 1}, singleton_key="a")
    a2 = boss.send(Q, {"i": 2}, singleton_key="a")
    b1 = boss.send(Q, {"i": 3}, singleton_key="b")
    assert None not in (a1, a2, b1)  # sending is not limited
    fetched = boss.fetch([Q], 10)
    assert sorted(j.id for j in fetched) == sorted([a1, b1])  # one active per key, even in one batch
    assert boss.fetch([Q], 10) == []  # a2 waits while a1 is active
    boss.complete(Q, [(a1, None, None)])
    assert [j.id for j in boss.fetch([Q], 10)] == [a2]


def test_policy_singleton_concurrent_claims(boss: JobManager) -> None:
    """Two fetchers racing for one key: the loser gets nothing (Node swallows the unique violation)."""
    boss.create_queue(Q, policy="singleton")
    first = boss.send(Q, {}, singleton_key="a")
    second = boss.send(Q, {}, singleton_key="a")
    holder = boss.db.connect()
    try:
        claimed = boss.fetch([Q], conn=holder)  # not committed yet: the other fetcher cannot see it
        assert [j.id for j in claimed] == [first]
        result: dict[str, Any] = {}

        def other() -> None:
            try:
                result["jobs"] = boss.fetch([Q])
            except Exception as exc:  # noqa: BLE001
                result["error"] = exc

        thread = threading.Thread(target=other)
        thread.start()
        time.sleep(0.3)  # it now waits on the unique index entry of the uncommitted claim
        holder.commit()
        thread.join(10)
    finally:
        holder.close()
    assert result == {"jobs": []}
    assert states(boss) == {first: "active", second: "created"}


def test_fetch_follows_each_queues_policy(boss: JobManager) -> None:
    """A standard queue takes the plain fetch, a singleton queue fetched beside it keeps its per-key
    rule, and a queue deleted and created again with another policy is fetched by its new one."""
    boss.create_queue(Q)
    boss.create_queue("q2", policy="singleton")
    plain = boss.send_many(Q, [{"data": {"i": i}, "singleton_key": "a"} for i in range(3)])
    single = boss.send_many("q2", [{"data": {"i": i}, "singleton_key": "a"} for i in range(3)])
    fetched = {j.id for j in boss.fetch([Q, "q2"], 10)}
    assert fetched == set(plain) | {single[0]}  # the standard queue ignores keys when fetching

    boss.delete_queue(Q)
    boss.create_queue(Q, policy="singleton")
    again = boss.send_many(Q, [{"data": {"i": i}, "singleton_key": "a"} for i in range(3)])
    assert [j.id for j in boss.fetch([Q], 10)] == [again[0]]


def test_policy_stately(boss: JobManager) -> None:
    boss.create_queue(Q, policy="stately", retry_delay=60, retry_backoff=False)
    first = boss.send(Q, {}, singleton_key="k")
    assert boss.send(Q, {}, singleton_key="k") is None  # one created
    assert [j.id for j in boss.fetch([Q])] == [first]
    second = boss.send(Q, {}, singleton_key="k")  # the created slot is free again
    assert second is not None
    assert boss.send(Q, {}, singleton_key="k") is None
    assert boss.fetch([Q]) == []  # one active per key: second waits
    boss.fail(Q, [first], ERROR)  # first -> retry (60 s)
    assert [j.id for j in boss.fetch([Q])] == [second]
    boss.fail(Q, [second], ERROR)  # the retry slot is taken: second fails for good
    assert states(boss) == {first: "retry", second: "failed"}


def test_policy_exclusive(boss: JobManager) -> None:
    boss.create_queue(Q, policy="exclusive")
    first = boss.send(Q, {}, singleton_key="k")
    assert boss.send(Q, {}, singleton_key="k") is None  # one queued or active per key
    assert boss.send(Q, {}, singleton_key="other") is not None
    boss.fetch([Q], 10)
    assert boss.send(Q, {}, singleton_key="k") is None  # active still counts
    boss.complete(Q, [(first, None, None)])
    assert boss.send(Q, {}, singleton_key="k") is not None


def test_dead_letter_job_option(boss: JobManager) -> None:
    boss.create_queue(DLQ)
    boss.create_queue("other-dlq")
    boss.create_queue(Q, dead_letter=DLQ, retry_limit=0)
    job_id = boss.send(Q, {"x": 1}, dead_letter="other-dlq")
    boss.fetch([Q])
    boss.fail(Q, [job_id], ERROR)
    assert rows_of(boss, DLQ) == []
    [dead] = rows_of(boss, "other-dlq")
    assert (dead["data"], str(dead["source_id"])) == ({"x": 1}, job_id)


def test_fetch_skips_locked_rows(boss: JobManager) -> None:
    boss.create_queue(Q)
    first = boss.send(Q, {"i": 1})
    second = boss.send(Q, {"i": 2})
    holder = boss.db.connect()
    try:
        [held] = boss.fetch([Q], conn=holder)  # locked, not committed
        assert held.id == first
        other = boss.fetch([Q], 5)  # a second connection skips the locked row
        assert [j.id for j in other] == [second]
        holder.rollback()  # the claim never happened
    finally:
        holder.close()
    assert states(boss) == {first: "created", second: "active"}
    assert [j.id for j in boss.fetch([Q], 5)] == [first]


def test_fetch_order_priority_then_age(boss: JobManager) -> None:
    boss.create_queue(Q)
    boss.create_queue("q2")
    sent = [
        (Q, 0, "a"),
        ("q2", 5, "b"),
        (Q, 1, "c"),
        (Q, 5, "d"),
        ("q2", 0, "e"),
        (Q, -3, "f"),
    ]
    for queue, priority, label in sent:
        boss.send(queue, {"label": label}, priority=priority)
    order = []
    while jobs := boss.fetch([Q, "q2"]):
        order += [j.data["label"] for j in jobs]
    assert order == ["b", "d", "c", "a", "e", "f"]


def test_fetch_batch_size(boss: JobManager) -> None:
    boss.create_queue(Q)
    boss.send_many(Q, [{"data": {"i": i}} for i in range(5)])
    assert boss.fetch([Q], 0) == []
    assert len(boss.fetch([Q], 3)) == 3
    assert len(boss.fetch([Q], 3)) == 2
    assert boss.fetch([Q], 3) == []
    assert set(states(boss).values()) == {"active"}


def test_fetch_waits_for_start_after(boss: JobManager) -> None:
    boss.create_queue(Q)
    ctx = Ctx(boss)
    job_id = boss.send(Q, {}, start_after=60)
    assert boss.fetch([Q]) == []
    assert boss.next_start_after([Q]) == job_row(boss, job_id)["start_after"]
    ctx.shift_clock(59)
    assert boss.fetch([Q]) == []
    ctx.shift_clock(1.01)
    assert [j.id for j in boss.fetch([Q])] == [job_id]


def test_concurrency_limit_caps_one_fetch(boss: JobManager) -> None:
    boss.create_queue(Q)
    boss.send_many(Q, [{"data": {"i": i}} for i in range(6)])
    assert len(boss.fetch([Q], 5, concurrency_limits={Q: 3})) == 3
    assert boss.fetch([Q], 5, concurrency_limits={Q: 3}) == []  # 3 runnable jobs left, 3 active
    assert len(boss.fetch([Q], 5)) == 3  # the limit is the caller's, not the queue's


def test_concurrency_limit_across_threads(boss: JobManager) -> None:
    limit, total = 3, 24
    boss.create_queue(Q)
    boss.send_many(Q, [{"data": {"i": i}} for i in range(total)])
    done: list[str] = []
    seen: list[int] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def active_now() -> int:
        return sum(1 for s in states(boss).values() if s == "active")

    def worker() -> None:
        try:
            while len(done) < total and not stop.is_set():
                jobs = boss.fetch([Q], 2, concurrency_limits={Q: limit})
                seen.append(active_now())
                time.sleep(0.01)
                if jobs:
                    boss.complete(Q, [(j.id, None, j.retry_count) for j in jobs])
                    done.extend(j.id for j in jobs)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    def monitor() -> None:
        while not stop.is_set():
            seen.append(active_now())
            time.sleep(0.002)

    threads = [threading.Thread(target=worker) for _ in range(2)] + [threading.Thread(target=monitor)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    while len(done) < total and time.monotonic() < deadline and not errors:
        time.sleep(0.01)
    stop.set()
    for thread in threads:
        thread.join(10)
    assert not errors, errors
    assert sorted(done) == sorted(set(done)) and len(done) == total
    assert max(seen) <= limit


def test_notify_on_runnable_insert(boss: JobManager) -> None:
    boss.create_queue(Q)
    boss.create_queue("q2")
    conn = listen(boss, names.notify_channel(boss.schema))
    try:
        boss.send(Q, {})
        assert drain(conn) == [Q]
        boss.send(Q, {}, start_after=60)  # not runnable yet: nobody to wake
        assert drain(conn) == []
        boss.send_many("q2", [{"data": {}}, {"data": {}}, {"data": {}, "start_after": 30}])
        assert drain(conn) == ["q2"]  # once per statement
        boss.send(Q, {}, start_after=dt.datetime(2001, 1, 1, tzinfo=dt.UTC))  # already due
        assert drain(conn) == [Q]
    finally:
        conn.close()


def test_a_failure_announces_its_retry_to_the_queues_consumers(boss: JobManager) -> None:
    """A retry runnable now wakes the queue's consumers as an insert does; one due later is a timer
    notice on the transport's channel; a job that fails for good announces nothing; retry(),
    resume(), restore() and retry_in_place() announce the jobs they make runnable."""
    boss.create_queue(Q, retry_limit=1, retry_delay=0, retry_backoff=False)
    boss.create_queue("q2", retry_limit=1, retry_delay=60, retry_backoff=False)
    wake = listen(boss, names.notify_channel(boss.schema))
    timer = listen(boss, names.broker_channel(boss.schema))
    try:
        now = boss.send_many(Q, [{"data": {"i": i}} for i in range(2)])
        later = boss.send("q2", {})
        boss.fetch([Q, "q2"], 10)
        drain(wake)
        assert [r["state"] for r in boss.fail(Q, now, ERROR)] == ["retry", "retry"]
        assert (drain(wake), drain(timer)) == ([Q], [])  # one per queue
        assert [r["state"] for r in boss.fail("q2", [later], ERROR)] == ["retry"]
        assert (drain(wake), drain(timer)) == ([], [names.TIMER_NOTICE + "q2"])
        boss.fetch([Q], 10)
        assert [r["state"] for r in boss.fail(Q, now, ERROR)] == ["failed", "failed"]
        assert (drain(wake), drain(timer)) == ([], [])
        # Made runnable by hand (pg-boss retry() and resume()): news too.
        assert sorted(boss.retry(Q, now)) == sorted(now)
        assert (drain(wake), drain(timer)) == ([Q], [])
        assert boss.cancel(Q, now[:1]) == now[:1]
        drain(wake)
        assert boss.resume(Q, now[:1]) == now[:1]
        assert (drain(wake), drain(timer)) == ([Q], [])
        # Handed back (restore) or moved in place (Celery's Task.retry): news as well.
        boss.fetch([Q], 10)
        drain(wake)
        assert sorted(boss.restore(Q, now)) == sorted(now)
        assert (drain(wake), drain(timer)) == ([Q], [])
        [job] = boss.fetch([Q])
        later_at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=60)
        assert boss.retry_in_place(Q, job.id, start_after=later_at, data={})
        assert (drain(wake), drain(timer)) == ([], [names.TIMER_NOTICE + Q])
    finally:
        wake.close()
        timer.close()


def test_state_channel(boss: JobManager) -> None:
    boss.create_queue(Q, retry_limit=1, retry_delay=0, retry_backoff=False)
    conn = listen(boss, boss.state_channel)
    with conn.cursor() as cur:  # claims announce 'active' only to a session holding the presence
        cur.execute("SELECT pg_advisory_lock_shared(%s)", (boss.state_presence,))
    try:
        first = boss.send(Q, {})
        [job] = boss.fetch([Q])
        boss.complete(Q, [(first, "ok", job.retry_count)])
        second = boss.send(Q, {})
        boss.fetch([Q])
        boss.fail(Q, [second], ERROR)
        boss.fetch([Q])
        boss.fail(Q, [second], ERROR)
        boss.retry(Q, [second])
        boss.fetch([Q])
        boss.restore(Q, [second])
        boss.cancel(Q, [second])
        boss.resume(Q, [second])
        got = drain(conn)
    finally:
        conn.close()
    assert got == [
        f"{first} active",
        f"{first} completed",
        f"{second} active",
        f"{second} retry",
        f"{second} active",
        f"{second} failed",
        f"{second} retry",
        f"{second} active",
        f"{second} created",
        f"{second} cancelled",
        f"{second} created",
    ]


# --------------------------------------------------------------------------------------------------
# Part three: bad input at the edge; nothing half-written
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def quiet_boss(database: Database) -> Iterator[JobManager]:
    """One schema with one queue for every bad-input test: none of them may write anything."""
    boss = JobManager(database, "t_" + uuid.uuid4().hex[:12])
    boss.create_queue(Q)
    yield boss
    with database.cursor() as cur:
        cur.execute(f'DROP SCHEMA IF EXISTS "{boss.schema}" CASCADE')


def assert_untouched(boss: JobManager, jobs: int = 0, queues: int = 1) -> None:
    assert (count(boss, "job"), count(boss, "queue")) == (jobs, queues)


def test_unknown_queue(quiet_boss: JobManager) -> None:
    with pytest.raises(QueueNotFound, match="nope"):
        quiet_boss.send("nope", {})
    with pytest.raises(QueueNotFound):
        quiet_boss.send_many("nope", [{"data": {}}, {"data": {}}])
    assert_untouched(quiet_boss)


BAD_QUEUE_NAMES = [
    "q'; DROP TABLE job; --",
    'q"x',
    "q;x",
    "q x",
    "q%s",
    "__pgboss__x",
    "__pgboss__send-it-not",
    "",
    "x" * 256,
    None,
    42,
]


@pytest.mark.parametrize("name", BAD_QUEUE_NAMES)
def test_invalid_queue_names(quiet_boss: JobManager, name: Any) -> None:
    with pytest.raises(InvalidQueueName):
        quiet_boss.create_queue(name)
    with pytest.raises(InvalidQueueName):
        quiet_boss.send(name, {})
    if name is not None:  # None means "no dead letter"
        with pytest.raises(InvalidQueueName):
            quiet_boss.create_queue("fine", dead_letter=name)
    assert_untouched(quiet_boss)


@pytest.mark.parametrize(
    "payload",
    [object(), float("nan"), {1, 2}, {"a": float("inf")}, {"a": [1, object()]}, b"x", dt.date(2020, 1, 1)],
    ids=["object", "nan", "set", "nested-inf", "nested-object", "bytes", "date"],
)
def test_invalid_payload(quiet_boss: JobManager, payload: Any) -> None:
    with pytest.raises(InvalidPayload):
        quiet_boss.send(Q, payload)
    with pytest.raises(InvalidPayload):  # one bad item: the whole batch is refused
        quiet_boss.send_many(Q, [{"data": {"ok": 1}}, {"data": payload}])
    with pytest.raises(InvalidPayload):  # refused when encoded, before any send
        quiet_boss.encode_job({"data": payload})
    assert_untouched(quiet_boss)


def test_encoded_jobs_store_what_send_many_stores(boss: JobManager) -> None:
    """encode_job + send_encoded (a held batch's path) and send_many give the same rows, options
    and debounce included."""
    boss.create_queue("encoded")
    jobs = [
        {"data": {"i": 1}, "priority": 3, "retry_limit": 7, "start_after": 30},
        {"data": [1, "two"], "singleton_key": "k", "singleton_seconds": 60, "singleton_next_slot": True},
        {"data": None, "expire_in_seconds": 90},
    ]
    columns = (
        "data, priority, retry_limit, singleton_key, expire_seconds, state,"
        " start_after > created_on AS later"
    )
    stored = []
    for send in (
        lambda some: boss.send_many("encoded", [dict(job) for job in some]),
        lambda some: boss.send_encoded("encoded", [boss.encode_job(dict(job)) for job in some]),
    ):
        ids = send(jobs)
        again = send(jobs[1:2])  # the singleton's slot is taken: debounced into the next one
        with boss.db.cursor() as cur:
            query = f"SELECT {columns} FROM {boss.schema}.job WHERE id = ANY(%s::uuid[])"
            cur.execute(query + " ORDER BY priority DESC, data::text", (ids + again,))
            stored.append([dict(row) for row in cur.fetchall()])
        with boss.db.cursor() as cur:
            cur.execute(f"DELETE FROM {boss.schema}.job WHERE name = %s", ("encoded",))
    assert len(stored[0]) == 4  # the debounced twin included
    assert stored[1] == stored[0]


@pytest.mark.parametrize("job_id", ["nope", "", "1234", "'; DROP TABLE job; --", None, 42])
def test_invalid_job_id(quiet_boss: JobManager, job_id: Any) -> None:
    with pytest.raises(InvalidJobId):
        quiet_boss.get_job(job_id)
    with pytest.raises(InvalidJobId):
        quiet_boss.cancel(Q, [job_id])
    with pytest.raises(InvalidJobId):
        quiet_boss.send(Q, {}, id=job_id or "x")
    assert_untouched(quiet_boss)


@pytest.mark.parametrize(
    "options",
    [
        {"bogus": 1},
        {"retryLimit": 2},  # Node's spelling is not ours
        {"priority": "high"},
        {"retry_limit": -1},
        {"retry_delay": 1.5},
        {"expire_in_seconds": 0},
        {"expire_in_seconds": 86401},
        {"heartbeat_seconds": 5},
        {"retry_backoff": False, "retry_delay_max": 10},
        {"start_after": "tomorrow"},
        {"start_after": [1]},
    ],
    ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()),
)
def test_invalid_send_options(quiet_boss: JobManager, options: dict[str, Any]) -> None:
    with pytest.raises(InvalidOption):
        quiet_boss.send(Q, {}, **options)
    assert_untouched(quiet_boss)


@pytest.mark.parametrize(
    "options",
    [{"bogus": 1}, {"policy": "fifo"}, {"retry_limit": "3"}, {"expire_in_seconds": 0}],
    ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()),
)
def test_invalid_queue_options(quiet_boss: JobManager, options: dict[str, Any]) -> None:
    with pytest.raises(InvalidOption):
        quiet_boss.create_queue("fine", **options)
    assert_untouched(quiet_boss)


def test_unknown_job_reads_as_none(quiet_boss: JobManager) -> None:
    assert quiet_boss.get_job("00000000-0000-0000-0000-000000000000") is None
    assert quiet_boss.cancel(Q, ["00000000-0000-0000-0000-000000000000"]) == []


def test_retry_in_place_is_fenced_on_the_attempt_that_asks(boss: JobManager) -> None:
    """A Task.retry() (or a requeue) from an attempt that was failed or expired meanwhile leaves the
    attempt running now alone."""
    boss.create_queue("fenced", retry_limit=3, retry_delay=0, retry_backoff=False)
    job_id = boss.send("fenced", {"n": 1})
    [first] = boss.fetch(["fenced"])
    assert first.retry_count == 0
    boss.fail("fenced", [job_id], {"message": "lost"}, attempts={job_id: 0})
    [second] = boss.fetch(["fenced"])
    assert second.retry_count == 1
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)

    assert not boss.retry_in_place("fenced", job_id, start_after=later, data={"n": 2}, retry_count=0)
    job = boss.get_job(job_id)
    assert (job["state"], job["retry_count"], job["data"]) == ("active", 1, {"n": 1})

    assert boss.retry_in_place("fenced", job_id, start_after=later, data={"n": 2}, retry_count=1)
    job = boss.get_job(job_id)
    assert (job["state"], job["retry_count"], job["data"]) == ("retry", 1, {"n": 2})
