"""Celery's canvas ("Canvas: Designing Work-flows"), section by section, against real workers.

Every test runs twice: on ``pgboss://`` broker and result backend, and on Celery's own Redis broker
and backend. Both parametrizations run the same tasks (``canvas_tasks``) and expect the same
outcome, so the expectations are Celery's. Every wait has a timeout: nothing may hang.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from celery import Celery, chain, chord, group, signature
from celery.exceptions import ChordError
from celery.result import AsyncResult, GroupResult

from tests.acceptance import canvas_tasks as t
from tests.acceptance.broker_workers import BrokerEnv, drop_env, make_env, wait_for
from tests.acceptance.canvas_app import make_app
from transport.db import Database

pytestmark = [pytest.mark.timeout(300)]

REDIS_URL = "redis://127.0.0.1:6379/0"
#: Seconds any one result may take.
TIMEOUT = 30


@dataclass
class Canvas:
    mode: str
    app: Celery
    env: BrokerEnv

    def effects(self, key: str) -> list[str | None]:
        return [row["value"] for row in self.env.effects(key)]

    def wait_effects(self, key: str, count: int, timeout: float = TIMEOUT) -> list[str | None]:
        wait_for(lambda: len(self.effects(key)) >= count, timeout, what=f"{count} effect(s) {key!r}")
        return self.effects(key)


@pytest.fixture(scope="module", params=["pgboss", "redis"])
def canvas(
    request: pytest.FixtureRequest,
    session_db_url: str,
    session_database: Database,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Canvas]:
    mode = request.param
    if mode == "redis":
        redis = pytest.importorskip("redis")
        try:
            redis.Redis.from_url(REDIS_URL).ping()
        except redis.RedisError:
            pytest.skip("no Redis on 127.0.0.1:6379")
    env = make_env(session_db_url, session_database, tmp_path_factory.mktemp(f"canvas-{mode}"))
    prefix = f"zeke-canvas-{uuid.uuid4().hex[:8]}:"
    extra = {
        "ZEKE_CANVAS_MODE": mode,
        "ZEKE_CANVAS_PG_URL": session_db_url,
        "ZEKE_CANVAS_SCHEMA": env.schema,
        "ZEKE_CANVAS_REDIS_URL": REDIS_URL,
        "ZEKE_CANVAS_PREFIX": prefix,
    }
    app = make_app(mode, session_db_url, env.schema, REDIS_URL, prefix)
    app.set_current()
    app.set_default()
    saved = {k: os.environ.get(k) for k in extra}
    os.environ.update(extra)  # record() in this process (errbacks run eagerly never)
    workers = [
        env.worker(
            name, ["celery", "canvas-fragile"], app="tests.acceptance.canvas_app", extra_env=extra
        ).start(wait=False)
        for name in ("c1", "c2")
    ]
    try:
        for worker in workers:
            worker.wait_ready(timeout=60)
        yield Canvas(mode, app, env)
    finally:
        try:
            drop_env(env)
            app.close()
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            if mode == "redis":  # only the keys this run made
                client = redis.Redis.from_url(REDIS_URL)
                keys = list(client.scan_iter(match=prefix + "*", count=1000))
                if keys:
                    client.delete(*keys)


def assert_chord_error(result: AsyncResult) -> None:
    """A chord whose header failed: ``get()`` re-raises the header's error (a parent of the body),
    and the body itself failed with ChordError."""
    with pytest.raises(t.ExpectedError):
        result.get(timeout=TIMEOUT)
    assert isinstance(result.get(timeout=TIMEOUT, propagate=False), ChordError)
    assert result.state == "FAILURE"


def key() -> str:
    return uuid.uuid4().hex[:12]


# -- Signatures, partials, immutability ---------------------------------------------------------


def test_signature_delay_and_apply_async(canvas: Canvas) -> None:
    assert t.add.s(2, 2).delay().get(timeout=TIMEOUT) == 4
    assert t.add.signature((2, 2), countdown=0.2).apply_async().get(timeout=TIMEOUT) == 4
    assert signature("canvas.add", args=(3, 3)).apply_async().get(timeout=TIMEOUT) == 6


def test_partial_signatures(canvas: Canvas) -> None:
    partial = t.add.s(2)
    assert partial.delay(4).get(timeout=TIMEOUT) == 6
    assert partial.clone(args=(10,)).apply_async().get(timeout=TIMEOUT) == 12
    assert t.add_kw.s(x=1).apply_async(kwargs={"y": 2, "z": 3}).get(timeout=TIMEOUT) == 6


def test_immutable_signature_ignores_the_parent_result(canvas: Canvas) -> None:
    result = (t.add.s(2, 2) | t.add.si(4, 4) | t.add.s(1)).delay()
    assert result.get(timeout=TIMEOUT) == 9
    assert result.parent.get(timeout=TIMEOUT) == 8


# -- Callbacks: link and link_error -------------------------------------------------------------


def test_link_callback_gets_the_parent_result(canvas: Canvas) -> None:
    result = t.add.apply_async((2, 2), link=t.add.s(8))
    assert result.get(timeout=TIMEOUT) == 4
    child = wait_for(lambda: (result.maybe_throw(), result.children)[1], TIMEOUT, what="the link's child")
    assert child[0].get(timeout=TIMEOUT) == 12


def test_link_error_new_style(canvas: Canvas) -> None:
    k = key()
    result = t.fail.apply_async(link_error=t.errback_new.s(key=k))
    with pytest.raises(t.ExpectedError):
        result.get(timeout=TIMEOUT)
    assert canvas.wait_effects(k, 1) == [result.id]


def test_link_error_old_style(canvas: Canvas) -> None:
    k = key()
    result = t.fail.apply_async(kwargs={"message": "old style"}, link_error=t.errback_old.s(key=k))
    with pytest.raises(t.ExpectedError):
        result.get(timeout=TIMEOUT)
    assert canvas.wait_effects(k, 1) == [f"{result.id} ExpectedError: old style"]


def test_link_error_runs_once_after_the_last_retry(canvas: Canvas) -> None:
    k, attempts = key(), key()
    result = t.retry_then_fail.apply_async((attempts,), link_error=t.errback_new.s(key=k))
    with pytest.raises(t.ExpectedError):
        result.get(timeout=TIMEOUT)
    assert canvas.wait_effects(k, 1) == [result.id]
    assert canvas.effects(attempts) == ["0", "1"]
    assert len(canvas.effects(k)) == 1


# -- Chains -------------------------------------------------------------------------------------


def test_chain(canvas: Canvas) -> None:
    result = chain(t.add.s(2, 2), t.add.s(4), t.add.s(8))()
    assert result.get(timeout=TIMEOUT) == 16
    assert result.parent.get(timeout=TIMEOUT) == 8
    assert result.parent.parent.get(timeout=TIMEOUT) == 4


def test_chain_partial_args_at_call(canvas: Canvas) -> None:
    assert (t.add.s(4) | t.add.s(8)).delay(2).get(timeout=TIMEOUT) == 14


def test_chain_failure_fails_the_tasks_after_it(canvas: Canvas) -> None:
    result = chain(t.add.si(1, 1), t.fail.s(), t.add.s(1), t.add.s(1)).apply_async()
    with pytest.raises(t.ExpectedError):
        result.get(timeout=TIMEOUT)
    with pytest.raises(t.ExpectedError):
        result.parent.get(timeout=TIMEOUT)
    with pytest.raises(t.ExpectedError):
        result.parent.parent.get(timeout=TIMEOUT)
    assert result.parent.parent.parent.get(timeout=TIMEOUT) == 2
    # The tasks after the failure never run; their own results say FAILURE (not only their parent).
    for task_id in (result.id, result.parent.id):
        fresh = canvas.app.AsyncResult(task_id)
        with pytest.raises(t.ExpectedError):
            fresh.get(timeout=TIMEOUT)
        assert fresh.state == "FAILURE"


def test_chain_failure_before_a_chord_fails_its_body(canvas: Canvas) -> None:
    result = chain(t.add.si(1, 1), t.fail.s(), chord([t.add.s(1), t.add.s(2)], t.xsum.s()))()
    with pytest.raises(t.ExpectedError):
        result.get(timeout=TIMEOUT)
    fresh = canvas.app.AsyncResult(result.id)
    with pytest.raises(t.ExpectedError):
        fresh.get(timeout=TIMEOUT)


def test_chain_link_error_on_the_chain(canvas: Canvas) -> None:
    k = key()
    c = chain(t.add.si(1, 1), t.fail.s(), t.add.s(1))
    c.link_error(t.errback_new.s(key=k))
    result = c.apply_async()
    with pytest.raises(t.ExpectedError):
        result.get(timeout=TIMEOUT)
    assert result.parent.id in canvas.wait_effects(k, 1)


# -- Groups -------------------------------------------------------------------------------------


def test_group_results_in_order(canvas: Canvas) -> None:
    result = group(t.sleep_identity.s(i, 0.3 if i % 2 else 0) for i in range(8))()
    assert result.get(timeout=TIMEOUT) == list(range(8))
    assert result.successful() and result.completed_count() == 8
    result.save()
    restored = GroupResult.restore(result.id, app=canvas.app)
    assert restored is not None and [r.id for r in restored.results] == [r.id for r in result.results]


def test_group_args_at_call(canvas: Canvas) -> None:
    assert group(t.add.s(i) for i in range(3)).delay(10).get(timeout=TIMEOUT) == [10, 11, 12]
    assert group(t.add_kw.s(x=i) for i in range(3)).apply_async(kwargs={"y": 1}).get(timeout=TIMEOUT) == [
        1,
        2,
        3,
    ]


def test_group_with_a_failure(canvas: Canvas) -> None:
    result = group(t.add.si(1, 1), t.fail.si(), t.add.si(2, 2))()
    with pytest.raises(t.ExpectedError):
        result.get(timeout=TIMEOUT)
    values = result.get(timeout=TIMEOUT, propagate=False)
    assert values[0] == 2 and isinstance(values[1], t.ExpectedError) and values[2] == 4
    assert result.failed() and not result.successful()


def test_group_then_chain_nesting(canvas: Canvas) -> None:
    result = group(chain(t.add.si(1, 1), t.add.s(1)), chain(t.add.si(2, 2), t.add.s(1), t.add.s(1)))()
    assert result.get(timeout=TIMEOUT) == [3, 6]


# -- Chords -------------------------------------------------------------------------------------


def test_chord(canvas: Canvas) -> None:
    assert chord(t.add.s(i, i) for i in range(10))(t.xsum.s()).get(timeout=TIMEOUT) == 90


def test_chord_header_results_in_order(canvas: Canvas) -> None:
    header = [t.sleep_identity.si(i, 0.3 if i % 2 else 0) for i in range(6)]
    assert chord(header, t.collect.s()).delay().get(timeout=TIMEOUT) == list(range(6))


def test_chord_args_into_header_and_body_kwargs(canvas: Canvas) -> None:
    k = key()
    result = chord((t.add.s(i) for i in range(3)), t.collect.s(key=k)).delay(10)
    assert result.get(timeout=TIMEOUT) == [10, 11, 12]
    assert canvas.effects(k) == [str([10, 11, 12])]


def test_chord_large_header_in_a_chain(canvas: Canvas) -> None:
    n = 200
    result = chain(t.identity.si(1), chord([t.add.s(i) for i in range(n)], t.xsum.s()))()
    assert result.get(timeout=90) == sum(range(n)) + n


def test_chord_header_with_countdown(canvas: Canvas) -> None:
    header = group(t.add.si(i, i).set(countdown=1) for i in range(3))
    assert chord(header, t.xsum.s()).delay().get(timeout=TIMEOUT) == 6
    assert chord([t.add.si(1, 1)], t.xsum.s()).apply_async(countdown=1).get(timeout=TIMEOUT) == 2


def test_chord_with_an_empty_header(canvas: Canvas) -> None:
    assert chord([], t.collect.s()).delay().get(timeout=TIMEOUT) == []


def test_chord_then_task_in_a_chain(canvas: Canvas) -> None:
    result = chain(chord([t.add.si(1, 1), t.add.si(2, 2)], t.xsum.s()), t.add.s(100))()
    assert result.get(timeout=TIMEOUT) == 106


def test_chain_into_group_becomes_a_chord(canvas: Canvas) -> None:
    result = chain(t.add.si(1, 1), group(t.add.s(1), t.add.s(2)), t.xsum.s())()
    assert result.get(timeout=TIMEOUT) == 7


def test_chord_with_nested_group_in_header(canvas: Canvas) -> None:
    header = [group(t.add.si(1, 1), t.add.si(2, 2)), t.add.si(3, 3)]
    assert chord(header, t.xsum.s()).delay().get(timeout=TIMEOUT) == 12


def test_chord_with_nested_chord_in_header(canvas: Canvas) -> None:
    inner = chord([t.add.si(1, 1), t.add.si(2, 2)], t.xsum.s())
    assert chord([inner, t.add.si(3, 3)], t.collect.s()).delay().get(timeout=TIMEOUT) == [6, 6]


def test_chord_with_chain_tails_in_header(canvas: Canvas) -> None:
    header = [chain(t.add.si(1, 1), t.add.s(1)), chain(t.add.si(2, 2), group(t.add.s(1), t.add.s(2)))]
    assert chord(header, t.xsum.s()).delay().get(timeout=TIMEOUT) == 3 + 5 + 6


def test_chord_in_chord_body(canvas: Canvas) -> None:
    body = chord([t.add.s(1), t.add.s(2)], t.xsum.s())
    # The outer chord's result ([2, 4] summed by xsum in add) goes into each inner header task.
    assert chord([t.add.si(1, 1), t.add.si(2, 2)], body).delay().get(timeout=TIMEOUT) == 7 + 8


def test_deeper_nesting(canvas: Canvas) -> None:
    # a chord inside a chain inside a group
    inner = chain(t.add.si(1, 1), chord([t.add.s(1), t.add.s(2)], t.xsum.s()))
    assert group(inner, t.add.si(0, 0)).delay().get(timeout=TIMEOUT) == [7, 0]
    # a group after a group in a chain
    result = chain(group(t.add.si(1, 1), t.add.si(2, 2)), group(t.add.s(1), t.add.s(2)))()
    assert result.get(timeout=TIMEOUT) == [7, 8]
    # a chord header member that is a chain ending in a chord
    member = chain(t.add.si(1, 1), chord([t.add.s(1), t.add.s(2)], t.xsum.s()))
    assert chord([member, t.add.si(5, 5)], t.collect.s()).delay().get(timeout=TIMEOUT) == [7, 10]
    # a group of groups
    assert group(group(t.add.si(1, 1), t.add.si(2, 2)), t.add.si(3, 3)).delay().get(timeout=TIMEOUT) == [
        2,
        4,
        6,
    ]


def test_errback_on_a_chord_header_member(canvas: Canvas) -> None:
    k = key()
    failing = t.fail.si().on_error(t.errback_new.s(key=k))
    result = chord([failing, t.add.si(1, 1)], t.xsum.s()).delay()
    assert_chord_error(result)
    assert len(canvas.wait_effects(k, 1)) == 1


def test_chord_header_failure_fails_the_body(canvas: Canvas) -> None:
    k, body_key = key(), key()
    body = t.collect.s(key=body_key).on_error(t.errback_new.s(key=k))
    result = chord([t.add.si(1, 1), t.fail.si(), t.add.si(2, 2)], body).delay()
    assert_chord_error(result)
    assert canvas.wait_effects(k, 1) == [result.id]
    assert canvas.effects(body_key) == []


def test_chord_header_chain_member_failure_fails_the_body(canvas: Canvas) -> None:
    k = key()
    header = [chain(t.add.si(1, 1), t.fail.s(), t.add.s(1)), t.add.si(2, 2)]
    result = chord(header, t.xsum.s().on_error(t.errback_old.s(key=k))).delay()
    assert_chord_error(result)
    assert canvas.wait_effects(k, 1)[0].startswith(result.id)


def test_chord_body_failure(canvas: Canvas) -> None:
    k = key()
    result = chord([t.add.si(1, 1)], t.fail.s().on_error(t.errback_new.s(key=k))).delay()
    with pytest.raises(t.ExpectedError):
        result.get(timeout=TIMEOUT)
    assert canvas.wait_effects(k, 1) == [result.id]


def test_chord_counts_a_retried_header_member_once(canvas: Canvas) -> None:
    attempts, body_key = key(), key()
    header = [t.retry_once.si(5, attempts), t.add.si(1, 1), t.retry_once.si(7, attempts)]
    result = chord(header, t.collect.s(key=body_key)).delay()
    assert result.get(timeout=TIMEOUT) == [5, 2, 7]
    assert sorted(canvas.effects(attempts)) == ["0", "0", "1", "1"]
    assert len(canvas.effects(body_key)) == 1


def test_pgboss_chord_counts_a_header_job_retried_by_pg_boss_once(canvas: Canvas) -> None:
    """A header job pg-boss runs again after a failure (queue retry_limit) counts once, when it ends."""
    if canvas.mode != "pgboss":
        pytest.skip("pg-boss's own retries")
    runs, body_key = key(), key()
    member = t.fail_first_run.si(5, runs).set(queue="canvas-fragile")
    result = chord([member, t.add.si(1, 1)], t.collect.s(key=body_key)).delay()
    assert result.get(timeout=TIMEOUT) == [5, 2]
    assert len(canvas.effects(runs)) == 2
    assert len(canvas.effects(body_key)) == 1


# -- map, starmap, chunks -----------------------------------------------------------------------


def test_map_starmap_chunks(canvas: Canvas) -> None:
    assert t.xsum.map([list(range(3)), list(range(4))]).delay().get(timeout=TIMEOUT) == [3, 6]
    assert t.add.starmap([(1, 1), (2, 2)]).delay().get(timeout=TIMEOUT) == [2, 4]
    chunks = t.add.chunks(zip(range(10), range(10), strict=True), 3)
    assert chunks.delay().get(timeout=TIMEOUT) == [[0, 2, 4], [6, 8, 10], [12, 14, 16], [18]]
    assert chunks.group().delay().get(timeout=TIMEOUT) == [[0, 2, 4], [6, 8, 10], [12, 14, 16], [18]]


# -- Task.replace -------------------------------------------------------------------------------


def test_replace_alone(canvas: Canvas) -> None:
    assert t.replace_with_task.delay(1).get(timeout=TIMEOUT) == 2
    assert t.replace_with_chain.delay(1).get(timeout=TIMEOUT) == 3
    assert t.replace_with_group.delay(1).get(timeout=TIMEOUT) == [2, 3]
    assert t.replace_with_chord.delay(1).get(timeout=TIMEOUT) == 5


def test_replace_keeps_links(canvas: Canvas) -> None:
    k = key()
    result = t.replace_with_chain.apply_async((1,), link=t.collect.s(key=k))
    assert result.get(timeout=TIMEOUT) == 3
    assert canvas.wait_effects(k, 1) == ["3"]
    result = t.replace_with_fail.apply_async((1,), link_error=t.errback_new.s(key=k))
    with pytest.raises(t.ExpectedError):
        result.get(timeout=TIMEOUT)
    assert canvas.wait_effects(k, 2)[1] == result.id


def test_replace_with_a_chain_ending_in_a_group_and_twice(canvas: Canvas) -> None:
    assert t.replace_with_chain_to_group.delay(1).get(timeout=TIMEOUT) == [3, 4]
    assert t.replace_twice.delay(1).get(timeout=TIMEOUT) == 3
    assert chain(t.add.si(0, 1), t.replace_twice.s(), t.add.s(10))().get(timeout=TIMEOUT) == 13
    header = [t.replace_twice.si(1), t.replace_with_chain_to_group.si(1), t.add.si(2, 2)]
    assert chord(header, t.collect.s()).delay().get(timeout=TIMEOUT) == [3, [3, 4], 4]
    assert chord([t.add.si(1, 1)], t.replace_with_chord.s()).delay().get(timeout=TIMEOUT) == 7


def test_pgboss_a_replaced_job_row_ends_with_the_replacement_result(canvas: Canvas) -> None:
    """pg-boss's own view (Node, SQL): one row for the id, completed with the final result."""
    if canvas.mode != "pgboss":
        pytest.skip("pg-boss job rows")
    result = t.replace_with_chain.delay(1)
    assert result.get(timeout=TIMEOUT) == 3
    [row] = canvas.env.manager.get_jobs([result.id])
    assert (row["name"], row["state"], row["output"]) == ("celery", "completed", {"value": 3})


