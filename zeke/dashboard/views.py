"""The dashboard's pages under ``/dashboard``: server-rendered (Jinja2), made live by htmx fragments
that reload when the SSE stream ``/dashboard/live`` reports job changes (PostgreSQL NOTIFY through
the API's :class:`~zeke.api.sse.StateHub`), and a Chart.js chart of throughput and latency.

Every page needs a session (:mod:`zeke.dashboard.session`); every POST a CSRF token. Actions go
through :mod:`zeke.client`, the same calls as the HTTP API and the CLI.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from fastapi.templating import Jinja2Templates

from transport import names
from transport.manager import JobManager
from zeke import client
from zeke.api import sse
from zeke.dashboard import data, session
from zeke.settings import Settings

HERE = Path(__file__).resolve().parent
templates = Jinja2Templates(directory=str(HERE / "templates"))


def _when(value: Any) -> str:
    if not isinstance(value, dt.datetime):
        return "–" if value is None else str(value)
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _ago(value: Any, now: dt.datetime | None = None) -> str:
    if not isinstance(value, dt.datetime):
        return ""
    now = now or dt.datetime.now(dt.UTC)
    seconds = (now - value).total_seconds()
    future = seconds < 0
    seconds = abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            amount = f"{int(seconds // size)}{unit}"
            break
    else:
        amount = f"{int(seconds)}s"
    return f"in {amount}" if future else f"{amount} ago"


templates.env.filters["when"] = _when
templates.env.filters["ago"] = _ago
templates.env.filters["short_id"] = lambda v: str(v)[:8]


class LoginRequired(Exception):
    """Raised by :func:`require_session`; answered with a redirect to the login form."""


def require_session(request: Request) -> session.Session:
    current = session.current(request)
    if current is None:
        raise LoginRequired
    return current


async def login_required(request: Request, exc: LoginRequired) -> Response:
    target = "/dashboard/login?" + urlencode({"next": request.url.path})
    if request.headers.get("hx-request"):
        return Response(status_code=401, headers={"HX-Redirect": target})
    if request.url.path == "/dashboard/live":
        return Response(status_code=401)
    return RedirectResponse(target, status_code=status.HTTP_303_SEE_OTHER)


def _manager() -> JobManager:
    return client.get_manager()


def _secret(request: Request) -> bytes:
    return request.app.state.dashboard_secret


def _page(request: Request, name: str, current: session.Session, **context: Any) -> HTMLResponse:
    context.update(
        request=request,
        csrf=session.csrf_token(_secret(request), current.cookie),
        principal=current.principal,
        now=dt.datetime.now(dt.UTC),
        states=data.STATES,
    )
    response = templates.TemplateResponse(request, name, context)
    response.headers["Cache-Control"] = "no-store"
    session.remember(response, request, current)
    return response


async def _check_csrf(request: Request, current: session.Session) -> None:
    token = request.headers.get(session.CSRF_HEADER)
    if token is None:
        form = await request.form()
        token = str(form.get(session.CSRF_FIELD) or "")
    if current.new or not session.csrf_ok(_secret(request), current.cookie, token):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, detail="missing or invalid CSRF token; reload the page"
        )


router = APIRouter(prefix="/dashboard", include_in_schema=False)


# -- login -------------------------------------------------------------------------------------------


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/dashboard", error: str | None = None) -> HTMLResponse:
    nonce = request.cookies.get(session.LOGIN_COOKIE) or session.issue(_secret(request), "login").cookie
    settings: Settings = request.app.state.settings
    context = {
        "request": request,
        "next": _safe_next(next),
        "error": error,
        "csrf": session.csrf_token(_secret(request), nonce),
        "configured": bool(settings.api_keys),
    }
    response = templates.TemplateResponse(request, "login.html", context)
    session.set_cookie(response, request, session.LOGIN_COOKIE, nonce, 600)
    return response


@router.post("/login")
def log_in(
    request: Request,
    token: str = Form(""),
    csrf: str = Form(""),
    next: str = Form("/dashboard"),
) -> Response:
    nonce = request.cookies.get(session.LOGIN_COOKIE, "")
    if not nonce or not session.csrf_ok(_secret(request), nonce, csrf):
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="the login form expired; reload it")
    settings: Settings = request.app.state.settings
    current = session.log_in(settings, _secret(request), token)
    if current is None:
        query = urlencode(
            {"next": _safe_next(next), "error": "That is not one of the API keys (ZEKE_API_KEYS)."}
        )
        return RedirectResponse("/dashboard/login?" + query, status_code=status.HTTP_303_SEE_OTHER)
    response = RedirectResponse(_safe_next(next), status_code=status.HTTP_303_SEE_OTHER)
    session.remember(response, request, current)
    response.delete_cookie(session.LOGIN_COOKIE, path=session.PATH)
    return response


@router.post("/logout")
async def log_out(request: Request, current: session.Session = Depends(require_session)) -> Response:
    await _check_csrf(request, current)
    response = RedirectResponse("/dashboard/login", status_code=status.HTTP_303_SEE_OTHER)
    response.delete_cookie(session.COOKIE, path=session.PATH)
    return response


def _safe_next(target: str) -> str:
    """Only a dashboard path: never an open redirect to another site."""
    if target.startswith("/dashboard") and not target.startswith("//") and "\\" not in target:
        return target
    return "/dashboard"


# -- pages -------------------------------------------------------------------------------------------


@router.get("", response_class=HTMLResponse)
def overview(request: Request, current: session.Session = Depends(require_session)) -> HTMLResponse:
    table = data.counts_table(_manager())
    return _page(request, "overview.html", current, **table)


@router.get("/fragments/counts", response_class=HTMLResponse)
def counts_fragment(request: Request, current: session.Session = Depends(require_session)) -> HTMLResponse:
    return _page(request, "_counts.html", current, **data.counts_table(_manager()))


@router.get("/throughput.json")
def throughput(
    request: Request,
    queue: str | None = None,
    minutes: int = 60,
    current: session.Session = Depends(require_session),
) -> JSONResponse:
    minutes = max(5, min(minutes, 24 * 60))
    series = data.throughput_series(_manager(), _queue(queue), minutes)
    return JSONResponse(series, headers={"Cache-Control": "no-store"})


def _queue(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return names.validate_queue_name(value)
    except ValueError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=str(exc)) from None


def _filter(
    queue: str | None,
    state: str | None,
    since: str | None,
    until: str | None,
    q: str | None,
    before: str | None,
) -> data.JobFilter:
    if state and state not in data.STATES:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=f"unknown state {state!r}")
    try:
        return data.JobFilter(
            queue=_queue(queue),
            state=state or None,
            since=data.parse_time(since),
            until=data.parse_time(until),
            text=(q or "").strip()[:200] or None,
            before=data.parse_cursor(before),
        )
    except ValueError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=f"bad filter: {exc}") from None


@router.get("/jobs", response_class=HTMLResponse)
def jobs(
    request: Request,
    queue: str | None = None,
    state: str | None = None,
    since: str | None = None,
    until: str | None = None,
    q: str | None = None,
    before: str | None = None,
    current: session.Session = Depends(require_session),
) -> HTMLResponse:
    where = _filter(queue, state, since, until, q, before)
    page = data.jobs_page(_manager(), where)
    template = "_jobs_table.html" if _fragment(request) else "jobs.html"
    queues = [row["name"] for row in data.Monitor(_manager()).queues()]
    return _page(request, template, current, where=where, queues=queues, **page)


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job(request: Request, job_id: str, current: session.Session = Depends(require_session)) -> HTMLResponse:
    detail = data.job_detail(_manager(), _job_id(job_id))
    if detail is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="Job not found")
    template = "_job.html" if _fragment(request) else "job.html"
    done = request.query_params.get("done")
    return _page(request, template, current, job=detail, done=done)


def _fragment(request: Request) -> bool:
    """An htmx swap wants the fragment; a history restore (also htmx's) wants the whole page."""
    headers = request.headers
    return bool(headers.get("hx-request")) and not headers.get("hx-history-restore-request")


def _job_id(value: str) -> str:
    try:
        return names.parse_job_id(value)
    except ValueError:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="Job not found") from None


