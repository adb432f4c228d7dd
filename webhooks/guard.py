"""The SSRF guard: which callback URLs the app may POST to, and the one address it connects to.

A callback must be https (http only with WEBHOOK_ALLOW_HTTP, for local tests), and every address its host
resolves to must be public: loopback, private, link-local, multicast, reserved, unspecified, shared (CGNAT)
and the cloud metadata addresses are refused unless the host is in WEBHOOK_ALLOWED_HOSTS. The check runs
at submit (a 422) and again before every attempt, and the sender connects to the address this check
returned, never to a second lookup: a name that resolves to a public address at check time and to
127.0.0.1 a moment later (DNS rebinding) cannot reach the inside.

Name resolution goes through a `Resolver` (host, port → addresses) so that tests can play a DNS change
without touching the network.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from shared.settings import Settings

Resolver = Callable[[str, int], list[str]]
"""Resolves a host name to its IP addresses (as text)."""

MAX_URL_LENGTH = 2000

METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(text)
    for text in (
        "169.254.169.254",  # Azure IMDS, AWS, GCP, ...
        "168.63.129.16",  # Azure WireServer (a public address, so the is_global test alone would pass it)
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "100.100.100.200",  # Alibaba Cloud
    )
)


class CallbackRefused(Exception):
    """The callback URL may not be called; the message says why (never echoes the URL)."""


def resolve_host(host: str, port: int) -> list[str]:
    """The host's addresses by the system resolver, in its order, without duplicates."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise CallbackRefused("the callback host does not resolve") from exc
    addresses: list[str] = []
    for info in infos:
        address = str(info[4][0]).split("%")[0]  # drop an IPv6 zone index
        if address not in addresses:
            addresses.append(address)
    return addresses


@dataclass(frozen=True)
class Destination:
    """A checked callback: where to connect (`address`) and what to say the host is (`host`, for Host and SNI)."""

    scheme: str
    host: str  # lower case, IPv6 without brackets
    port: int
    target: str  # path and query, as sent in the request line
    address: str  # the checked IP the sender connects to

    @property
    def breaker_key(self) -> str:
        """Which circuit breaker guards this destination: one per host and port (one receiving service)."""
        return f"{self.host}:{self.port}"

    @property
    def host_header(self) -> str:
        """The Host header: the name (with the port unless it is the scheme's default)."""
        name = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return name if self.port == default else f"{name}:{self.port}"


def address_refusal(text: str) -> str | None:
    """Why an address may not be called, or None if it is a public unicast address."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return "not an IP address"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            address = address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
        else:
            # 6to4 (2002::/16) and Teredo (2001::/32) carry an IPv4 address a relay may deliver to: the
            # embedded one is checked as well (2002:7f00:1:: is 127.0.0.1 behind a relay).
            embedded = [address.sixtofour, *(address.teredo or ())]
            for inner in filter(None, embedded):
                refusal = address_refusal(str(inner))
                if refusal is not None:
                    return f"{refusal} (embedded in an IPv6 address)"
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    for test, name in (
        (address.is_loopback, "a loopback address"),
        (address.is_link_local, "a link-local address"),
        (address.is_multicast, "a multicast address"),
        (address.is_unspecified, "an unspecified address"),
        (address.is_reserved, "a reserved address"),
        (address.is_private, "a private address"),
    ):
        if test:
            return name
    if not address.is_global:
        return "an address that is not public"  # shared (100.64/10), documentation, benchmarking ranges, ...
    return None


def parse_url(url: str, settings: Settings) -> tuple[str, str, int, str]:
    """(scheme, host, port, target) of a callback URL; CallbackRefused if its form is not acceptable."""
    if len(url) > MAX_URL_LENGTH:
        raise CallbackRefused(f"must be at most {MAX_URL_LENGTH} characters")
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
        raise CallbackRefused("must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise CallbackRefused("is not a valid URL") from None
    scheme = parts.scheme.lower()
    allowed = ("https", "http") if settings.webhook_allow_http else ("https",)
    if scheme not in allowed:
        raise CallbackRefused("must be an https URL" if scheme != "https" else "is not a valid URL")
    host = (parts.hostname or "").lower()
    if not host:
        raise CallbackRefused("must name a host")
    if parts.fragment:
        raise CallbackRefused("must not have a fragment")
    if port == 0:
        raise CallbackRefused("must not name port 0")  # no service listens there; `or` below would make it 443
    target = parts.path or "/"
    if parts.query:
        target += f"?{parts.query}"
    return scheme, host, port or (443 if scheme == "https" else 80), target


def check_destination(url: str, settings: Settings, resolve: Resolver = resolve_host) -> Destination:
    """The destination to POST to: the URL's form checked, its host resolved once and every address checked.

    An allowlisted host (WEBHOOK_ALLOWED_HOSTS) skips the address check only: the sender still connects
    to the address resolved here. A name with any refused address is refused as a whole (an attacker
    would otherwise add a public address beside 127.0.0.1 and hope for the second).
    """
    scheme, host, port, target = parse_url(url, settings)
    try:
        ipaddress.ip_address(host)
        addresses = [host]  # an IP literal needs no lookup
    except ValueError:
        addresses = resolve(host, port)
    if not addresses:
        raise CallbackRefused("the callback host does not resolve")
    if host not in settings.webhook_allowlist:
        for address in addresses:
            refusal = address_refusal(address)
            if refusal is not None:
                raise CallbackRefused(f"the callback host resolves to {refusal}")
    return Destination(scheme=scheme, host=host, port=port, target=target, address=addresses[0])


def redacted(url: str) -> str:
    """The URL without its userinfo, query and fragment: what logs and dead-letter views may show."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<invalid url>"
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}{port}{parts.path}"
