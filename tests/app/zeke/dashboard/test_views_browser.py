"""The dashboard in a real headless Chromium: counts on the page match the database, a retry from
the page re-runs a failed job on a real worker, and jobs change state on screen without a reload
(SSE from PostgreSQL NOTIFY). Screenshots of the main pages are taken on the way, into
``ZEKE_SCREENSHOTS`` when set (``make screenshots``: docs/img/, which README shows), else a temporary
directory."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.app.browser import chromium
from tests.app.conftest import API_KEY, ROOT, ApiServer, wait_for_state
from transport.manager import JobManager
from transport.outputs import error_output

TIMEOUT_MS = 30_000


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    configured = os.environ.get("ZEKE_SCREENSHOTS")
    folder = (ROOT / configured) if configured else tmp_path / "shots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    with chromium(tmp_path / "profile") as context:
        context.set_default_timeout(TIMEOUT_MS)
        yield context


def log_in(page: Any, server: ApiServer, path: str = "/dashboard") -> None:
    page.goto(server.url + path)
    assert "/dashboard/login" in page.url  # no session yet: the form
    page.fill("input[name=token]", API_KEY)
    page.click("button.primary")
    page.wait_for_url(re.compile(re.escape(server.url + path) + r"$"))


def mark(page: Any) -> None:
    """Tag the loaded document; a reload would lose the tag."""
    page.evaluate("window.__zekeMark = 'still here'")


def not_reloaded(page: Any) -> bool:
    return page.evaluate("window.__zekeMark") == "still here"


def fail_for_good(manager: JobManager, name: str, data: dict, message: str) -> str:
    manager.create_queue(name)
    job_id = manager.send(name, data)
    [job] = manager.fetch([name])
    assert job.id == job_id
    try:
        raise RuntimeError(message)
    except RuntimeError as exc:
        manager.fail(name, [job.id], error_output(exc), retry=False)
    return job_id


def test_counts_on_the_page_match_the_database_and_move_live(
    api_server: ApiServer, manager: JobManager, browser: Any, shots: Path
) -> None:
    manager.create_queue("t-echo")
    manager.create_queue("t-item")
    for i in range(5):
        manager.send("t-echo", {"message": f"m{i}"})
    manager.send("t-item", {"n": 1})
    page = browser.new_page()
    log_in(page, api_server)
    page.wait_for_selector("#counts tr[data-queue='t-echo']")

    def on_screen() -> dict[tuple[str, str], int]:
        cells = page.eval_on_selector_all(
            "#counts tr[data-queue] td[data-state]",
            "cells => cells.map(c => [c.closest('tr').dataset.queue, c.dataset.state, c.innerText.trim()])",
        )
        return {(q, s): int(text.replace(",", "")) for q, s, text in cells if text != "0"}

    def in_database() -> dict[tuple[str, str], int]:
        with manager.db.cursor() as cur:
            cur.execute(
                f'SELECT name, state::text AS state, count(*) AS n FROM "{manager.schema}".job GROUP BY 1, 2'
            )
            return {(r["name"], r["state"]): r["n"] for r in cur.fetchall()}

    assert on_screen() == in_database() == {("t-echo", "created"): 5, ("t-item", "created"): 1}
    page.wait_for_selector("#live.on")  # the SSE stream is open
    mark(page)
    [job] = manager.fetch(["t-item"])  # NOTIFY "<id> active"
    page.wait_for_selector("#counts tr[data-queue='t-item'] td[data-state='active'][data-count='1']")
    manager.complete("t-item", [(job.id, {"ok": True}, None)])
    page.wait_for_selector("#counts tr[data-queue='t-item'] td[data-state='completed'][data-count='1']")
    assert not_reloaded(page)
    assert on_screen() == in_database()
    # More work finishes; the counts follow and so does the throughput chart (re-read after changes).
    batch = manager.fetch(["t-echo"], batch_size=3)
    manager.complete("t-echo", [(j.id, {"ok": True}, None) for j in batch[:2]])
    manager.fail("t-echo", [batch[2].id], {"name": "ValueError", "message": "no"}, retry=False)
    page.wait_for_selector("#counts tr[data-queue='t-echo'] td[data-state='failed'][data-count='1']")
    assert on_screen() == in_database()
    page.wait_for_function(
        "(() => { const c = Chart.getChart(document.getElementById('throughput'));"
        " const sum = i => c.data.datasets[i].data.reduce((a, b) => a + b, 0);"
        " return sum(0) === 3 && sum(1) === 1; })()"
    )
    assert not_reloaded(page)
    page.screenshot(path=str(shots / "dashboard-queues.png"), full_page=True)


def test_a_retry_from_the_page_reruns_the_job_live(
    api_server: ApiServer, manager: JobManager, start_worker: Any, browser: Any, shots: Path
) -> None:
    job_id = fail_for_good(manager, "t-sleep", {"seconds": 1.5, "tag": "again"}, "the first try broke")
    start_worker("-Q", "t-sleep")
    page = browser.new_page()
    log_in(page, api_server, f"/dashboard/jobs/{job_id}")
    assert page.inner_text("#job-state") == "failed"
    assert "RuntimeError" in page.inner_text(".error-card") and "the first try broke" in page.inner_text(
        ".error-card"
    )
    page.screenshot(path=str(shots / "dashboard-failed-job.png"), full_page=True)

    page.click("button[data-action=retry]")
    page.wait_for_selector(".flash.ok")
    page.wait_for_selector("#live.on")
    mark(page)
    # The worker picks the retried job up, runs it for 1.5 s and completes it; the page follows.
    page.wait_for_selector("#job[data-state='completed']")
    assert not_reloaded(page)
    done = wait_for_state(manager, job_id, {"completed"})
    assert done["output"]["tag"] == "again" and done["retry_count"] == 1
    assert page.inner_text("#job-state") == "completed"


def test_jobs_list_filters_in_place_and_workers_show(
    api_server: ApiServer, manager: JobManager, browser: Any, start_worker: Any, shots: Path
) -> None:
    manager.create_queue("t-echo")
    for i in range(8):
        manager.send("t-echo", {"message": f"hello {i}"})
    fail_for_good(manager, "t-item", {"n": 1}, "upstream answered 503")
    start_worker("-Q", "t-echo", name="shots")
    wait_for_state(manager, manager.send("t-echo", {"message": "last"}), {"completed"})
    page = browser.new_page()
    log_in(page, api_server, "/dashboard/jobs")
    page.wait_for_selector("#jobs tr[data-job]")
    rows = page.eval_on_selector_all("#jobs tr[data-job]", "rows => rows.map(r => r.dataset.state)")
    assert "completed" in rows and "failed" in rows
    page.screenshot(path=str(shots / "dashboard-jobs.png"), full_page=True)
    page.select_option("select[name=state]", "failed")  # htmx swaps the table in place
    page.wait_for_function(
        "[...document.querySelectorAll('#jobs tr[data-job]')].every(r => r.dataset.state === 'failed')"
    )
    assert page.eval_on_selector_all("#jobs tr[data-job]", "rows => rows.length") == 1
    page.goto(api_server.url + "/dashboard/workers")
    page.wait_for_selector("tr[data-worker^='shots@']")
    page.screenshot(path=str(shots / "dashboard-workers.png"), full_page=True)
