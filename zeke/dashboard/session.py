"""Browser sessions for the dashboard: a login form taking an API key, a signed cookie, CSRF tokens.

The API's rules apply (:mod:`zeke.api.auth`): a key from ``ZEKE_API_KEYS`` logs in, and a development
API on loopback without keys lets anyone in as "anonymous". The key itself never goes into the cookie:
the cookie holds who logged in and until when, signed with a secret derived from the configured keys
(so removing a key ends its sessions). It is HttpOnly and SameSite=Strict, and every POST must also
carry a CSRF token bound to that cookie (a form field or the ``X-CSRF-Token`` header htmx sends), so
a page on another site can neither read nor forge a dashboard action. The login form itself is
protected the same way, with a token bound to a short-lived pre-login cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from fastapi import Request
from fastapi.responses import Response

from zeke.api.auth import ANONYMOUS, anonymous_allowed, check_key
from zeke.settings import Settings

COOKIE = "zeke_dashboard"
LOGIN_COOKIE = "zeke_dashboard_login"
PATH = "/dashboard"
#: A session lasts this long; logging in again starts a new one.
SESSION_SECONDS = 12 * 3600
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"


@dataclass(frozen=True)
class Session:
    principal: str
    cookie: str
    #: Issued by this request: the response must set the cookie.
    new: bool = False


def secret_for(settings: Settings) -> bytes:
    """The signing secret: derived from the API keys, or random per process when there are none."""
    if settings.api_keys:
        return hashlib.sha256(b"zeke-dashboard\0" + "\0".join(settings.api_keys).encode()).digest()
    return _PROCESS_SECRET


_PROCESS_SECRET = secrets.token_bytes(32)


def _sign(secret: bytes, text: str) -> str:
    return hmac.new(secret, text.encode(), hashlib.sha256).hexdigest()


def issue(secret: bytes, principal: str, now: float | None = None) -> Session:
    expires = int((now or time.time()) + SESSION_SECONDS)
    body = f"{principal}|{expires}"
    return Session(principal, f"{body}|{_sign(secret, body)}", new=True)


def verify(secret: bytes, cookie: str | None, now: float | None = None) -> Session | None:
    if not cookie or cookie.count("|") != 2:
        return None
    principal, expires, signature = cookie.split("|")
    if not hmac.compare_digest(signature, _sign(secret, f"{principal}|{expires}")):
        return None
    if not expires.isdigit() or int(expires) < (now or time.time()):
        return None
    return Session(principal, cookie)


def csrf_token(secret: bytes, bound_to: str) -> str:
    return _sign(secret, "csrf|" + bound_to)[:40]


def csrf_ok(secret: bytes, bound_to: str, token: str | None) -> bool:
    return bool(token) and hmac.compare_digest(csrf_token(secret, bound_to), token or "")


def current(request: Request) -> Session | None:
    """The request's session: its valid cookie, or a new anonymous one where anonymous access is
    allowed; None means "log in first"."""
    secret: bytes = request.app.state.dashboard_secret
    session = verify(secret, request.cookies.get(COOKIE))
    if session is not None:
        return session
    settings: Settings = request.app.state.settings
    if anonymous_allowed(settings, request):
        return issue(secret, ANONYMOUS.name)
    return None


def log_in(settings: Settings, secret: bytes, token: str) -> Session | None:
    principal = check_key(settings, token.strip())
    return None if principal is None else issue(secret, principal.name)


def set_cookie(response: Response, request: Request, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def remember(response: Response, request: Request, session: Session) -> None:
    if session.new:
        set_cookie(response, request, COOKIE, session.cookie, SESSION_SECONDS)
