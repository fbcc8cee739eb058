"""The web dashboard over HTTP (a real uvicorn server, a real PostgreSQL): sessions and CSRF, counts
against the database, filters and keyset paging, actions through zeke.client, schema 26 (Node
pg-boss 12.5) and a 200k-job sanity run. The browser-driven tests are in test_dashboard_browser.py."""

from __future__ import annotations

import re
import time
import uuid

import httpx
import pytest

from tests.app.conftest import API_KEY, ApiServer
from tests.app.dashboard_client import csrf_of, logged_in
from transport.manager import JobManager
from transport.outputs import error_output


def _failed_job(manager: JobManager, name: str = "t-echo", message: str = "the feed said 404") -> str:
    """A job of ``name`` that failed for good (``name`` must have no other runnable job)."""
    manager.create_queue(name)
    job_id = manager.send(name, {"message": "x"})
    [job] = manager.fetch([name])
    try:
        raise ValueError(message)
    except ValueError as exc:
        manager.fail(name, [job.id], error_output(exc), retry=False)
    return job_id


def test_pages_need_a_session_made_from_an_api_key(api_server: ApiServer) -> None:
    anonymous = httpx.get(api_server.url + "/dashboard", follow_redirects=False)
    assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/dashboard/login")
    for path in (
        "/dashboard/jobs",
        "/dashboard/schedules",
        "/dashboard/workers",
        "/dashboard/throughput.json",
    ):
        assert httpx.get(api_server.url + path).status_code == 303, path
    fragment = httpx.get(api_server.url + "/dashboard/fragments/counts", headers={"HX-Request": "true"})
    assert fragment.status_code == 401 and fragment.headers["hx-redirect"].startswith("/dashboard/login")

    client = httpx.Client(base_url=api_server.url)
    form = client.get("/dashboard/login")
    wrong = client.post("/dashboard/login", data={"token": "nope", "csrf": csrf_of(form.text)})
    assert wrong.status_code == 303 and "error=" in wrong.headers["location"]
    forged = client.post("/dashboard/login", data={"token": API_KEY, "csrf": "0" * 40})
    assert forged.status_code == 403  # the login form is CSRF-protected too

    session = logged_in(api_server.url, API_KEY)
    cookie = session.cookies.jar
    [dashboard_cookie] = [c for c in cookie if c.name == "zeke_dashboard"]
    assert API_KEY not in dashboard_cookie.value  # the key never goes into the cookie
    page = session.get("/dashboard")
    assert page.status_code == 200 and "Queues" in page.text
    raw = session.get("/dashboard/login")  # a fresh form sets its own pre-login cookie
    assert (
        "httponly" in raw.headers["set-cookie"].lower()
        and "samesite=strict" in raw.headers["set-cookie"].lower()
    )


def test_session_cookie_flags(api_server: ApiServer) -> None:
    client = httpx.Client(base_url=api_server.url)
    form = client.get("/dashboard/login")
    done = client.post("/dashboard/login", data={"token": API_KEY, "csrf": csrf_of(form.text)})
    header = [h for h in done.headers.get_list("set-cookie") if h.startswith("zeke_dashboard=")][0].lower()
    assert "httponly" in header and "samesite=strict" in header and "path=/dashboard" in header


def test_anonymous_only_in_development_on_loopback(make_api) -> None:
    development = make_api(api_keys=(), env="development")
    page = httpx.get(development.url + "/dashboard")
    assert page.status_code == 200 and "anonymous" in page.text
    production = make_api(api_keys=())
    assert httpx.get(production.url + "/dashboard").status_code == 303


