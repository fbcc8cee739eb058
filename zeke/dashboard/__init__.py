"""The web dashboard ``zeke api`` serves at ``/dashboard``: queues, jobs, schedules and workers of
the pg-boss schema, live (see :mod:`zeke.dashboard.views`)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from zeke.dashboard import session, views

STATIC = views.HERE / "static"


def install(api: FastAPI) -> None:
    """Mount the dashboard's pages and static files on ``api`` (whose state holds settings and hub)."""
    api.state.dashboard_secret = session.secret_for(api.state.settings)
    api.include_router(views.router)
    api.mount("/dashboard/static", StaticFiles(directory=str(STATIC)), name="dashboard-static")
    api.add_exception_handler(views.LoginRequired, views.login_required)
    api.add_api_route("/", lambda: RedirectResponse("/dashboard"), include_in_schema=False)
