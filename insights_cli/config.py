"""Where the service is and which API key to use: `--url`/`--token` flags, then the INSIGHTS_URL/INSIGHTS_TOKEN
environment variables, then `~/.config/insights/config.toml` (`$XDG_CONFIG_HOME/insights/config.toml`), the
first that says wins, value by value."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from insights_cli.errors import EXIT_AUTH, EXIT_USAGE, CliError

DEFAULT_URL = "http://127.0.0.1:8000"  # where `make run` serves
API_PREFIX = "/_rest/v4"
ENV_NAMES = {"url": "INSIGHTS_URL", "token": "INSIGHTS_TOKEN"}
FILE_KEYS = frozenset(ENV_NAMES)


@dataclass(frozen=True)
class Settings:
    url: str  # the service's root, e.g. http://127.0.0.1:8000 (no trailing slash, no /_rest/v4)
    token: str


def config_path(env: Mapping[str, str]) -> Path:
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME") or Path.home()) / ".config")
    return Path(base) / "insights" / "config.toml"


def config_file_read(path: Path) -> dict[str, str]:
    """`url` and `token` from the TOML file; no file is no settings. A file that cannot be read, or holds a
    key this CLI does not know (a typo would otherwise be ignored in silence), is an error naming it."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as error:
        raise CliError(f"cannot read {path}: {error}", EXIT_USAGE) from None
    try:
        values = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise CliError(f"{path} is not valid TOML: {error}", EXIT_USAGE) from None
    unknown = sorted(set(values) - FILE_KEYS)
    if unknown:
        raise CliError(f"{path}: unknown key(s) {', '.join(unknown)}; it may hold url and token", EXIT_USAGE)
    for key, value in values.items():
        if not isinstance(value, str):
            raise CliError(f"{path}: {key} must be a string", EXIT_USAGE)
    return dict(values)


def settings_resolve(
    *, flags: Mapping[str, str | None], env: Mapping[str, str], file: Mapping[str, str] | None = None
) -> Settings:
    """Each value from the first of flags, environment, file (read only when flags and environment leave a
    value unset, so a broken file does not stand in the way of a complete command line)."""
    chosen: dict[str, str | None] = {}
    for key, env_name in ENV_NAMES.items():
        chosen[key] = flags.get(key) or env.get(env_name) or None
    if file is None and not all(chosen.values()):
        file = config_file_read(config_path(env))
    for key in ENV_NAMES:
        chosen[key] = chosen[key] or (file or {}).get(key) or None
    token = chosen["token"]
    if not token:
        raise CliError(
            f'no API key: set INSIGHTS_TOKEN, pass --token, or put token = "..." in {config_path(env)}',
            EXIT_AUTH,
        )
    return Settings(url=url_normalize(chosen["url"] or DEFAULT_URL), token=token.strip())


def url_normalize(url: str) -> str:
    """The service's root: http(s) with a host; a trailing slash or /_rest/v4 (the API's own prefix, a common
    paste) is dropped."""
    url = url.strip().rstrip("/")
    url = url.removesuffix(API_PREFIX)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - parsing the port is what finds a bad one (or an unclosed [::1)
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise CliError(
            f"the service URL must look like http://host:port, not {url!r} (INSIGHTS_URL or --url)",
            EXIT_USAGE,
        )
    return url


def settings_load(*, url: str | None, token: str | None) -> Settings:
    """The settings for this process: its flags, its environment, its user's config file."""
    return settings_resolve(flags={"url": url, "token": token}, env=os.environ)