ACTIONS = {"retry": client.retry_job, "cancel": client.cancel_job}


@router.post("/jobs/{job_id}/{action}")
async def act(
    request: Request, job_id: str, action: str, current: session.Session = Depends(require_session)
) -> Response:
    """Retry, cancel or delete a job through zeke.client; back to its page (or the list) after."""
    await _check_csrf(request, current)
    job_id = _job_id(job_id)
    if action == "delete":
        deleted = await run_in_threadpool(client.delete_job, job_id)
        if deleted is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail="Job not found")
        return RedirectResponse("/dashboard/jobs?" + urlencode({"deleted": job_id}), status_code=303)
    if action not in ACTIONS:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no action {action!r}")
    result = await run_in_threadpool(ACTIONS[action], job_id)
    if result is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="Job not found")
    outcome = f"{action}-done" if result["changed"] else f"{action}-refused-{result['status']}"
    return RedirectResponse(f"/dashboard/jobs/{job_id}?done={outcome}", status_code=303)


@router.get("/schedules", response_class=HTMLResponse)
def schedules(request: Request, current: session.Session = Depends(require_session)) -> HTMLResponse:
    return _page(request, "schedules.html", current, schedules=data.schedules(_manager()))


@router.get("/workers", response_class=HTMLResponse)
def workers(request: Request, current: session.Session = Depends(require_session)) -> HTMLResponse:
    celery = data.celery_workers()
    nodes = data.node_instances(_manager())
    active = data.jobs_page(_manager(), data.JobFilter(state="active"), limit=100)["jobs"]
    return _page(request, "workers.html", current, celery=celery, nodes=nodes, active=active)


# -- live --------------------------------------------------------------------------------------------


@router.get("/live")
async def live(request: Request, current: session.Session = Depends(require_session)) -> StreamingResponse:
    """Server-Sent Events: ``change`` with ``{"id", "state"}`` for every job transition NOTIFYd, and
    ``resync`` when notifications may have been missed; the page reloads its fragments on either."""
    hub: sse.StateHub = request.app.state.hub
    settings: Settings = request.app.state.settings
    queue = hub.watch_all()

    async def events() -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + settings.sse_max_seconds
        try:
            yield "retry: 3000\n\n"
            while loop.time() < deadline:
                try:
                    message = await asyncio.wait_for(queue.get(), settings.sse_keepalive_seconds)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                if message == sse.RESYNC:
                    yield sse.format_event("resync", "{}")
                    continue
                job_id, _, state = message.partition(" ")
                yield sse.format_event("change", json.dumps({"id": job_id, "state": state}))
        finally:
            hub.unwatch_all(queue)

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
