"""Where events may be sent (webhooks.addresses): the URL's form, and the addresses its host resolves to."""

from __future__ import annotations

import ipaddress

import pytest

from webhooks.addresses import address_public, target_addresses, target_parse, url_check
from webhooks.errors import UrlRefused

REFUSED_ADDRESSES = [
    "127.0.0.1",  # loopback
    "127.8.9.10",
    "::1",
    "10.1.2.3",  # private
    "172.16.0.1",
    "192.168.1.1",
    "fc00::1",
    "169.254.169.254",  # link-local, and the classic metadata service
    "169.254.1.1",
    "fe80::1",
    "fd00:ec2::254",  # AWS metadata over IPv6
    "100.100.100.200",  # Alibaba metadata (shared address space)
    "100.64.0.1",  # carrier-grade NAT
    "168.63.129.16",  # Azure's wire server: a public address that is a host service
    "0.0.0.0",  # noqa: S104 ("this host": refused, not bound)
    "::",
    "224.0.0.1",  # multicast
    "ff02::1",
    "240.0.0.1",  # reserved
    "255.255.255.255",
    "::ffff:127.0.0.1",  # IPv4 in IPv6: mapped, NAT64, 6to4
    "::ffff:169.254.169.254",
    "64:ff9b::a00:1",
    "2002:7f00:1::1",
    "198.18.0.1",  # benchmarking
]
PUBLIC_ADDRESSES = [
    "93.184.216.34",
    "1.1.1.1",
    "2606:4700:4700::1111",
    "::ffff:93.184.216.34",
    "64:ff9b::5db8:d822",
]


@pytest.mark.parametrize("text", REFUSED_ADDRESSES)
def test_addresses_inside_a_network_or_a_host_are_refused(text):
    assert not address_public(ipaddress.ip_address(text))


@pytest.mark.parametrize("text", PUBLIC_ADDRESSES)
def test_public_addresses_are_allowed(text):
    assert address_public(ipaddress.ip_address(text))


def test_a_url_is_taken_apart_for_a_connection_to_an_address_of_our_choosing():
    target = target_parse("https://Hooks.Example.com:8443/in/insights?x=1#frag", https_only=True)
    assert (target.scheme, target.host, target.port) == ("https", "hooks.example.com", 8443)
    assert (target.path, target.host_header) == ("/in/insights?x=1", "hooks.example.com:8443")
    plain = target_parse("http://[2606:4700::1]", https_only=False)
    assert (plain.host, plain.port, plain.path, plain.host_header) == (
        "2606:4700::1",
        80,
        "/",
        "[2606:4700::1]",
    )
    assert target_parse("https://bücher.example/", https_only=True).host == "xn--bcher-kva.example"


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/", "Enter an http or https URL."),
        ("example.com/hook", "Enter an http or https URL."),
        ("javascript:alert(1)", "Enter an http or https URL."),
        ("https:///path", "The URL has no host."),
        ("https://user:pw@example.com/", "The URL must not carry a user name or password."),
        ("https://example.com:99999/", "The URL's host or port is not valid."),
        ("https://[::1/hook", "The URL's host or port is not valid."),  # urlsplit's own ValueError
        ("https://[example]/hook", "The URL's host or port is not valid."),
        ("https://example.com/a b", "The URL must not contain spaces or control characters."),
        ("https://example.com/\r\nX-Injected: 1", "The URL must not contain spaces or control characters."),
        ("https://example.com/" + "a" * 2000, "The URL is longer than 2000 characters."),
    ],
)
def test_urls_that_are_not_http_endpoints_are_refused(url, reason):
    with pytest.raises(UrlRefused) as refused:
        target_parse(url, https_only=False)
    assert refused.value.reason == reason and not refused.value.retryable
    assert refused.value.body == {"code": 400, "message": {"url": [reason]}}


def test_production_takes_https_only():
    with pytest.raises(UrlRefused, match="https"):
        target_parse("http://example.com/", https_only=True)


@pytest.mark.parametrize(
    "host",
    ["localhost", "127.0.0.1", "[::1]", "169.254.169.254", "10.0.0.1", "0.0.0.0"],  # noqa: S104 (refused)
)
def test_a_host_resolving_inside_the_network_is_refused_unless_allowed(host):
    target = target_parse(f"http://{host}:8080/hook", https_only=False)
    with pytest.raises(UrlRefused, match="not a public address") as refused:
        target_addresses(target, allow_private=False)
    assert not refused.value.retryable
    assert target_addresses(target, allow_private=True)  # WEBHOOK_ALLOW_PRIVATE=1


def test_a_host_that_does_not_resolve_is_refused_as_worth_a_retry():
    with pytest.raises(UrlRefused, match="does not resolve") as refused:
        target_addresses(target_parse("https://nonexistent.invalid/", https_only=True), allow_private=False)
    assert refused.value.retryable


def test_url_check_follows_the_settings(settings):
    settings.PRODUCTION, settings.WEBHOOK_ALLOW_PRIVATE = False, True
    target, addresses = url_check("http://127.0.0.1:9/hook")
    assert addresses == [ipaddress.ip_address("127.0.0.1")] and target.port == 9
    settings.WEBHOOK_ALLOW_PRIVATE = False
    with pytest.raises(UrlRefused, match="not a public address"):
        url_check("http://127.0.0.1:9/hook")
    settings.PRODUCTION, settings.WEBHOOK_ALLOW_PRIVATE = True, True
    with pytest.raises(UrlRefused, match="https"):
        url_check("http://127.0.0.1:9/hook")
