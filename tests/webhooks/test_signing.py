"""The Insights-Signature header (webhooks.signing), checked against the scheme computed here with hmac alone."""

from __future__ import annotations

import hashlib
import hmac

from webhooks.signing import SECRET_PREFIX, secret_new, signature_header, signature_verify

SECRET = "whsec_test-secret"
BODY = b'{"id":"evt_1","type":"query.completed","sequence":3}'


def test_the_header_is_t_and_v1_of_the_timestamp_dot_body():
    header = signature_header(secret=SECRET, body=BODY, timestamp=1_700_000_000)
    expected = hmac.new(SECRET.encode(), b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"


def test_a_receiver_accepts_a_fresh_signature_and_refuses_anything_else():
    header = signature_header(secret=SECRET, body=BODY, timestamp=1000)
    assert signature_verify(secret=SECRET, body=BODY, header=header, now=1000 + 299)
    assert not signature_verify(secret=SECRET, body=BODY, header=header, now=1000 + 301)  # stale: a replay
    assert not signature_verify(secret=SECRET, body=BODY, header=header, now=1000 - 301)  # from the future
    assert not signature_verify(secret="whsec_other", body=BODY, header=header, now=1000)
    assert not signature_verify(secret=SECRET, body=BODY + b" ", header=header, now=1000)
    forged_time = header.replace("t=1000", "t=1001")
    assert not signature_verify(secret=SECRET, body=BODY, header=forged_time, now=1001)
    assert not signature_verify(secret=SECRET, body=BODY, header="v1=" + header.split("v1=")[1], now=1000)
    assert not signature_verify(secret=SECRET, body=BODY, header="garbage", now=1000)


def test_a_header_with_several_v1_values_verifies_if_one_matches():
    """What a receiver should accept while a secret is rotated (a sender may sign with both)."""
    good = signature_header(secret=SECRET, body=BODY, timestamp=1000).split("v1=")[1]
    assert signature_verify(secret=SECRET, body=BODY, header=f"t=1000,v1={'0' * 64},v1={good}", now=1000)


def test_secrets_are_new_every_time_and_say_what_they_are():
    first, second = secret_new(), secret_new()
    assert first != second
    assert first.startswith(SECRET_PREFIX) and len(first) >= len(SECRET_PREFIX) + 40
