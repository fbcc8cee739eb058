"""URL canonicalisation: one spelling per document, so the same article reached through a newsletter
link, a feed and a share button dedupes to one raw item."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

from transport.redact import redact_url

#: Query parameters that only track the click; exact names (lower case).
TRACKING_PARAMS = frozenset(
    {
        "fbclid", "gclid", "dclid", "gbraid", "wbraid", "msclkid", "yclid", "twclid", "ttclid",
        "igshid", "mc_cid", "mc_eid", "_hsenc", "_hsmi", "mkt_tok", "vero_id", "oly_anon_id",
        "oly_enc_id", "_ga", "_gl", "spm", "ref_src", "cmpid",
    }
)  # fmt: skip
#: Prefixes of tracking parameters (utm_source, utm_medium, ... and Matomo's pk_/mtm_).
TRACKING_PREFIXES = ("utm_", "pk_", "mtm_")

_DEFAULT_PORTS = {"http": 80, "https": 443}


def is_tracking_param(name: str) -> bool:
    lowered = name.lower()
    return lowered in TRACKING_PARAMS or lowered.startswith(TRACKING_PREFIXES)


def canonicalize_url(url: str, base: str | None = None) -> str:
    """The canonical spelling of ``url`` (resolved against ``base`` when relative).

    Lower-case scheme and host (IDNA-encoded), no default port, no fragment, no tracking parameters,
    the remaining query parameters sorted, and ``/`` for an empty path. Raises ``ValueError`` for
    something that is not an absolute http(s) URL.
    """
    url = (url or "").strip()
    # A NUL, say (tab and newlines are dropped by urlsplit, as browsers do): no real link has one.
    if any((ord(c) < 0x20 and c not in "\t\n\r") or c == "\x7f" for c in url):
        raise ValueError(f"control character in URL: {redact_url(url)!r}")
    if base:
        url = urljoin(base, url)
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ValueError(f"not an http(s) URL: {redact_url(url)!r}")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise ValueError(f"URL has no host: {redact_url(url)!r}")
    host = _idna(host)
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"bad port in URL: {redact_url(url)!r}") from exc
    netloc = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    if parts.username is not None:
        auth = parts.username + (f":{parts.password}" if parts.password is not None else "")
        netloc = f"{auth}@{netloc}"
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not is_tracking_param(k)]
    query.sort()
    return urlunsplit((scheme, netloc, parts.path or "/", urlencode(query, doseq=True), ""))


def hostname(url: str) -> str:
    return (urlsplit(url).hostname or "").lower()


def _idna(host: str) -> str:
    host = host.lower()
    if host.isascii():
        return host
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise ValueError(f"bad host name: {host!r}") from exc
