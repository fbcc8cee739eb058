"""The HTTP API through a real uvicorn server and httpx."""

from __future__ import annotations

import uuid

import httpx

from tests.app.conftest import ApiServer
from transport.manager import JobManager


def _send(manager: JobManager, name: str = "t-echo", data: dict | None = None) -> str:
    manager.create_queue(name)
    job_id = manager.send(name, data if data is not None else {"message": "hi"})
    assert job_id
    return job_id


def test_healthz_is_public_and_the_docs_only_in_development(make_api) -> None:
    production = make_api()
    health = httpx.get(production.url + "/healthz")
    assert health.status_code == 200 and health.json()["database"] == "ok"
    for path in ("/docs", "/redoc", "/openapi.json"):
        assert httpx.get(production.url + path).status_code == 404, path
    configured = make_api(api_docs=True)
    assert httpx.get(configured.url + "/docs").status_code == 200
    development = make_api(env="development")
    assert httpx.get(development.url + "/redoc").status_code == 200
    assert httpx.get(make_api(env="development", api_docs=False).url + "/docs").status_code == 404
    spec = httpx.get(development.url + "/openapi.json").json()
    assert {"/api/jobs", "/api/jobs/{job_id}", "/api/jobs/stream/{run_id}", "/healthz"} <= set(spec["paths"])
    assert "HTTPBearer" in spec["components"]["securitySchemes"]


def test_401_without_or_with_a_wrong_token(api_server: ApiServer) -> None:
    job = str(uuid.uuid4())
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic eDp5"}):
        for method, path in [
            ("GET", f"/api/jobs/{job}"),
            ("POST", "/api/jobs"),
            ("POST", f"/api/jobs/{job}/cancel"),
            ("GET", f"/api/jobs/stream/{job}"),
            ("GET", "/api/tasks"),
        ]:
            r = httpx.request(method, api_server.url + path, headers=headers, json={})
            assert r.status_code == 401, (method, path, headers, r.text)
            assert r.headers["www-authenticate"] == "Bearer"


def test_anonymous_only_in_development_on_loopback(make_api, manager: JobManager) -> None:
    job_id = _send(manager)
    anonymous = make_api(api_keys=(), env="development")
    assert httpx.get(f"{anonymous.url}/api/jobs/{job_id}").status_code == 200
    # A wrong token is still refused where anonymous access would do.
    wrong = httpx.get(f"{anonymous.url}/api/jobs/{job_id}", headers={"Authorization": "Bearer x"})
    assert wrong.status_code == 401
    production = make_api(api_keys=(), env="production")
    assert httpx.get(f"{production.url}/api/jobs/{job_id}").status_code == 401
    exposed = make_api(api_keys=(), env="development", api_host="0.0.0.0")
    assert httpx.get(f"{exposed.url}/api/jobs/{job_id}").status_code == 401


def test_get_job(api_server: ApiServer, auth: dict, manager: JobManager) -> None:
    job_id = _send(manager, data={"message": "hi", "__celery": {"task": "t-echo"}})
    r = httpx.get(f"{api_server.url}/api/jobs/{job_id}", headers=auth)
    assert r.status_code == 200
    body = r.json()
    assert body["id"] == job_id and body["status"] == "created" and body["taskId"] == "t-echo"
    assert body["data"] == {"message": "hi"}  # Celery's envelope is not part of the payload
    assert body["createdOn"] and body["startedOn"] is None and body["retryCount"] == 0

    missing = httpx.get(f"{api_server.url}/api/jobs/{uuid.uuid4()}", headers=auth)
    assert missing.status_code == 404 and missing.json() == {"detail": "Job not found"}
    bad = httpx.get(f"{api_server.url}/api/jobs/not-a-uuid", headers=auth)
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["path", "job_id"]


