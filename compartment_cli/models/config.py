"""The official CLI's login file (CONTRACT.md section 3): where it is and its shape.

Both the CLI (which reads it) and the control plane (which records itself as
the remote ``local``) use this module. Writes keep every key they do not know
about, so a file shared with the official CLI loses nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import msgspec

from compartment_cli.models.api import Wire

LOCAL_REMOTE = "local"


class Organization(Wire):
    id: str | None = None
    name: str | None = None
    slug: str | None = None


class Remote(Wire):
    api_url: str | None = None
    session_token: str | None = None
    current_organization: Organization | None = None
    principal_email: str | None = None


LOCAL_ORGANIZATION = Organization(id="org_local", name="Local", slug="local")
"""The one organization of a local control plane (it ignores the organization header;
the official CLI refuses every project command while a remote has none)."""


class ConfigFile(Wire):
    current_remote: str | None = None
    remotes: dict[str, Remote] = msgspec.field(default_factory=dict)


class ConfigFileError(Exception):
    """The config file exists but cannot be read as the expected JSON."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def config_path(environ: Mapping[str, str] | None = None) -> Path:
    """The first of ``$COMPARTMENT_CLI_CONFIG_DIR``, ``$XDG_CONFIG_HOME/compartment-cli``,
    ``~/.config/compartment-cli``, with ``config.json`` appended."""
    env = os.environ if environ is None else environ
    if env.get("COMPARTMENT_CLI_CONFIG_DIR"):
        return Path(env["COMPARTMENT_CLI_CONFIG_DIR"]) / "config.json"
    if env.get("XDG_CONFIG_HOME"):
        return Path(env["XDG_CONFIG_HOME"]) / "compartment-cli" / "config.json"
    return Path.home() / ".config" / "compartment-cli" / "config.json"


def read_config(path: Path) -> ConfigFile:
    """The parsed file; a missing file is an empty config."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return ConfigFile()
    except OSError as exc:
        raise ConfigFileError(path, exc.strerror or "cannot be read") from None
    try:
        return msgspec.json.decode(raw, type=ConfigFile)
    except msgspec.ValidationError as exc:  # a subclass of DecodeError: first
        raise ConfigFileError(path, str(exc)) from None
    # UnicodeDecodeError (invalid UTF-8 in a string) and RecursionError (nested
    # too deeply) are what msgspec raises instead of DecodeError for those.
    except (msgspec.DecodeError, UnicodeError, RecursionError):
        raise ConfigFileError(path, "is not valid JSON") from None


def record_remote(
    path: Path, name: str, api_url: str, token: str, organization: Organization | None = None
) -> None:
    """Set ``remotes[name]`` to this API URL and token, keeping everything else.

    ``organization`` becomes the remote's ``currentOrganization`` unless it
    already has a complete one. Makes ``name`` the current remote when none is
    current. The file is replaced atomically and is readable by its owner only
    (0600).
    """
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        data = {}
    except (OSError, ValueError, RecursionError) as exc:  # RecursionError: nested too deeply
        raise ConfigFileError(path, f"cannot be updated: {exc.__class__.__name__}") from None
    if not isinstance(data, dict):
        raise ConfigFileError(path, "is not a JSON object")
    remotes = data.setdefault("remotes", {})
    if not isinstance(remotes, dict):
        raise ConfigFileError(path, "remotes is not a JSON object")
    entry = remotes.get(name)
    entry = dict(entry) if isinstance(entry, dict) else {}
    entry["apiUrl"] = api_url
    entry["sessionToken"] = token
    current = entry.get("currentOrganization")
    complete = isinstance(current, dict) and all(
        isinstance(current.get(key), str) and current[key] for key in ("id", "name", "slug")
    )
    if organization is not None and not complete:
        entry["currentOrganization"] = msgspec.to_builtins(organization)
    remotes[name] = entry
    if not data.get("currentRemote"):
        data["currentRemote"] = name
    _write_private(path, json.dumps(data, indent=2) + "\n")


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=".config-", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
