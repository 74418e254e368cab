"""Where the CLI finds the service and its key: flags, then environment, then config.toml, value by value."""

from __future__ import annotations

from pathlib import Path

import pytest

from insights_cli.config import DEFAULT_URL, config_path, settings_resolve, url_normalize
from insights_cli.errors import EXIT_AUTH, EXIT_USAGE, CliError

NO_FLAGS: dict[str, str | None] = {"url": None, "token": None}


def _config(tmp_path: Path, text: str) -> dict[str, str]:
    """An environment whose config file (under XDG_CONFIG_HOME) holds `text`."""
    path = config_path({"XDG_CONFIG_HOME": str(tmp_path)})
    path.parent.mkdir(parents=True)
    path.write_text(text)
    return {"XDG_CONFIG_HOME": str(tmp_path)}


def test_flags_beat_environment_beat_the_file(tmp_path: Path) -> None:
    env = _config(tmp_path, 'url = "http://file:1"\ntoken = "file-key"\n')
    assert settings_resolve(flags=NO_FLAGS, env=env).url == "http://file:1"
    assert settings_resolve(flags=NO_FLAGS, env=env).token == "file-key"
    env |= {"INSIGHTS_URL": "http://env:2", "INSIGHTS_TOKEN": "env-key"}
    assert settings_resolve(flags=NO_FLAGS, env=env) == settings_resolve(
        flags={"url": "http://env:2", "token": "env-key"}, env={}
    )
    chosen = settings_resolve(flags={"url": "http://flag:3", "token": "flag-key"}, env=env)
    assert (chosen.url, chosen.token) == ("http://flag:3", "flag-key")


def test_each_value_comes_from_its_own_first_source(tmp_path: Path) -> None:
    env = _config(tmp_path, 'url = "http://file:1"\ntoken = "file-key"\n') | {"INSIGHTS_URL": "http://env:2"}
    chosen = settings_resolve(flags={"url": None, "token": None}, env=env)
    assert (chosen.url, chosen.token) == ("http://env:2", "file-key")
    chosen = settings_resolve(flags={"url": None, "token": "flag-key"}, env=env)
    assert (chosen.url, chosen.token) == ("http://env:2", "flag-key")


def test_the_file_is_found_under_home_without_xdg(tmp_path: Path) -> None:
    assert config_path({"HOME": str(tmp_path)}) == tmp_path / ".config" / "insights" / "config.toml"


def test_the_url_defaults_to_make_runs(tmp_path: Path) -> None:
    chosen = settings_resolve(flags=NO_FLAGS, env={"XDG_CONFIG_HOME": str(tmp_path), "INSIGHTS_TOKEN": "k"})
    assert chosen.url == DEFAULT_URL


def test_a_broken_file_is_not_read_when_flags_and_environment_say_everything(tmp_path: Path) -> None:
    env = _config(tmp_path, "this is [not toml") | {"INSIGHTS_URL": "http://env:2", "INSIGHTS_TOKEN": "k"}
    assert settings_resolve(flags=NO_FLAGS, env=env).token == "k"
    with pytest.raises(CliError) as raised:
        settings_resolve(flags=NO_FLAGS, env={**env, "INSIGHTS_TOKEN": ""})
    assert raised.value.exit_code == EXIT_USAGE
    assert "config.toml is not valid TOML" in raised.value.message


@pytest.mark.parametrize(
    ("text", "problem"),
    [('tokne = "k"\n', "unknown key(s) tokne"), ("token = 5\n", "token must be a string")],
)
def test_a_file_with_a_mistake_says_which(tmp_path: Path, text: str, problem: str) -> None:
    with pytest.raises(CliError) as raised:
        settings_resolve(flags=NO_FLAGS, env=_config(tmp_path, text))
    assert raised.value.exit_code == EXIT_USAGE and problem in raised.value.message


def test_no_key_anywhere_is_an_auth_error_naming_the_ways_to_give_one(tmp_path: Path) -> None:
    with pytest.raises(CliError) as raised:
        settings_resolve(flags=NO_FLAGS, env={"XDG_CONFIG_HOME": str(tmp_path)})
    assert raised.value.exit_code == EXIT_AUTH
    assert "INSIGHTS_TOKEN" in raised.value.message and "--token" in raised.value.message
    assert str(tmp_path / "insights" / "config.toml") in raised.value.message


@pytest.mark.parametrize(
    ("given", "root"),
    [
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("http://127.0.0.1:8000/", "http://127.0.0.1:8000"),
        ("https://insights.example.com/_rest/v4/", "https://insights.example.com"),
        (" http://h:1 ", "http://h:1"),
    ],
)
def test_the_url_is_the_services_root(given: str, root: str) -> None:
    assert url_normalize(given) == root


@pytest.mark.parametrize(
    "given", ["127.0.0.1:8000", "ftp://h/", "http://", "", "http://[::1", "http://h:port"]
)
def test_a_url_that_is_not_http_is_a_usage_error(given: str) -> None:
    with pytest.raises(CliError) as raised:
        url_normalize(given)
    assert raised.value.exit_code == EXIT_USAGE and "INSIGHTS_URL" in raised.value.message
