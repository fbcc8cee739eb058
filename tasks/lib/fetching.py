"""HTTP GET for the tasks: SSRF-guarded, redirects followed and re-checked hop by hop, timeouts, a size
cap, content-type checks, and errors sorted into retryable and permanent ones."""

from __future__ import annotations

import re
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

import httpcore
import httpx

from tasks.lib.errors import FetchFailed, RetryLater, retry_after_seconds
from tasks.lib.netguard import AddressPolicy, GuardedBackend, check_url
from transport.redact import redact_url

#: Media types fetch-content accepts for pages.
PAGE_TYPES = ("text/html", "application/xhtml+xml", "text/plain", "text/markdown", "application/pdf")
#: Media types accepted for feeds. Many servers label feeds text/html or octet-stream, so the parser
#: gets the last word; this only keeps out things that are certainly not feeds.
FEED_TYPES = ("application/", "text/")

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_\-:.]+)""", re.I)


@dataclass(frozen=True)
class FetchResult:
    #: The URL that answered, after redirects.
    url: str
    status: int
    headers: Mapping[str, str]
    content: bytes
    #: Each URL redirected *to*, in order.
    redirects: tuple[str, ...] = field(default=())

    @property
    def not_modified(self) -> bool:
        return self.status == 304

    @property
    def media_type(self) -> str:
        return self.headers.get("content-type", "").split(";", 1)[0].strip().lower()

    @property
    def charset(self) -> str | None:
        for param in self.headers.get("content-type", "").split(";")[1:]:
            key, _, value = param.partition("=")
            if key.strip().lower() == "charset" and value.strip():
                return value.strip().strip("\"'")
        return None

    def text(self) -> str:
        """The body as text: header charset, else an HTML meta charset, else UTF-8 (lenient)."""
        charset = self.charset
        if not charset:
            match = _META_CHARSET.search(self.content[:4096])
            charset = match.group(1).decode("ascii", "replace") if match else "utf-8"
        try:
            return self.content.decode(charset, errors="replace")
        except LookupError:
            return self.content.decode("utf-8", errors="replace")


class GuardedTransport(httpx.HTTPTransport):
    """httpx transport whose connections go through :class:`GuardedBackend`."""

    def __init__(self, policy: AddressPolicy) -> None:
        super().__init__(retries=0)
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            network_backend=GuardedBackend(policy),
            max_connections=10,
            http1=True,
            http2=False,
        )


class Fetcher:
    """One client for a task run; ``with Fetcher(settings) as f: f.get(url)``."""

    def __init__(self, settings: Any, *, policy: AddressPolicy | None = None) -> None:
        self.policy = policy or AddressPolicy.from_settings(settings)
        self.timeout = float(settings.fetch_timeout)
        self.max_bytes = int(settings.fetch_max_bytes)
        self.max_redirects = int(settings.fetch_max_redirects)
        self.default_retry_after = float(settings.default_retry_after)
        self.client = httpx.Client(
            transport=GuardedTransport(self.policy),
            timeout=httpx.Timeout(self.timeout),
            follow_redirects=False,
            trust_env=False,
            headers={"User-Agent": settings.user_agent, "Accept-Encoding": "gzip, deflate"},
        )

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.client.close()

    def get(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        accept: Collection[str] | None = None,
    ) -> FetchResult:
        """GET ``url``. A 304 is returned (``not_modified``); other failures raise.

        ``accept``: media types (or prefixes ending in ``/``) the final response may have.
        Raises :class:`~tasks.lib.errors.UnsafeURL`, :class:`~tasks.lib.errors.FetchFailed` or
        :class:`~tasks.lib.errors.RetryLater`.
        """
        current = url
        redirects: list[str] = []
        deadline = time.monotonic() + self.timeout
        for _hop in range(self.max_redirects + 1):
            check_url(current, self.policy)
            try:
                with self.client.stream("GET", current, headers=dict(headers or {})) as response:
                    location = response.headers.get("location")
                    if response.status_code in _REDIRECTS and location:
                        current = urljoin(current, location.strip())
                        redirects.append(current)
                        continue
                    self._check_status(current, response)
                    if response.status_code == 304:
                        return FetchResult(current, 304, dict(response.headers), b"", tuple(redirects))
                    self._check_type(current, response, accept)
                    body = self._read(current, response, deadline)
                    return FetchResult(
                        current, response.status_code, dict(response.headers), body, tuple(redirects)
                    )
            except httpx.TimeoutException as exc:
                shown = redact_url(current)
                raise RetryLater(self.default_retry_after, f"timed out fetching {shown}") from exc
            except httpx.TransportError as exc:
                shown = redact_url(current)
                raise RetryLater(self.default_retry_after, f"cannot reach {shown}: {exc}") from exc
            except httpx.InvalidURL as exc:
                raise FetchFailed(f"invalid URL {redact_url(current)!r}: {exc}") from exc
        raise FetchFailed(f"more than {self.max_redirects} redirects from {redact_url(url)}")

    def _check_status(self, url: str, response: httpx.Response) -> None:
        status = response.status_code
        if status in (429, 503):
            seconds = retry_after_seconds(response.headers.get("retry-after"), self.default_retry_after)
            raise RetryLater(seconds, f"HTTP {status} from {redact_url(url)}; retry after {seconds:g}s")
        if status >= 500:
            raise RetryLater(self.default_retry_after, f"HTTP {status} from {redact_url(url)}")
        if status >= 400 or (status >= 300 and status != 304):
            raise FetchFailed(f"HTTP {status} from {redact_url(url)}", status)

    def _check_type(self, url: str, response: httpx.Response, accept: Collection[str] | None) -> None:
        if not accept:
            return
        media = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if not media:
            return  # unlabelled: let the parser decide
        if not any(media == a or (a.endswith("/") and media.startswith(a)) for a in accept):
            shown = redact_url(url)
            raise FetchFailed(f"unsupported content type {media!r} from {shown}", response.status_code)

    def _read(self, url: str, response: httpx.Response, deadline: float) -> bytes:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise FetchFailed(
                f"{redact_url(url)} is {declared} bytes; the limit is {self.max_bytes}", response.status_code
            )
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > self.max_bytes:
                shown = redact_url(url)
                raise FetchFailed(f"{shown} is larger than {self.max_bytes} bytes", response.status_code)
            if time.monotonic() > deadline:
                raise RetryLater(
                    self.default_retry_after, f"download of {url} took longer than {self.timeout:g}s"
                )
            chunks.append(chunk)
        return b"".join(chunks)
