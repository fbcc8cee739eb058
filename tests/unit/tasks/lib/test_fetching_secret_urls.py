"""A feed or article URL with credentials in it (``https://user:password@host/feed``) is fetched with
them, but the errors that become job output and log lines show it with the password masked."""

from __future__ import annotations

import socket

import pytest

from tasks.lib.errors import FetchFailed, RetryLater, UnsafeURL
from tasks.lib.fetching import Fetcher
from tasks.lib.urls import canonicalize_url
from tasks.settings import TaskSettings
from tests.tasks.helpers import WebServer

PASSWORD = "Feed-S3cret-pw"


def _with_password(url: str) -> str:
    return url.replace("://", f"://reader:{PASSWORD}@", 1)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_fetch_errors_mask_the_password(web: WebServer) -> None:
    web.route("/gone", b"", status=404)
    web.route("/busy", b"", status=503)
    web.route("/loop", b"", status=302, headers={"Location": "/loop"})
    settings = TaskSettings(fetch_timeout=2.0, default_retry_after=1.0, allowed_networks=("127.0.0.1/32",))
    failures = []
    with Fetcher(settings) as fetcher:
        for url in (
            web.url("/gone"),
            web.url("/busy"),
            web.url("/loop"),
            f"http://127.0.0.1:{_closed_port()}/feed",
            "http://127.0.0.2/feed",  # refused by the address policy
            "ftp://127.0.0.1/feed",
        ):
            with pytest.raises((FetchFailed, RetryLater, UnsafeURL)) as raised:
                fetcher.get(_with_password(url))
            failures.append(str(raised.value))
    shown = "\n".join(failures)
    assert PASSWORD not in shown, shown
    # every message names the URL, masked (the address policy's names the host alone)
    assert sum("reader:**@" in text for text in failures) == len(failures) - 1, shown
    with pytest.raises(ValueError) as raised:
        canonicalize_url(_with_password("gopher://example.com/x"))
    assert PASSWORD not in str(raised.value) and "reader:**@" in str(raised.value)
