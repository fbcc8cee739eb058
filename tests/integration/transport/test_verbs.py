"""transport.verbs on a real database without Node: bulk deletes in batches, the queue counts they
keep, and refusals that must leave nothing behind."""

from __future__ import annotations

import pytest

from transport import manager as manager_module
from transport.exceptions import InvalidOption, PgBossError, QueueNotFound
from transport.manager import JobManager


def test_bulk_deletes_run_in_batches_and_keep_the_counts(
    boss: JobManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(manager_module, "DELETION_BATCH", 2)
    boss.create_queue("many")
    boss.send_many("many", [{"data": {"n": n}} for n in range(5)])
    with boss.db.cursor() as cur:  # what the monitor would have counted
        cur.execute(f'UPDATE "{boss.schema}".queue SET total_count = 5 WHERE name = %s', ("many",))
    assert boss.delete_queued_jobs("many") == 5  # batches of 2, 2, 1
    assert boss.find_jobs("many") == []
    assert boss.get_queue("many")["total_count"] == 0
    assert boss.delete_all_jobs("many") == 0


def test_refusals_leave_nothing_behind(boss: JobManager) -> None:
    boss.create_queue("fifo", policy="key_strict_fifo")
    with boss.db.connection() as conn:
        with pytest.raises(InvalidOption, match="require a singleton_key"):
            boss.send("fifo", {"n": 1}, conn=conn)
        conn.rollback()
    assert boss.find_jobs("fifo") == []
    with pytest.raises(QueueNotFound):
        boss.update_queue("nowhere", retry_limit=1)
    with pytest.raises(InvalidOption, match="unknown queue option"):
        boss.update_queue("fifo", retry_limits=1)
    with pytest.raises(InvalidOption, match="requires exactly one"):
        boss.upsert("fifo", {"n": 1}, id="00000000-0000-0000-0000-000000000001", singleton_key="k")
    with pytest.raises(InvalidOption, match="unknown update option"):
        boss.update("fifo", {"n": 1}, singleton_key="k", colour="red")
    assert boss.find_jobs("fifo") == []


def test_publish_tries_every_subscriber_and_names_the_refusals(boss: JobManager) -> None:
    boss.create_queue("plain")
    boss.create_queue("strict", policy="key_strict_fifo")
    boss.subscribe("evt", "plain")
    boss.subscribe("evt", "strict")
    with pytest.raises(PgBossError, match=r"1 of 2 subscribed queue\(s\): strict: .*singleton_key"):
        boss.publish("evt", {"n": 1})
    assert [j["data"] for j in boss.find_jobs("plain")] == [{"n": 1}]  # the other queue got its job
    assert set(boss.publish("evt", {"n": 2}, singleton_key="k")) == {"plain", "strict"}
