"""One job sent alone (the send_job statement) is stored exactly as the same job sent in a batch
(send_jobs): both paths fill every column from the same options and queue defaults."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest

from transport.manager import InvalidPayload, JobManager

COLUMNS = (
    "name, data, data IS NULL AS sql_null, priority, state,"
    " retry_limit, retry_delay, retry_backoff, retry_delay_max, expire_seconds, deletion_seconds,"
    " policy, dead_letter, singleton_key, singleton_on,"
    " start_after - created_on AS delay, keep_until - start_after AS kept"
)

CASES: list[dict[str, Any]] = [
    {"data": {"storyId": 7}},
    {"data": None},
    {"data": [1, "two"], "priority": 5},
    {"data": {"x": 1}, "start_after": dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)},
    {"data": {"x": 1}, "keep_until": dt.datetime.now(dt.UTC) + dt.timedelta(days=3)},
    {"data": {"x": 1}, "start_after": 30},  # seconds: the batch statement, also for one job
]


def _row(boss: JobManager, job_id: str) -> dict[str, Any]:
    with boss.db.cursor() as cur:
        cur.execute(f"SELECT {COLUMNS} FROM {boss.schema}.job WHERE id = %s", (job_id,))
        row = dict(cur.fetchone())
    for key in ("delay", "kept"):
        if row[key] is not None:
            row[key] = row[key].total_seconds()
    return row


def _same_row(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Equal, the delays to within a second: the two sends ran moments apart (a loaded host may put
    a second's boundary between them)."""
    timed = ("delay", "kept")
    if {k: v for k, v in a.items() if k not in timed} != {k: v for k, v in b.items() if k not in timed}:
        return False
    return all(
        (a[k] is None) == (b[k] is None) and (a[k] is None or abs(a[k] - b[k]) <= 1.0) for k in timed
    )


@pytest.mark.parametrize("job", CASES, ids=[str(sorted(c)) for c in CASES])
def test_a_job_sent_alone_equals_the_same_job_sent_in_a_batch(boss: JobManager, job: dict[str, Any]) -> None:
    boss.create_queue("alone", retry_limit=4, retry_delay=3, retry_backoff=True, expire_in_seconds=90)
    alone = boss.send("alone", **{**job, "id": str(uuid.uuid4())})
    batch = boss.send_many("alone", [{**job, "id": str(uuid.uuid4())}, {"data": {"other": True}}])
    assert alone is not None and len(batch) == 2
    alone_row, batch_row = _row(boss, alone), _row(boss, batch[0])
    assert _same_row(alone_row, batch_row), (alone_row, batch_row)


def test_a_job_sent_alone_keeps_its_id_and_is_deduplicated_by_it(boss: JobManager) -> None:
    boss.create_queue("alone")
    job_id = str(uuid.uuid4())
    assert boss.send("alone", {"a": 1}, id=job_id) == job_id
    assert boss.send("alone", {"a": 2}, id=job_id) is None
    assert boss.get_job(job_id)["data"] == {"a": 1}


def test_data_that_is_not_json_is_refused_before_the_database(boss: JobManager) -> None:
    boss.create_queue("alone")
    with pytest.raises(InvalidPayload, match="job data must be JSON"):
        boss.send("alone", {"when": object()})
    with pytest.raises(InvalidPayload):
        boss.send("alone", {"nul": "a\x00b"})