def test_counts_match_the_database(api_server: ApiServer, manager: JobManager) -> None:
    manager.create_queue("t-echo")
    manager.create_queue("t-item")
    for i in range(7):
        manager.send("t-echo", {"message": str(i)})
    manager.send("t-item", {"n": 1})
    jobs = manager.fetch(["t-echo"], batch_size=3)
    manager.complete("t-echo", [(jobs[0].id, {"ok": 1}, None)])
    manager.fail("t-echo", [jobs[1].id], {"message": "no"}, retry=False)
    session = logged_in(api_server.url, API_KEY)
    html = session.get("/dashboard").text
    shown = {
        (queue, state): int(count)
        for queue, row in re.findall(r'<tr data-queue="([^"]+)">(.*?)</tr>', html, re.S)
        for state, count in re.findall(r'data-state="(\w+)" data-count="(\d+)"', row)
    }
    with manager.db.cursor() as cur:
        cur.execute(
            f'SELECT name, state::text AS state, count(*) AS n FROM "{manager.schema}".job GROUP BY 1, 2'
        )
        actual = {(r["name"], r["state"]): r["n"] for r in cur.fetchall()}
    assert {k: v for k, v in shown.items() if v} == actual
    assert actual[("t-echo", "created")] == 4 and actual[("t-echo", "active")] == 1


def test_filters_search_and_keyset_paging(api_server: ApiServer, manager: JobManager) -> None:
    manager.create_queue("t-echo")
    manager.create_queue("t-item")
    ids = [manager.send("t-echo", {"message": f"m{i}"}) for i in range(120)]
    other = manager.send("t-item", {"needle": "haystack-42"})
    failed = _failed_job(manager, "t-failing", message="a very particular failure")
    session = logged_in(api_server.url, API_KEY)

    seen: list[str] = []
    url = "/dashboard/jobs?queue=t-echo"
    while url:
        page = session.get(url).text
        seen += re.findall(r'<tr data-job="([0-9a-f-]+)"', page)
        more = re.search(r'href="(/dashboard/jobs\?[^"]*before=[^"]+)" rel="next"', page)
        url = more.group(1).replace("&amp;", "&") if more else None
    assert sorted(seen) == sorted(ids) and len(seen) == len(set(seen))  # every job once, in pages of 50

    def listed(query: str) -> list[str]:
        return re.findall(r'<tr data-job="([0-9a-f-]+)"', session.get("/dashboard/jobs?" + query).text)

    assert listed("state=failed") == [failed]
    assert listed("q=haystack-42") == [other]
    assert listed("q=particular+failure") == [failed]  # text of the error output
    assert listed("q=" + other) == [other]
    assert listed("q=100%25") == []  # LIKE wildcards are literal
    assert listed("since=2999-01-01T00:00") == []
    assert session.get("/dashboard/jobs?state=bogus").status_code == 400
    fragment = session.get("/dashboard/jobs?queue=t-item", headers={"HX-Request": "true"})
    assert fragment.text.lstrip().startswith("<section") and other in fragment.text


def test_job_page_shows_error_traceback_and_attempts(api_server: ApiServer, manager: JobManager) -> None:
    job_id = _failed_job(manager, message="the feed said 404")
    session = logged_in(api_server.url, API_KEY)
    page = session.get(f"/dashboard/jobs/{job_id}").text
    assert "ValueError</b>: the feed said 404" in page
    assert "Traceback (most recent call last)" in page
    assert "1 of 4" in page  # t-echo: retry limit 3
    assert 'data-action="retry"' in page and 'data-action="cancel"' not in page
    assert session.get(f"/dashboard/jobs/{uuid.uuid4()}").status_code == 404


