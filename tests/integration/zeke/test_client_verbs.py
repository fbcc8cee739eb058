"""zeke.client's pg-boss job verbs (update, upsert, flows, findJobs, pub/sub): thin calls into
JobManager on a real database, with the client's payload rules and JSON-ready statuses."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from transport.exceptions import InvalidOption, InvalidPayload
from transport.manager import JobManager
from zeke import client


@pytest.fixture
def boss(make_boss: Callable[..., JobManager]) -> Iterator[JobManager]:
    boss = make_boss()
    previous = client.set_manager(boss)
    yield boss
    client.set_manager(previous)


def test_update_and_upsert_through_the_client(boss: JobManager) -> None:
    boss.create_queue("doc")
    sent = client.send_job("doc", {"v": 1}, singleton_key="d")
    assert client.update_job("doc", {"v": 2}, singleton_key="d") == {"jobs": [sent["id"]], "updated": 1}
    assert client.update_job("doc", id=sent["id"], priority=3)["updated"] == 1
    status = client.get_job_status(sent["id"])
    assert status is not None and (status["data"], status["priority"]) == ({"v": 2}, 3)

    made = client.upsert_job("doc", {"v": 3}, singleton_key="e")
    assert made["inserted"] == 1
    assert client.upsert_job("doc", {"v": 4}, singleton_key="e") == {
        "jobs": made["jobs"],
        "updated": 1,
        "inserted": 0,
    }
    with pytest.raises(InvalidPayload):
        client.upsert_job("doc", ["not", "an", "object"], singleton_key="e")  # type: ignore[arg-type]
    with pytest.raises(InvalidPayload):
        client.update_job("doc", {"__celery": {}}, singleton_key="e")


def test_flow_find_and_pubsub_through_the_client(boss: JobManager) -> None:
    boss.create_queue("a")
    boss.create_queue("b")
    ids = client.send_flow(
        [
            {"ref": "first", "task_id": "a", "payload": {"n": 1}},
            {"ref": "second", "task_id": "b", "payload": {"n": 2}, "depends_on": ["first"]},
        ]
    )
    found = client.find_jobs("b", data={"n": 2})
    assert [(j["id"], j["status"], j["data"]) for j in found] == [(ids["second"], "created", {"n": 2})]
    assert boss.get_dependencies("b", ids["second"]) == [{"name": "a", "id": ids["first"]}]
    with pytest.raises(InvalidOption, match="unknown flow job key"):
        client.send_flow([{"ref": "x", "name": "a"}, {"ref": "y", "task_id": "a", "depends_on": ["x"]}])

    client.subscribe("ping", "a")
    client.subscribe("ping", "b")
    sent = client.publish("ping", {"hello": True})
    assert set(sent) == {"a", "b"}
    assert [j["data"] for j in client.find_jobs("a", data={"hello": True})] == [{"hello": True}]
    client.unsubscribe("ping", "b")
    assert set(client.publish("ping", {"hello": False})) == {"a"}


def test_concurrent_upserts_of_one_key_make_one_job(boss: JobManager) -> None:
    """Upserts racing on one key end with one waiting job (job_i13), each told what it did."""
    import threading

    boss.create_queue("race")
    results: list[dict] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def upsert(n: int) -> None:
        barrier.wait()
        try:
            results.append(dict(boss.upsert("race", {"n": n}, singleton_key="one")))
        except BaseException as exc:  # noqa: BLE001  (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=upsert, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    jobs = boss.find_jobs("race")
    assert len(jobs) == 1
    assert sum(r["inserted"] for r in results) == 1
    assert all(r["jobs"] == [jobs[0]["id"]] for r in results)