def test_replace_with_a_failing_task(canvas: Canvas) -> None:
    with pytest.raises(t.ExpectedError):
        t.replace_with_fail.delay(1).get(timeout=TIMEOUT)


def test_replace_in_a_chain(canvas: Canvas) -> None:
    # first, middle, last child; replaced by a chain, a group and a chord
    assert chain(t.replace_with_chain.s(1), t.add.s(10))().get(timeout=TIMEOUT) == 13
    assert chain(t.add.si(0, 1), t.replace_with_chain.s(), t.add.s(10))().get(timeout=TIMEOUT) == 13
    assert chain(t.add.si(0, 1), t.replace_with_chain.s())().get(timeout=TIMEOUT) == 3
    assert chain(t.add.si(0, 1), t.replace_with_group.s(), t.xsum.s())().get(timeout=TIMEOUT) == 5
    assert chain(t.add.si(0, 1), t.replace_with_chord.s(), t.add.s(10))().get(timeout=TIMEOUT) == 15
    assert chain(t.add.si(0, 1), t.replace_with_group.s())().get(timeout=TIMEOUT) == [2, 3]


def test_replace_in_a_group_keeps_its_order(canvas: Canvas) -> None:
    result = group(
        t.add.si(1, 1), t.replace_with_chain.si(1), t.replace_with_task.si(5), t.add.si(3, 3)
    ).delay()
    assert result.get(timeout=TIMEOUT) == [2, 3, 6, 6]
    result = group(t.replace_with_group.si(1), t.add.si(2, 2), t.replace_with_chord.si(1)).delay()
    assert result.get(timeout=TIMEOUT) == [[2, 3], 4, 5]


