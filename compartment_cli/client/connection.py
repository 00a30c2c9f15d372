"""Where the CLI sends its requests, and with which credentials (CONTRACT.md section 3).

Each setting comes from the first source that has it:

1. flags: ``--api-url``; ``--remote <name>`` picks a remote of the config file,
   whose ``apiUrl``, ``sessionToken`` and organization then count as flags;
2. environment: ``COMPARTMENT_API_URL``, ``COMPARTMENT_TOKEN``, ``COMPARTMENT_ORG``;
3. the config file's ``currentRemote``;
4. ``DEFAULT_API_URL``, no token, no organization.

A remote's session token and organization are used only when the requests go
to that remote's own ``apiUrl``: ``--api-url`` or ``COMPARTMENT_API_URL``
pointing elsewhere does not receive the file's login (use
``COMPARTMENT_TOKEN`` there). The config file is read only when flags and
environment leave something open.

The token is wrapped in ``Token``, whose ``repr`` and ``str`` never show it,
and no message of this module contains it.
"""

from __future__ import annotations

import hmac
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from compartment_cli.errors import CompartmentError, NotAuthorized, Unavailable, UsageError
from compartment_cli.models.config import ConfigFile, ConfigFileError, config_path, read_config

DEFAULT_API_URL: Final = "http://127.0.0.1:8787"
API_URL_ENV: Final = "COMPARTMENT_API_URL"
TOKEN_ENV: Final = "COMPARTMENT_TOKEN"  # noqa: S105 (a variable name, not a secret)
ORG_ENV: Final = "COMPARTMENT_ORG"
# The codes of an Unavailable that means the control plane could not be reached.
UNREACHABLE_CODES: Final = frozenset({"network_error", "event_stream_lost"})

# Visible ASCII: anything else would be refused by the HTTP library, whose
# error message would then quote the header value, token included.
_HEADER_VALUE_RE: Final = re.compile(r"[\x21-\x7e]+")


class Token:
    """A secret that is shown as ``Token(***)`` everywhere; ``reveal()`` returns it."""

    __slots__ = ("_secret",)

    def __init__(self, secret: str) -> None:
        self._secret = secret

    def reveal(self) -> str:
        return self._secret

    def __repr__(self) -> str:
        return "Token(***)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Token):
            return NotImplemented
        return hmac.compare_digest(self._secret.encode(), other._secret.encode())

    def __hash__(self) -> int:
        return hash(self._secret)


@dataclass(frozen=True)
class Connection:
    """The API to talk to and how to identify to it."""

    api_url: str
    """Base URL, without a trailing ``/``."""
    token: Token | None
    organization: str | None
    """Organization slug, sent as ``x-compartment-organization``."""
    remote: str | None
    """Name of the config file's remote whose settings are used, if any."""
    url_source: str = field(default="the default", compare=False)
    """Where ``api_url`` came from: ``--api-url``, ``COMPARTMENT_API_URL``, a remote."""
    token_source: str | None = field(default=None, compare=False)
    """Where the token came from (None: no token)."""

    @property
    def is_local(self) -> bool:
        """Whether the control plane is on this machine (a `compartment server`)."""
        try:
            host = urlsplit(self.api_url).hostname
        except ValueError:
            return False
        return host in ("127.0.0.1", "localhost", "::1")

    def unreachable_hint(self) -> str:
        """What to do when the control plane cannot be reached: the same words everywhere."""
        where = f"The control plane's URL {self.api_url} came from {self.url_source}"
        if self.is_local:
            return f"{where}; is `compartment server` running?"
        return f"{where}; check it, and that this machine can reach it."

    def hint_for(self, error: CompartmentError) -> str | None:
        """What to do about ``error``, if it is a connection or auth error."""
        if isinstance(error, NotAuthorized):
            return self.unauthorized_hint()
        if isinstance(error, Unavailable) and error.code in UNREACHABLE_CODES:
            return self.unreachable_hint()
        return None

    def unauthorized_hint(self) -> str:
        """What to do when the control plane refuses the token: which one, and where from."""
        if self.token_source is None:
            return (
                f"No token was sent to {self.api_url}: set {TOKEN_ENV}, or log in "
                "(the local `compartment server` logs this CLI in as the remote 'local')."
            )
        if self.token_source == TOKEN_ENV:
            return f"The token came from {TOKEN_ENV}: set it to a valid token for {self.api_url}."
        fix = (
            "start `compartment server` again, which records its token there"
            if self.is_local
            else "log in again with the official CLI"
        )
        return f"The token came from {self.token_source}: {fix}, or set {TOKEN_ENV}."

    def headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token.reveal()}"
        if self.organization is not None:
            headers["x-compartment-organization"] = self.organization
        return headers


