from __future__ import annotations

import ipaddress
import socket

import pytest

from tasks.lib.errors import FetchFailed, RetryLater, UnsafeURL, retry_after_seconds
from tasks.lib.fetching import Fetcher
from tasks.lib.netguard import AddressPolicy, check_url, is_public
from tasks.lib.urls import canonicalize_url, is_tracking_param
from tasks.settings import TaskSettings
from tests.tasks.helpers import WebServer


@pytest.mark.parametrize(
    ("url", "canonical"),
    [
        ("HTTPS://Example.COM:443/a?b=2&a=1#frag", "https://example.com/a?a=1&b=2"),
        ("http://example.com", "http://example.com/"),
        ("http://example.com:8080/x?utm_source=a&utm_Medium=b&id=7", "http://example.com:8080/x?id=7"),
        ("https://ex.com/p?fbclid=1&gclid=2&msclkid=3&mc_eid=4&keep=", "https://ex.com/p?keep="),
        ("https://bücher.example/straße", "https://xn--bcher-kva.example/straße"),
        ("https://[2001:DB8::1]:443/v", "https://[2001:db8::1]/v"),
    ],
)
def test_canonicalize_url(url: str, canonical: str) -> None:
    assert canonicalize_url(url) == canonical


def test_canonicalize_relative_and_bad_urls() -> None:
    assert canonicalize_url("../b?utm_campaign=x", base="https://h.test/a/c") == "https://h.test/b"
    for bad in ("mailto:someone@h.test", "javascript:alert(1)", "ftp://h.test/x", "/relative", ""):
        with pytest.raises(ValueError):
            canonicalize_url(bad)
    assert is_tracking_param("UTM_SOURCE") and not is_tracking_param("page")


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0",
        "224.0.0.1", "::1", "fe80::1", "fc00::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "2002:7f00:1::",
        # IPv4-compatible, IPv4-translated, NAT64 (well-known and local-use) and site-local forms
        "::127.0.0.1", "::ffff:0:7f00:1", "64:ff9b::a00:1", "64:ff9b::7f00:1", "64:ff9b:1::a00:1", "fec0::1",
    ],
)  # fmt: skip
def test_non_public_addresses(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address))
    assert not AddressPolicy().permits(ipaddress.ip_address(address))
    assert AddressPolicy(allow_private=True).permits(ipaddress.ip_address(address))


def test_public_addresses_and_allowed_networks() -> None:
    assert is_public(ipaddress.ip_address("93.184.216.34")) and is_public(
        ipaddress.ip_address("2606:4700::1")
    )
    assert is_public(ipaddress.ip_address("64:ff9b::5db8:d822"))  # NAT64 of 93.184.216.34
    policy = AddressPolicy(allowed_networks=(ipaddress.ip_network("10.20.0.0/16"),))
    assert policy.permits(ipaddress.ip_address("10.20.3.4")) and not policy.permits(
        ipaddress.ip_address("10.21.0.1")
    )


def test_check_url_resolves_names_and_checks_every_address(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_getaddrinfo(host: str, port: int, *args: object, **kw: object) -> list:
        table = {
            "mixed.test": ["93.184.216.34", "10.0.0.5"],
            "public.test": ["93.184.216.34", "2606:4700::1"],
        }
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in table[host]]

    monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
    assert check_url("https://public.test/x", AddressPolicy()) == ["93.184.216.34", "2606:4700::1"]
    with pytest.raises(UnsafeURL, match="10.0.0.5"):
        check_url("https://mixed.test/x", AddressPolicy())
    with pytest.raises(FetchFailed, match="cannot resolve"):
        check_url("https://nowhere.test/x", AddressPolicy())


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/", "http://localhost:8080/admin", "http://[::1]/", "http://169.254.169.254/latest/meta-data",
        "http://2130706433/", "http://0x7f.1/", "file:///etc/passwd", "gopher://127.0.0.1/", "http:///nohost",
    ],
)  # fmt: skip
def test_check_url_refuses(url: str) -> None:
    with pytest.raises(UnsafeURL):
        check_url(url, AddressPolicy())


def _fetcher(**changes: object) -> Fetcher:
    settings = TaskSettings(**{"fetch_timeout": 2.0, "default_retry_after": 9.0, **changes})
    return Fetcher(settings)