def test_replace_in_a_chord_header(canvas: Canvas) -> None:
    header = [t.replace_with_chain.si(1), t.add.si(2, 2), t.replace_with_task.si(9)]
    assert chord(header, t.collect.s()).delay().get(timeout=TIMEOUT) == [3, 4, 10]
    header = [t.add.si(2, 2), t.replace_with_group.si(1)]
    assert chord(header, t.collect.s()).delay().get(timeout=TIMEOUT) == [4, [2, 3]]
    header = [t.replace_with_chord.si(1), t.add.si(2, 2)]
    assert chord(header, t.collect.s()).delay().get(timeout=TIMEOUT) == [5, 4]


def test_replace_a_chord_body(canvas: Canvas) -> None:
    assert chord([t.add.si(1, 1), t.add.si(2, 2)], t.replace_with_chain.s()).delay().get(timeout=TIMEOUT) == 8
    assert chord([t.add.si(1, 1)], t.replace_with_group.s()).delay().get(timeout=TIMEOUT) == [3, 4]


def test_replace_failing_in_a_chord_header_fails_the_body(canvas: Canvas) -> None:
    result = chord([t.replace_with_fail.si(1), t.add.si(1, 1)], t.xsum.s()).delay()
    assert_chord_error(result)


def test_nothing_is_left_waiting(canvas: Canvas) -> None:
    """A canvas of everything at once resolves completely: every node of the tree is ready."""
    result = chain(
        group(t.add.si(1, 1), chain(t.add.si(1, 1), t.replace_with_chain.s())),
        chord([t.add.s(1), t.replace_with_group.s()], t.xsum.s()),
        t.add.s(1),
    )()
    assert result.get(timeout=TIMEOUT) == 23
    node: Any = result
    while node is not None:
        assert node.ready(), f"{node!r} is not ready"
        node = node.parent
    assert isinstance(result, AsyncResult)