def test_trigger_refuses_unknown_task_and_bad_payload(api_server: ApiServer, auth: dict) -> None:
    unknown = httpx.post(f"{api_server.url}/api/jobs", headers=auth, json={"taskId": "t-nope", "payload": {}})
    assert unknown.status_code == 404 and "t-nope" in unknown.json()["detail"]

    bad = httpx.post(
        f"{api_server.url}/api/jobs", headers=auth, json={"taskId": "t-echo", "payload": {"count": "many"}}
    )
    assert bad.status_code == 422
    errors = {tuple(e["loc"]): e["type"] for e in bad.json()["detail"]}
    assert errors == {("body", "payload", "message"): "missing", ("body", "payload", "count"): "int_parsing"}

    malformed = httpx.post(f"{api_server.url}/api/jobs", headers=auth, json={"payload": {}})
    assert malformed.status_code == 422 and malformed.json()["detail"][0]["loc"] == ["body", "taskId"]


def test_cancel_and_retry(api_server: ApiServer, auth: dict, manager: JobManager) -> None:
    job_id = _send(manager)
    r = httpx.post(f"{api_server.url}/api/jobs/{job_id}/cancel", headers=auth)
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    again = httpx.post(f"{api_server.url}/api/jobs/{job_id}/cancel", headers=auth)
    assert again.status_code == 200 and again.json()["status"] == "cancelled"  # idempotent
    not_failed = httpx.post(f"{api_server.url}/api/jobs/{job_id}/retry", headers=auth)
    assert not_failed.status_code == 409

    failed_id = _send(manager)
    manager.fetch(["t-echo"])
    manager.fail("t-echo", [failed_id], {"message": "x"}, retry=False)
    r = httpx.post(f"{api_server.url}/api/jobs/{failed_id}/retry", headers=auth)
    assert r.status_code == 200 and r.json()["status"] == "retry"
    done = httpx.post(f"{api_server.url}/api/jobs/{failed_id}/cancel", headers=auth)
    assert done.status_code == 200  # retry is not finished yet: cancellable
    manager.resume("t-echo", [failed_id])
    [job] = manager.fetch(["t-echo"])
    manager.complete("t-echo", [(job.id, {"ok": 1}, None)])
    finished = httpx.post(f"{api_server.url}/api/jobs/{failed_id}/cancel", headers=auth)
    assert finished.status_code == 409

    for action in ("cancel", "retry"):
        missing = httpx.post(f"{api_server.url}/api/jobs/{uuid.uuid4()}/{action}", headers=auth)
        assert missing.status_code == 404


def test_tasks_listing(api_server: ApiServer, auth: dict) -> None:
    tasks = {t["id"]: t for t in httpx.get(f"{api_server.url}/api/tasks", headers=auth).json()}
    assert tasks["t-sleep"]["concurrencyLimit"] == 3
    assert "itemId" in tasks["t-item"]["payloadSchema"]["properties"]


def test_oversized_bodies_are_refused_before_parsing_and_auth(make_api, auth: dict) -> None:
    """413 for a body over ZEKE_API_MAX_BODY_BYTES, anonymous or not, declared or streamed."""
    api = make_api(api_max_body_bytes=1000)
    body = b'{"taskId": "t-echo", "payload": {"message": "' + b"x" * 2000 + b'"}}'
    for headers in ({}, auth, {"Authorization": "Bearer wrong"}):
        r = httpx.post(
            api.url + "/api/jobs", content=body, headers={**headers, "Content-Type": "application/json"}
        )
        assert r.status_code == 413, (headers, r.text)
        assert "larger than 1000 bytes" in r.json()["detail"]

    def chunks():  # no Content-Length: counted as it arrives
        yield b'{"taskId": "t-echo", "payload": {"message": "'
        for _ in range(20):
            yield b"x" * 100
        yield b'"}}'

    streamed = httpx.post(
        api.url + "/api/jobs", content=chunks(), headers={**auth, "Content-Type": "application/json"}
    )
    assert streamed.status_code == 413 and "ZEKE_API_MAX_BODY_BYTES" in streamed.json()["detail"]
    small = httpx.post(
        api.url + "/api/jobs", json={"taskId": "t-echo", "payload": {"message": "hi"}}, headers=auth
    )
    assert small.status_code == 201
