"""Where events may be sent: an http(s) URL (https only in production) whose host resolves to public addresses
only. Loopback, private, link-local, shared (CGNAT), multicast, reserved and cloud-metadata addresses are refused
unless WEBHOOK_ALLOW_PRIVATE=1, so a customer cannot make the service POST into its own network (SSRF).

The URL is checked when it is set (a host that does not resolve yet is taken: it points nowhere, so nowhere inside
the network) and again at every delivery, on the addresses its host resolves to then; the
delivery connects to the address it checked (webhooks.transport), so a host that resolves to a public address for
the check and to a private one a moment later (DNS rebinding) reaches nothing it should not.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

from webhooks.errors import UrlRefused

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Cloud metadata and host services that sit on addresses not covered by the non-public ranges below:
# Azure's wire server (public space), AWS's IPv6 metadata, Alibaba's, Oracle's, and the classic 169.254.169.254.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(text)
    for text in ("168.63.129.16", "169.254.169.254", "fd00:ec2::254", "100.100.100.200", "192.0.0.192")
)
NAT64 = ipaddress.ip_network("64:ff9b::/96")
URL_MAX_LENGTH = 2000


@dataclass(frozen=True)
class Target:
    """A checked URL, taken apart for a connection to an address of our choosing."""

    url: str
    scheme: str
    host: str  # ASCII (IDNA) host name, or an IP literal without brackets
    port: int
    path: str  # path and query, at least "/"
    host_header: str


def target_parse(url: str, *, https_only: bool) -> Target:
    """The URL's parts; UrlRefused (never retryable) when it is not one events may be sent to."""
    if len(url) > URL_MAX_LENGTH:
        raise UrlRefused(f"The URL is longer than {URL_MAX_LENGTH} characters.")
    if any(ord(char) <= 0x20 or ord(char) == 0x7F for char in url):
        raise UrlRefused("The URL must not contain spaces or control characters.")
    try:
        parts = urlsplit(url)  # a bracketed host that is no IPv6 address ("https://[::1/") is a ValueError
    except ValueError:
        raise UrlRefused("The URL's host or port is not valid.") from None
    scheme = parts.scheme.lower()
    if https_only and scheme != "https":
        raise UrlRefused("Enter an https URL: plain http is refused in production.")
    if scheme not in ("http", "https"):
        raise UrlRefused("Enter an http or https URL.")
    if parts.username is not None or parts.password is not None:
        raise UrlRefused("The URL must not carry a user name or password.")
    try:
        port = parts.port
        host = (parts.hostname or "").encode("idna").decode("ascii")
    except (ValueError, UnicodeError):
        raise UrlRefused("The URL's host or port is not valid.") from None
    if not host:
        raise UrlRefused("The URL has no host.")
    shown = f"[{host}]" if ":" in host else host
    return Target(
        url=url,
        scheme=scheme,
        host=host,
        port=port or (443 if scheme == "https" else 80),
        path=(parts.path or "/") + (f"?{parts.query}" if parts.query else ""),
        host_header=f"{shown}:{port}" if port else shown,
    )


def address_public(address: IPAddress) -> bool:
    """Whether events may go to `address`: a global unicast address that is no cloud metadata service, also
    when it is an IPv4 address wrapped in IPv6 (mapped, NAT64, 6to4, Teredo)."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded:
            return all(address_public(inner) for inner in embedded)
    if address in METADATA_ADDRESSES or address.is_multicast or address.is_reserved:
        return False
    return address.is_global


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    if address.ipv4_mapped is not None:
        return [address.ipv4_mapped]
    if address in NAT64:
        return [ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)]
    if address.sixtofour is not None:
        return [address.sixtofour]
    if address.teredo is not None:
        return list(address.teredo)
    return []


def target_addresses(target: Target, *, allow_private: bool) -> list[IPAddress]:
    """The addresses the target's host resolves to now, each one allowed. UrlRefused: retryable when the host
    does not resolve; not when any of its addresses is refused (one bad address is enough: a resolver may
    answer in any order)."""
    try:
        found = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise UrlRefused(f"{target.host} does not resolve.", retryable=True) from None
    addresses: list[IPAddress] = []
    for *_, sockaddr in found:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not allow_private:
        for address in addresses:
            if not address_public(address):
                raise UrlRefused(
                    f"{target.host} resolves to {address}, which is not a public address (loopback, private, "
                    "link-local and cloud metadata addresses are refused)."
                )
    if not addresses:
        raise UrlRefused(f"{target.host} does not resolve.", retryable=True)
    return addresses


def url_check(url: str) -> tuple[Target, list[IPAddress]]:
    """The URL and its addresses under this deployment's settings (INSIGHTS_PRODUCTION: https only;
    WEBHOOK_ALLOW_PRIVATE: any address)."""
    target = target_parse(url, https_only=settings.PRODUCTION)
    return target, target_addresses(target, allow_private=settings.WEBHOOK_ALLOW_PRIVATE)


def url_settable(url: str) -> None:
    """Whether `url` may be set as a webhook now: url_check's refusals, except a host that does not resolve (yet,
    or not from here). Nothing is sent until a delivery resolves it to allowed addresses; until then each
    delivery is retried (webhooks.delivery)."""
    try:
        url_check(url)
    except UrlRefused as refused:
        if not refused.retryable:
            raise
