"""SSRF guard: fetches only reach public addresses unless the settings allow more.

Two checks, both on every hop of a redirect chain:

* :func:`check_url` before a request: scheme, host, and *every* address the host resolves to.
* :class:`GuardedBackend` when the socket is opened: the host is resolved again, checked again, and the
  connection goes to a checked address, so a DNS answer that changes between the two (rebinding) cannot
  slip a private address through.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpcore

from tasks.lib.errors import FetchFailed, RetryLater, UnsafeURL
from transport.redact import redact_url

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ALLOWED_SCHEMES = frozenset({"http", "https"})


#: IPv6 prefixes whose last 32 bits are an IPv4 address a gateway connects to: NAT64's well-known
#: prefix (RFC 6052) and SIIT's IPv4-translated addresses (RFC 2765).
_IPV4_IN_LOW_BITS = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("::ffff:0:0:0/96"))


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    embedded = address.ipv4_mapped or address.sixtofour
    if embedded is None and any(address in net for net in _IPV4_IN_LOW_BITS):
        embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return embedded


def is_public(address: IPAddress) -> bool:
    """Globally routable unicast: not loopback, private, link-local, shared, reserved or multicast.

    An IPv6 address that carries an IPv4 one (mapped, 6to4, NAT64, translated) is judged by that.
    ``is_global`` alone is not enough on Python 3.11: it calls IPv4-compatible ``::127.0.0.1``,
    the rest of the reserved ``::/8`` and the deprecated site-local ``fec0::/10`` global."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return is_public(embedded)
        if address.teredo is not None or address.is_reserved or address.is_site_local:
            return False
    return address.is_global and not address.is_multicast


@dataclass(frozen=True)
class AddressPolicy:
    #: Everything is allowed (``ZEKE_ALLOW_PRIVATE_URLS``).
    allow_private: bool = False
    #: Non-public networks allowed anyway (``ZEKE_ALLOWED_NETWORKS``).
    allowed_networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_settings(cls, settings: Any) -> AddressPolicy:
        return cls(
            allow_private=bool(settings.allow_private_urls),
            allowed_networks=tuple(ipaddress.ip_network(n, strict=False) for n in settings.allowed_networks),
        )

    def permits(self, address: IPAddress) -> bool:
        if self.allow_private or is_public(address):
            return True
        return any(address.version == net.version and address in net for net in self.allowed_networks)

    def check_addresses(self, host: str, addresses: Iterable[str]) -> list[str]:
        checked: list[str] = []
        for raw in addresses:
            address = ipaddress.ip_address(raw.split("%", 1)[0])
            if not self.permits(address):
                raise UnsafeURL(f"refusing to fetch {host!r}: it resolves to non-public address {address}")
            if raw not in checked:
                checked.append(raw)
        if not checked:
            raise FetchFailed(f"host {host!r} has no addresses")
        return checked


def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to, in resolver order."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        if exc.errno == socket.EAI_AGAIN:
            raise RetryLater(30, f"temporary DNS failure for {host!r}") from exc
        raise FetchFailed(f"cannot resolve host {host!r}: {exc.strerror}") from exc
    except UnicodeError as exc:
        raise FetchFailed(f"bad host name {host!r}") from exc
    return [str(info[4][0]) for info in infos]


def check_url(url: str, policy: AddressPolicy) -> list[str]:
    """Raise :class:`UnsafeURL` unless ``url`` is http(s) and all of its host's addresses are permitted.

    Returns the addresses.
    """
    parts = urlsplit(url)
    if parts.scheme.lower() not in ALLOWED_SCHEMES:
        raise UnsafeURL(f"refusing to fetch {redact_url(url)!r}: only http and https are allowed")
    host = parts.hostname
    if not host:
        raise UnsafeURL(f"refusing to fetch {redact_url(url)!r}: no host")
    try:
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    except ValueError as exc:
        raise UnsafeURL(f"refusing to fetch {redact_url(url)!r}: bad port") from exc
    return policy.check_addresses(host, resolve(host, port))


class GuardedBackend(httpcore.SyncBackend):
    """httpcore network backend that resolves, checks and pins the address of every connection."""

    def __init__(self, policy: AddressPolicy) -> None:
        self.policy = policy

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = self.policy.check_addresses(host, resolve(host, port))
        last: Exception | None = None
        for address in addresses:
            try:
                return super().connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    def connect_unix_socket(self, *args: Any, **kwargs: Any) -> httpcore.NetworkStream:
        raise UnsafeURL("refusing to connect to a Unix socket")
