"""Bearer API keys (``ZEKE_API_KEYS``); anonymous access only for a development API on loopback.

A wrong token is always refused, even where anonymous access would be allowed: a client that sends
a key expects it to be checked.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from zeke.settings import Settings, is_loopback

bearer = HTTPBearer(auto_error=False, description="An API key from ZEKE_API_KEYS")


@dataclass(frozen=True)
class Principal:
    #: A short fingerprint of the key used (never the key), or "anonymous".
    name: str


ANONYMOUS = Principal("anonymous")


def _fingerprint(key: str) -> str:
    return "key:" + hashlib.sha256(key.encode()).hexdigest()[:8]


def check_key(settings: Settings, token: str) -> Principal | None:
    # compare_digest over every key so the time taken does not reveal which prefix matched.
    matched = None
    for key in settings.api_keys:
        if hmac.compare_digest(token.encode(), key.encode()):
            matched = key
    return Principal(_fingerprint(matched)) if matched is not None else None


def anonymous_allowed(settings: Settings, request: Request) -> bool:
    client = request.client.host if request.client else None
    return settings.anonymous_allowed and is_loopback(client)


def require_principal(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)
) -> Principal:
    settings: Settings = request.app.state.settings
    if credentials is not None:
        principal = check_key(settings, credentials.credentials)
        if principal is not None:
            return principal
    elif anonymous_allowed(settings, request):
        return ANONYMOUS
    raise HTTPException(
        status.HTTP_401_UNAUTHORIZED,
        detail="missing or invalid API key" if settings.api_keys else "API keys are not configured",
        headers={"WWW-Authenticate": "Bearer"},
    )