def test_actions_need_the_csrf_token_and_go_through_the_client(
    api_server: ApiServer, manager: JobManager
) -> None:
    job_id = _failed_job(manager)
    session = logged_in(api_server.url, API_KEY)
    token = csrf_of(session.get(f"/dashboard/jobs/{job_id}").text)
    refused = session.post(f"/dashboard/jobs/{job_id}/retry", data={"csrf": "f" * 40})
    assert refused.status_code == 403 and manager.get_job(job_id)["state"] == "failed"
    stranger = httpx.post(f"{api_server.url}/dashboard/jobs/{job_id}/retry", data={"csrf": token})
    assert stranger.status_code == 303 and "login" in stranger.headers["location"]  # no session cookie
    assert manager.get_job(job_id)["state"] == "failed"

    retried = session.post(f"/dashboard/jobs/{job_id}/retry", data={"csrf": token})
    assert retried.status_code == 303 and retried.headers["location"].endswith("done=retry-done")
    assert manager.get_job(job_id)["state"] == "retry"
    again = session.post(f"/dashboard/jobs/{job_id}/retry", headers={"X-CSRF-Token": token})
    assert again.headers["location"].endswith("done=retry-refused-retry")
    assert session.post(f"/dashboard/jobs/{job_id}/cancel", data={"csrf": token}).status_code == 303
    assert manager.get_job(job_id)["state"] == "cancelled"
    deleted = session.post(f"/dashboard/jobs/{job_id}/delete", data={"csrf": token})
    assert deleted.status_code == 303 and manager.get_job(job_id) is None
    assert session.post(f"/dashboard/jobs/{job_id}/delete", data={"csrf": token}).status_code == 404


def test_schedules_show_next_and_last_firing(api_server: ApiServer, manager: JobManager, celery_app) -> None:
    from transport.cron import Timekeeper

    manager.create_queue("t-echo")
    keeper = Timekeeper(manager)
    keeper.schedule("t-echo", "*/5 * * * *", {"message": "tick"}, key="five")
    session = logged_in(api_server.url, API_KEY)
    page = session.get("/dashboard/schedules").text
    assert 'data-schedule="t-echo/five"' in page and "*/5 * * * *" in page
    row = page.split('data-schedule="t-echo/five"')[1].split("</tr>")[0]
    minutes = re.findall(r"\d{4}-\d\d-\d\d \d\d:(\d\d):00", row)
    assert len(minutes) == 2 and all(int(m) % 5 == 0 for m in minutes)  # next and last firing


def test_workers_page_lists_a_running_celery_worker(api_server: ApiServer, start_worker) -> None:
    worker = start_worker("-Q", "t-echo,t-sleep", name="dash")
    session = logged_in(api_server.url, API_KEY)
    deadline = time.monotonic() + 60
    while True:
        page = session.get("/dashboard/workers", timeout=30).text
        if 'data-worker="dash@' in page and "t-sleep</span>" in page:
            break
        assert time.monotonic() < deadline, worker.output()
        time.sleep(1)
    row = page.split('data-worker="dash@')[1].split("</tr>")[0]
    assert "t-echo" in row and "t-sleep" in row


@pytest.mark.node
def test_reads_a_schema_26_database_made_by_node(scratch_db, node_boss) -> None:
    """pg-boss 12.5 (schema 26): queues, counts, jobs and a job page from Node's own tables."""
    from tests.app.conftest import settings_for
    from transport.db import Database
    from zeke.api import create_api
    from zeke.registry import registry

    url = scratch_db("zeke_dash_v26")
    assert node_boss.run("12.5", url, "pgboss", "start") == {"schemaVersion": 26}
    by_node = node_boss.run("12.5", url, "pgboss", "smoke", queue="node-made")  # sent and completed by Node
    db = Database(url, max_connections=4)
    old = JobManager(db, "pgboss")  # finds Node's schema 26 and leaves it as it is
    assert old.info.version == 26
    sent = [old.send("node-made", {"n": i}) for i in range(3)]
    failed = _failed_job(old, "python-failing", "python said no")
    try:
        with ApiServer(create_api(settings_for("pgboss"), old, registry)) as server:
            session = logged_in(server.url, API_KEY)
            overview = session.get("/dashboard").text
            row = overview.split('data-queue="node-made"')[1].split("</tr>")[0]
            assert (
                'data-state="created" data-count="3"' in row
                and 'data-state="completed" data-count="1"' in row
            )
            assert 'data-state="failed" data-count="1"' in overview.split('data-queue="python-failing"')[1]
            listed = re.findall(r'<tr data-job="([0-9a-f-]+)"', session.get("/dashboard/jobs").text)
            assert sorted(listed) == sorted([*sent, failed, by_node["id"]])
            node_page = session.get(f"/dashboard/jobs/{by_node['id']}").text
            assert "completed" in node_page and "&#34;ok&#34;: true" in node_page
            assert "python said no" in session.get(f"/dashboard/jobs/{failed}").text
            assert session.get("/dashboard/schedules").status_code == 200
            workers = session.get("/dashboard/workers", timeout=30).text  # no instance table on 26
            assert "No Node instance registered." in workers
            assert sum(session.get("/dashboard/throughput.json").json()["completed"]) == 1
    finally:
        from zeke import client

        client.set_manager(None)
        db.close()