def resolve_connection(
    *,
    api_url: str | None = None,
    remote: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Connection:
    """The connection the flags, the environment and the config file describe.

    Raises ``UsageError`` naming the setting at fault and where it came from.
    """
    env = os.environ if environ is None else environ
    env_url = env.get(API_URL_ENV) or None
    env_token = (env.get(TOKEN_ENV) or "").strip() or None
    env_org = (env.get(ORG_ENV) or "").strip() or None

    flag_url = None if api_url is None else _check_url(api_url, "--api-url")
    login: _RemoteLogin | None = None
    if remote is not None or (flag_url is None and env_url is None) or not (env_token and env_org):
        login = _remote_login(env, remote)

    if flag_url is not None:
        url, url_source = flag_url, "--api-url"
    elif remote is not None and login is not None:
        url, url_source = login.checked_url(), login.where
    elif env_url is not None:
        url, url_source = _check_url(env_url, API_URL_ENV), API_URL_ENV
    elif login is not None:
        url, url_source = login.checked_url(), login.where
    else:
        url, url_source = DEFAULT_API_URL, f"the default (no {API_URL_ENV}, no login)"

    # A remote's login goes only to that remote's own server.
    if login is not None and not _same_server(url, login.url):
        login = None
    env_token_checked = _check_token(env_token, TOKEN_ENV)
    env_org_checked = _check_org(env_org, ORG_ENV)
    env_token_source = None if env_token_checked is None else TOKEN_ENV
    if login is None:
        return Connection(
            url,
            env_token_checked,
            env_org_checked,
            remote=None,
            url_source=url_source,
            token_source=env_token_source,
        )
    remote_token = _check_token(login.token, f"sessionToken of {login.where}")
    remote_org = _check_org(login.organization, f"currentOrganization.slug of {login.where}")
    remote_token_source = None if remote_token is None else login.where
    if remote is not None:  # the flag outranks the environment
        token = remote_token or env_token_checked
        token_source = remote_token_source or env_token_source
        org = remote_org or env_org_checked
    else:
        token = env_token_checked or remote_token
        token_source = env_token_source or remote_token_source
        org = env_org_checked or remote_org
    return Connection(
        url, token, org, remote=login.name, url_source=url_source, token_source=token_source
    )


@dataclass(frozen=True)
class _RemoteLogin:
    """One remote of the config file, before its values are checked."""

    name: str
    where: str
    url: str
    token: str | None = field(repr=False)
    organization: str | None

    def checked_url(self) -> str:
        return _check_url(self.url, f"apiUrl of {self.where}")


def _remote_login(env: Mapping[str, str], name: str | None) -> _RemoteLogin | None:
    """The remote named by ``--remote``, else the file's current remote, else None."""
    path = config_path(env)
    config = _read(path)
    chosen = name if name is not None else config.current_remote
    if not chosen:
        return None
    entry = config.remotes.get(chosen)
    if entry is None:
        which = "remote" if name is not None else "currentRemote"
        raise UsageError(
            f"unknown {which} {_quote(chosen)} in {path} ({_known(config)})", code="unknown_remote"
        )
    org = entry.current_organization
    return _RemoteLogin(
        name=chosen,
        where=f"remote {_quote(chosen)} in {path}",
        url=entry.api_url or DEFAULT_API_URL,
        token=entry.session_token,
        organization=None if org is None else org.slug,
    )


def _quote(text: str) -> str:
    """``text`` in double quotes, control characters escaped."""
    return json.dumps(text, ensure_ascii=False)


def _read(path: Path) -> ConfigFile:
    try:
        return read_config(path)
    except ConfigFileError as exc:
        reason = exc.reason if exc.reason.startswith("is ") else f"cannot be used: {exc.reason}"
        raise UsageError(f"config file {path} {reason}", code="invalid_config") from None


def _known(config: ConfigFile) -> str:
    if not config.remotes:
        return "no remotes are configured"
    return "known: " + ", ".join(sorted(config.remotes))


def _check_url(value: str, source: str) -> str:
    """``value`` without trailing ``/``; a UsageError naming ``source`` when unusable."""
    url = value.strip()
    shown = _redact(url)
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unbalanced "[" in the host
        raise UsageError(
            f"API URL {_quote(shown)} from {source} is malformed", code="invalid_api_url"
        ) from None
    try:
        port_ok = parts.port is None or parts.port > 0
    except ValueError:  # out of range or not a number
        port_ok = False
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(
            f"API URL {_quote(shown)} from {source} is not an http(s) URL (e.g. {DEFAULT_API_URL})",
            code="invalid_api_url",
        )
    if not port_ok or any(c.isspace() for c in url):
        raise UsageError(
            f"API URL {_quote(shown)} from {source} is malformed", code="invalid_api_url"
        )
    if parts.username is not None or parts.password is not None:
        raise UsageError(
            f"API URL {_quote(shown)} from {source} must not contain credentials",
            code="invalid_api_url",
        )
    if parts.query or parts.fragment:
        raise UsageError(
            f"API URL {_quote(shown)} from {source} must not have a query or fragment",
            code="invalid_api_url",
        )
    return url.rstrip("/")


def _redact(url: str) -> str:
    """``url`` without what may hold a secret (user:password@, query, fragment)."""
    for mark in ("?", "#"):
        if mark in url:
            url = url.split(mark, 1)[0] + mark + "***"
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "***" if "@" in url else url
    authority, slash, tail = rest.partition("/")
    if "@" in authority:
        authority = "***@" + authority.rsplit("@", 1)[1]
    return f"{scheme}{sep}{authority}{slash}{tail}"


def _same_server(a: str, b: str) -> bool:
    def key(url: str) -> tuple[str, str | None, int | None, str]:
        try:
            parts = urlsplit(url.strip())
            port = parts.port
        except ValueError:
            return (url, None, None, "")
        default_port = 443 if parts.scheme == "https" else 80
        return (parts.scheme, parts.hostname, port or default_port, parts.path.rstrip("/"))

    return key(a) == key(b)


def _check_token(value: str | None, source: str) -> Token | None:
    if value is None or value == "":
        return None
    if not _HEADER_VALUE_RE.fullmatch(value):
        # The message names where the token is, never what it is.
        raise UsageError(
            f"the token from {source} contains spaces or characters not allowed in a header",
            code="invalid_token",
        )
    return Token(value)


def _check_org(value: str | None, source: str) -> str | None:
    if value is None or value == "":
        return None
    if not _HEADER_VALUE_RE.fullmatch(value):
        raise UsageError(
            f"organization {_quote(value)} from {source} is not a valid slug",
            code="invalid_organization",
        )
    return value