def test_redirects_are_rechecked_on_every_hop(web: WebServer) -> None:
    web.fixture("/final.html", "pages/latency.html")
    web.route("/hop1", b"", status=302, headers={"Location": "/hop2"})
    web.route("/hop2", b"", status=307, headers={"Location": "/final.html"})
    web.route(
        "/to-metadata", b"", status=302, headers={"Location": "http://169.254.169.254/latest/meta-data/"}
    )
    web.route(
        "/to-other-loopback", b"", status=301, headers={"Location": f"http://127.0.0.2:{web.port}/final.html"}
    )
    web.route("/loop", b"", status=302, headers={"Location": "/loop"})
    # only 127.0.0.1 is allowed: the server itself is reachable, nothing else private is
    only_server = {"allowed_networks": ("127.0.0.1/32",)}
    with _fetcher(**only_server) as fetcher:
        result = fetcher.get(web.url("/hop1"))
        assert result.url == web.url("/final.html") and result.redirects == (
            web.url("/hop2"),
            web.url("/final.html"),
        )
        with pytest.raises(UnsafeURL, match="169.254.169.254"):
            fetcher.get(web.url("/to-metadata"))
        with pytest.raises(UnsafeURL, match="127.0.0.2"):
            fetcher.get(web.url("/to-other-loopback"))
        with pytest.raises(FetchFailed, match="redirects"):
            fetcher.get(web.url("/loop"))
    assert web.hits("/final.html") and len(web.hits("/loop")) == 6


def test_connection_time_check_catches_dns_rebinding(web: WebServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """The name resolves to a public address for the pre-check, then to loopback when connecting."""
    web.fixture("/page.html", "pages/latency.html")
    real = socket.getaddrinfo
    answers = iter(["93.184.216.34", "127.0.0.1"])

    def rebinding(host: str, port: int, *args: object, **kw: object) -> list:
        if host != "rebind.test":
            return real(host, port, *args, **kw)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), port))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    with _fetcher() as fetcher, pytest.raises(UnsafeURL, match="127.0.0.1"):
        fetcher.get(f"http://rebind.test:{web.port}/page.html")
    assert web.requests == []


def test_status_codes_map_to_retryable_or_permanent(web: WebServer) -> None:
    web.route("/429", "slow down", status=429, headers={"Retry-After": "17"})
    web.route("/503", "maintenance", status=503)
    web.route("/500", "boom", status=500)
    web.route("/403", "no", status=403)
    web.route("/304", b"", status=304, content_type=None)
    with _fetcher(allow_private_urls=True) as fetcher:
        with pytest.raises(RetryLater) as rate_limited:
            fetcher.get(web.url("/429"))
        assert rate_limited.value.seconds == 17
        for path in ("/503", "/500"):
            with pytest.raises(RetryLater) as server_error:
                fetcher.get(web.url(path))
            assert server_error.value.seconds == 9.0
        with pytest.raises(FetchFailed) as forbidden:
            fetcher.get(web.url("/403"))
        assert forbidden.value.status == 403
        assert fetcher.get(web.url("/304"), headers={"If-None-Match": '"x"'}).not_modified


def test_unreachable_server_is_retryable() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    with _fetcher(allow_private_urls=True) as fetcher, pytest.raises(RetryLater, match="cannot reach"):
        fetcher.get(f"http://127.0.0.1:{port}/")


def test_text_decoding_follows_header_then_meta(web: WebServer) -> None:
    web.route("/latin", "<p>café</p>".encode("latin-1"), content_type="text/html; charset=iso-8859-1")
    web.route(
        "/meta", '<meta charset="windows-1252"><p>caf\xe9</p>'.encode("cp1252"), content_type="text/html"
    )
    with _fetcher(allow_private_urls=True) as fetcher:
        assert "café" in fetcher.get(web.url("/latin")).text()
        assert "café" in fetcher.get(web.url("/meta")).text()


def test_retry_after_parsing() -> None:
    assert retry_after_seconds("120", 5) == 120
    assert retry_after_seconds(None, 5) == 5 and retry_after_seconds("soon", 5) == 5
    assert retry_after_seconds("-3", 5) == 0 and retry_after_seconds("999999", 5) == 6 * 3600
    assert 0 <= retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", 5) <= 1  # in the past
