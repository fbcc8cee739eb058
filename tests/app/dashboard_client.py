"""Helpers for driving the dashboard over HTTP in tests: log in through the form, read CSRF tokens."""

from __future__ import annotations

import re

import httpx

CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')


def csrf_of(html: str) -> str:
    match = CSRF.search(html)
    assert match, "no CSRF field on the page"
    return match.group(1)


def logged_in(base_url: str, token: str) -> httpx.Client:
    """An httpx client holding a dashboard session made through the login form."""
    client = httpx.Client(base_url=base_url, follow_redirects=False, timeout=30)
    form = client.get("/dashboard/login")
    assert form.status_code == 200
    done = client.post(
        "/dashboard/login", data={"token": token, "csrf": csrf_of(form.text), "next": "/dashboard"}
    )
    assert done.status_code == 303 and done.headers["location"] == "/dashboard", done.text
    return client
