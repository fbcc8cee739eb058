"""Keeping passwords out of what is shown: URLs for display, and text that may quote a URL or DSN.

A password reaches text by two roads: a URL shown as is (a hostname, an error about a feed URL), and
libpq quoting part of a malformed connection string in its error (``invalid percent-encoded token:
"<the password>"``). :func:`redact_url` covers the first, :func:`redact` (with the URLs that were
used) the second.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

MASK = "**"

#: ``scheme://user:password@`` (the password may hold anything but ``@`` and whitespace).
_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@?#]*:)(?P<password>[^\s@]*)@")
#: ``password=...`` in a URL query or a libpq keyword/value DSN (quoted or not).
_PASSWORD_PARAM = re.compile(
    r"(?P<head>(?:^|[\s?&;])password\s*=\s*)(?P<password>'(?:[^'\\]|\\.)*'|[^\s&;#]*)"
)

#: ``?password=...`` / ``&password=...`` in a URL query.
_QUERY_PASSWORD = re.compile(r"(?P<sep>[?&])password=(?P<password>[^&#]*)")


def passwords(url: str) -> set[str]:
    """Every form of the passwords a URL or DSN carries (as written, and percent-decoded)."""
    found: set[str] = set()
    for pattern in (_USERINFO, _PASSWORD_PARAM):
        for match in pattern.finditer(url):
            raw = match.group("password")
            if raw.startswith("'") and raw.endswith("'") and len(raw) > 1:
                raw = raw[1:-1].replace("\\'", "'").replace("\\\\", "\\")
            found.update(value for value in (raw, unquote(raw)) if value)
    return found


def redact_url(url: str, mask: str = MASK) -> str:
    """``url`` with its password (in the user info and in a ``password`` parameter) replaced by ``mask``."""
    url = _USERINFO.sub(lambda m: m.group("head") + (mask if m.group("password") else "") + "@", url)
    return _PASSWORD_PARAM.sub(lambda m: m.group("head") + mask, url)


def split_password(url: str) -> tuple[str, str | None]:
    """``url`` without its password (user info or ``password`` query parameter), and that password
    (percent-decoded; the query's when both are given, as libpq reads it)."""
    password = None
    match = _USERINFO.search(url)
    if match is not None and match.group("password"):
        password = unquote(match.group("password"))
        url = url[: match.start("password") - 1] + url[match.end("password") :]
    param = _QUERY_PASSWORD.search(url)
    if param is not None:
        password = unquote(param.group("password"))
        before, after = url[: param.start()], url[param.end() :]
        url = before + param.group("sep") + after[1:] if after.startswith("&") else before + after
    return url, password


def redact(text: str, *urls: str | None, mask: str = MASK) -> str:
    """``text`` with every password of ``urls`` replaced by ``mask``, and any URL in it redacted."""
    # Two characters or fewer would blank out ordinary words; no real password is that short.
    secrets = {p for url in urls if url for p in passwords(url) if len(p) > 2}
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, mask)
    return redact_url(text, mask)