def _bulk_jobs(manager: JobManager, count: int, queues: tuple[str, ...]) -> None:
    """``count`` finished and pending jobs spread over ``queues`` and the last day, in one INSERT."""
    for name in queues:
        manager.create_queue(name)
    with manager.db.cursor() as cur:
        cur.execute(
            f"""
            INSERT INTO "{manager.schema}".job (id, name, state, data, output, created_on, start_after,
                                                 started_on, completed_on)
            SELECT gen_random_uuid(), (%(queues)s::text[])[1 + i %% %(n)s],
              s.state::"{manager.schema}".job_state, jsonb_build_object('n', i),
              CASE WHEN s.state = 'failed'
                THEN jsonb_build_object('name', 'ValueError', 'message', 'bad ' || i) END,
              t.created, t.created,
              CASE WHEN s.state <> 'created' THEN t.created + interval '1 second' END,
              CASE WHEN s.state IN ('completed', 'failed') THEN t.created + interval '2 seconds' END
            FROM generate_series(1, %(count)s) AS i
            CROSS JOIN LATERAL (SELECT now() - (i * interval '400 milliseconds') AS created) t
            CROSS JOIN LATERAL (SELECT CASE WHEN i %% 50 = 0 THEN 'failed' WHEN i %% 20 = 0 THEN 'created'
                                            ELSE 'completed' END AS state) s
            """,
            {"queues": list(queues), "n": len(queues), "count": count},
        )
        cur.execute(f'ANALYZE "{manager.schema}".job')


def test_pages_at_200k_jobs(api_server: ApiServer, manager: JobManager) -> None:
    """A sanity run at scale: every page answers with the right rows; timings are printed, not asserted."""
    queues = ("bulk-a", "bulk-b", "bulk-c")
    _bulk_jobs(manager, 200_000, queues)
    session = logged_in(api_server.url, API_KEY)
    timings = {}

    def get(path: str) -> httpx.Response:
        started = time.perf_counter()
        response = session.get(path, timeout=120)
        timings[path] = round((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (path, response.text[:500])
        return response

    overview = get("/dashboard").text
    row = overview.split('data-queue="bulk-a"')[1].split("</tr>")[0]
    # 200000 jobs, i % 3 == 1 -> bulk-b... each queue holds ~66667: completed is ~61k, failed ~1333.
    assert 'data-state="failed" data-count="1333"' in row or 'data-state="failed" data-count="1334"' in row
    # ~61k completed in the queue: the count stops at Monitor.COUNT_CAP and says so.
    assert 'data-state="completed" data-count="50000"' in row and "50,000+</a>" in row
    first = get("/dashboard/jobs").text
    assert len(re.findall(r'<tr data-job="', first)) == 50
    older = (
        re.search(r'href="(/dashboard/jobs\?[^"]*before=[^"]+)" rel="next"', first)
        .group(1)
        .replace("&amp;", "&")
    )
    assert len(re.findall(r'<tr data-job="', get(older).text)) == 50
    failed = get("/dashboard/jobs?state=failed&queue=bulk-b").text
    assert re.findall(r'data-state="(\w+)"', failed.split("<tbody>")[1]) == ["failed"] * 50
    get("/dashboard/jobs?q=bad+150")
    series = get("/dashboard/throughput.json").json()
    assert sum(series["completed"]) > 0 and all(w is None or w >= 1 for w in series["wait"])
    job_id = re.search(r'<tr data-job="([0-9a-f-]+)"', first).group(1)
    get(f"/dashboard/jobs/{job_id}")
    print("\ndashboard at 200k jobs (ms):", timings)
