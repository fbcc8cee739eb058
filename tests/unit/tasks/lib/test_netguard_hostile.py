"""SSRF against URL ingestion, without a database: ``ingest-oneoff``'s run function and the fetcher
behind ``fetch-content`` (tasks.lib.netguard) refuse loopback, private, link-local and metadata
addresses, names that resolve to them, and redirects to them from an allowed server, *before
connecting*: every socket connect in these tests is recorded, and anything but the local test server
on 127.0.0.1 is refused outright. NUL characters in fetched pages and feeds never reach storage."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.textutil import strings_in

#: What the tests' own servers listen on; no other destination may ever be connected to.
LOCAL = {"127.0.0.1", "::1"}


class ConnectLog:
    """Every socket connect attempted while installed: (host, port). Non-local ones are refused."""

    def __init__(self) -> None:
        self.attempts: list[tuple[str, int]] = []

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        log = self
        real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex

        def check(sock: socket.socket, address: Any) -> None:
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                host, port = address[0], address[1]
                log.attempts.append((host, port))
                if host not in LOCAL:
                    raise AssertionError(f"the SSRF guard let a connection to {host}:{port} through")

        def connect(sock: socket.socket, address: Any) -> None:
            check(sock, address)
            return real_connect(sock, address)

        def connect_ex(sock: socket.socket, address: Any) -> int:
            check(sock, address)
            return real_connect_ex(sock, address)

        monkeypatch.setattr(socket.socket, "connect", connect)
        monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> ConnectLog:
    log = ConnectLog()
    log.install(monkeypatch)
    return log


#: Names our fake resolver answers; everything else goes to the real one (only localhost is used).
FAKE_DNS = {
    "loopback.hostile.test": ["127.0.0.1"],
    "loopback6.hostile.test": ["::1"],
    "metadata.hostile.test": ["169.254.169.254"],
    "internal.hostile.test": ["10.0.0.1"],
    "mixed.hostile.test": ["93.184.216.34", "127.0.0.2"],
    "other-loopback.hostile.test": ["127.0.0.2"],
}


@pytest.fixture
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        if host in FAKE_DNS:
            out = []
            for address in FAKE_DNS[host]:
                family = socket.AF_INET6 if ":" in address else socket.AF_INET
                sockaddr = (address, port, 0, 0) if family == socket.AF_INET6 else (address, port)
                out.append((family, socket.SOCK_STREAM, 6, "", sockaddr))
            return out
        if isinstance(host, str) and host.endswith(".test"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


class NoDatabase:
    """A session factory that fails the test if a refused URL got as far as the database."""

    def __call__(self) -> Any:
        raise AssertionError("a refused URL reached the database")

    def begin(self) -> Any:
        raise AssertionError("a refused URL reached the database")


class QuietLogger:
    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args, **fields: None


class SsrfContext:
    def __init__(self, **settings: Any) -> None:
        from tasks.settings import TaskSettings

        self.settings = TaskSettings(**{"fetch_timeout": 3.0, **settings})
        self.session_factory = NoDatabase()
        self.logger = QuietLogger()
        self.triggered: list[tuple[str, dict[str, Any]]] = []

    def trigger(self, task_id: str, payload: dict[str, Any], **options: Any) -> str:
        self.triggered.append((task_id, payload))
        return "job"


SSRF_URLS = [
    ("http://127.0.0.1/admin", "127.0.0.1"),
    ("http://127.1:6379/", "127.0.0.1"),
    ("http://localhost:5432/", "127.0.0.1"),
    ("http://LOCALHOST./", "127.0.0.1"),
    ("http://[::1]:8080/", "::1"),
    ("http://[::ffff:127.0.0.1]/", "127.0.0.1"),
    ("http://[::ffff:a9fe:a9fe]/latest/meta-data/", "::ffff:a9fe:a9fe"),  # 169.254.169.254
    ("http://169.254.169.254/latest/meta-data/iam/security-credentials/", "169.254.169.254"),
    ("http://[fd00:ec2::254]/latest/meta-data/", "fd00:ec2::254"),
    ("http://10.0.0.1/internal", "10.0.0.1"),
    ("http://0.0.0.0:8000/", "0.0.0.0"),
    ("http://2130706433/", "127.0.0.1"),
    ("http://0x7f000001/", "127.0.0.1"),
    ("http://017700000001/", "127.0.0.1"),
    ("http://user:pass@127.0.0.1@10.0.0.1/", "10.0.0.1"),
    ("http://loopback.hostile.test/", "127.0.0.1"),
    ("https://loopback6.hostile.test/", "::1"),
    ("http://metadata.hostile.test/latest/", "169.254.169.254"),
    ("http://internal.hostile.test:8443/", "10.0.0.1"),
    ("http://mixed.hostile.test/", "127.0.0.2"),
    ("file:///etc/passwd", "http"),
    ("gopher://127.0.0.1:25/_HELO", "http"),
    ("ftp://10.0.0.1/", "http"),
    ("http:///nohost", "host"),
    ("javascript:alert(1)", "http"),
]


@pytest.mark.parametrize(("url", "named"), SSRF_URLS, ids=[u for u, _ in SSRF_URLS])
def test_ingest_oneoff_refuses_private_targets(
    fake_dns: None, connects: ConnectLog, url: str, named: str
) -> None:
    from tasks.ingestion import ingest_oneoff
    from tasks.lib.errors import UnsafeURL

    ctx = SsrfContext(allow_private_urls=False)
    payload = ingest_oneoff.PAYLOAD.model_validate({"url": url, "requestedBy": "mallory"})
    with pytest.raises(UnsafeURL) as refused:
        ingest_oneoff.run(payload, ctx)
    message = str(refused.value)
    assert named in message and ("refusing" in message or "refused" in message), message
    assert ctx.triggered == [] and connects.attempts == []  # refused before any connection


@pytest.fixture
def web() -> Iterator[Any]:
    from tests.tasks.helpers import WebServer

    server = WebServer()
    yield server
    server.close()


def test_redirects_from_an_allowed_server_to_private_targets_never_connect(
    fake_dns: None, connects: ConnectLog, web: Any
) -> None:
    from tasks.lib.errors import UnsafeURL
    from tasks.lib.fetching import PAGE_TYPES, Fetcher

    port = web.port
    web.route("/ok.html", "<html><body><p>fine</p></body></html>")
    targets = {
        "/to-metadata": "http://169.254.169.254/latest/meta-data/",
        "/to-metadata-name": "http://metadata.hostile.test/latest/",
        "/to-internal": "http://10.0.0.1/",
        "/to-internal-name": f"http://internal.hostile.test:{port}/",
        "/to-ipv6-loopback": f"http://[::1]:{port}/ok.html",
        "/to-other-loopback": f"http://127.0.0.2:{port}/ok.html",
        "/to-loopback-name": f"http://other-loopback.hostile.test:{port}/ok.html",
        "/to-mapped": f"http://[::ffff:127.0.0.2]:{port}/ok.html",
        "/to-any": f"http://0.0.0.0:{port}/ok.html",
        "/to-file": "file:///etc/passwd",
        "/to-gopher": "gopher://127.0.0.1:6379/_FLUSHALL",
    }
    for path, location in targets.items():
        web.route(path, b"", status=302, headers={"Location": location})
    web.route("/hop", b"", status=301, headers={"Location": "/to-internal"})  # two hops, then refused

    from tasks.settings import TaskSettings

    only_this_server = TaskSettings(allowed_networks=("127.0.0.1/32",), fetch_timeout=3.0)
    with Fetcher(only_this_server) as fetcher:
        assert fetcher.get(web.url("/ok.html"), accept=PAGE_TYPES).status == 200  # the first hop is fine
        for path in [*targets, "/hop"]:
            with pytest.raises(UnsafeURL) as refused:
                fetcher.get(web.url(path), accept=PAGE_TYPES)
            assert "refusing" in str(refused.value), (path, refused.value)
    # Only ever our own server on 127.0.0.1; never the private targets, not even a SYN.
    assert connects.attempts and {host for host, _ in connects.attempts} == {"127.0.0.1"}
    assert all(p == port for _, p in connects.attempts)
    assert len(web.hits("/ok.html")) == 1


def test_strict_fetcher_refuses_loopback_names_without_connecting(
    fake_dns: None, connects: ConnectLog, web: Any
) -> None:
    """With no allowance at all, not even the local server is reached, by IP or by name."""
    from tasks.lib.errors import UnsafeURL
    from tasks.lib.fetching import Fetcher

    strict = SsrfContext(allow_private_urls=False).settings
    with Fetcher(strict) as fetcher:
        for url in ("http://loopback.hostile.test/", web.url("/anything"), "http://[::1]/"):
            with pytest.raises(UnsafeURL):
                fetcher.get(url)
    assert connects.attempts == [] and web.requests == []


# -- NUL bytes in fetched pages and feeds --------------------------------------------------------
#
# Everything else malformed, gigantic or mis-encoded about feeds and pages is covered by tests/tasks
# (size caps, slow servers, broken and non-feeds, wrong encodings, PDFs). Missing there: NUL
# characters. PostgreSQL text cannot hold them, so a page or feed entry carrying one used to fail the
# whole task run with psycopg2's "A string literal cannot contain NUL (0x00) characters" (fetch-content
# with a text/plain page, ingest-source with a feed whose entry title has one), and the same feed
# failed on every pull. Now the text keeps everything but the NUL, and a link with one is no link.

NUL_FEED = (
    b'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>Feed\x00</title>'
    b"<item><title>A\x00B</title><link>http://news.test/a\x00b</link><guid>id\x001</guid>"
    b"<description>sum\x00mary</description></item>"
    b"<item><title>fine</title><link>http://news.test/ok</link></item></channel></rss>"
)


def test_nul_characters_in_pages_never_reach_the_database() -> None:
    from tasks.lib.text import extract_html, extract_markdown, extract_plain

    body = "A sentence with a NUL\x00 inside it. " * 20
    extracted = [
        extract_plain("Title\x00 line\n\n" + body),
        extract_markdown("# Head\x00line\n\n" + body),
        extract_html(
            f"<html><head><title>T\x00</title></head><body><article><p>{body}</p></article></body></html>"
        ),
    ]
    assert not [s for e in extracted for s in strings_in(e) if "\x00" in s]
    assert all("A sentence with a NUL inside it." in e.text for e in extracted)
    assert [e.title for e in extracted[:2]] == ["Title line", "Headline"]


def test_nul_characters_in_feeds_never_reach_the_database() -> None:
    from tasks.lib.feeds import parse_feed

    parsed = parse_feed(NUL_FEED, url="http://news.test/feed.xml", content_type="application/rss+xml")
    assert not [s for s in strings_in(parsed) if "\x00" in s]
    odd, fine = parsed.entries
    assert (odd.title, odd.summary, odd.url) == ("AB", "summary", None)  # the link had a NUL: no link
    assert odd.external_id == "http://news.test/id1"  # the guid, resolved against the feed as ever
    assert fine.url == "http://news.test/ok" and parsed.title == "Feed"
