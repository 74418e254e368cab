"""Typed settings from the environment: a bad value stops the process with a message naming the variable."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from insights.env import broker_url, env_int, public_url


@pytest.mark.parametrize(("raw", "expected"), [(None, 1), ("", 1), ("0", 0), ("3", 3)])
def test_env_int_in_range(monkeypatch, raw, expected):
    if raw is None:
        monkeypatch.delenv("EXPORT_GZIP_LEVEL", raising=False)
    else:
        monkeypatch.setenv("EXPORT_GZIP_LEVEL", raw)
    assert env_int("EXPORT_GZIP_LEVEL", 1, minimum=0, maximum=3) == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("6", "EXPORT_GZIP_LEVEL must be at most 3, not 6"),
        ("-1", "at least 0"),
        ("fast", "must be an integer"),
    ],
)
def test_env_int_out_of_range_names_the_variable(monkeypatch, raw, message):
    monkeypatch.setenv("EXPORT_GZIP_LEVEL", raw)
    with pytest.raises(ImproperlyConfigured, match=message):
        env_int("EXPORT_GZIP_LEVEL", 1, minimum=0, maximum=3)


def test_an_empty_variable_means_its_default(monkeypatch):
    """`VAR=` in a sourced .env file sets the variable to the empty string: that is "not configured"."""
    from insights.env import env_bool, env_list, env_str

    for name in ("DATABASE_URL", "SECURE_SSL_REDIRECT", "DJANGO_ALLOWED_HOSTS"):
        monkeypatch.setenv(name, "")
    assert env_str("DATABASE_URL", "sqlite:///x") == "sqlite:///x"
    assert env_bool("SECURE_SSL_REDIRECT", True) is True
    assert env_list("DJANGO_ALLOWED_HOSTS", ["*"]) == ["*"]
    with pytest.raises(ImproperlyConfigured, match="DATABASE_URL must be set"):
        env_str("DATABASE_URL")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", ""),
        ("https://insights.example.com", "https://insights.example.com"),
        ("https://insights.example.com/", "https://insights.example.com"),
        ("http://10.0.0.5:8000/insights/", "http://10.0.0.5:8000/insights"),
    ],
)
def test_public_url_is_kept_without_its_trailing_slash(raw, expected):
    assert public_url(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "insights.example.com",
        "ftp://insights.example.com",
        "https://",
        "https://h/?a=1",
        "https://h/?",
        "https://h/#x",
        "http://[::1",
        "https://h:99999/",
        "https://h:abc/",
        "https://user:secret@h/",
    ],
)
def test_a_public_url_that_cannot_prefix_a_path_stops_start_up(raw):
    with pytest.raises(ImproperlyConfigured, match="INSIGHTS_PUBLIC_URL must be an http"):
        public_url(raw)


def test_the_embedded_broker_url_names_the_host_kombu_assumes():
    assert broker_url("filesystem://") == "filesystem://localhost//"
    assert broker_url("redis://redis:6379/0") == "redis://redis:6379/0"
