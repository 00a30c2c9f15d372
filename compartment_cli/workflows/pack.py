"""Pack a project's services into the deploy archive (``POST /v1/deployments``).

The archive format is documented in ``compartment_cli/server/artifacts.py``,
which reads it. The archive is deterministic: the same trees and descriptor give
the same bytes, whatever the file times, owners or umask, so the control plane
can recognise an unchanged service by the digest of its tree.
"""

from __future__ import annotations

import gzip
import io
import os
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import msgspec

from compartment_cli.errors import UsageError
from compartment_cli.models.descriptor import (
    MANIFEST_NAME,
    SERVICES_DIR,
    DeployManifest,
    Descriptor,
    ServiceConfig,
)

SKIPPED_NAMES = frozenset({".git", "__pycache__", ".venv", "node_modules"})
SKIPPED_SUFFIXES = (".pyc",)
# Any fixed level keeps the output deterministic; 6 is zlib's own trade-off.
_COMPRESS_LEVEL = 6


@dataclass(frozen=True)
class _Entry:
    """One member below ``services/<name>/``: a directory, or a file read from ``source``."""

    name: str
    source: Path | None
    executable: bool = False


def pack_services(
    project_dir: Path,
    descriptor: Descriptor,
    *,
    environment: str,
    service: str | None,
    out: BinaryIO,
    bake_ms: int | None = None,
) -> None:
    """Write the deploy archive of ``descriptor``'s services (or only ``service``) to ``out``.

    Raises UsageError, before anything is written, when a service's path does
    not exist, leaves the project directory, or holds a symlink that points
    outside the service or at anything but a regular file.
    """
    root = project_dir.resolve()
    if service is not None and service not in descriptor.services:
        known = ", ".join(sorted(descriptor.services)) or "none"
        raise UsageError(f"service '{service}' is not in compartment.yml (services: {known})")
    names = [service] if service is not None else sorted(descriptor.services)
    selected: dict[str, ServiceConfig] = {name: descriptor.services[name] for name in names}

    entries: list[_Entry] = []
    for name, config in selected.items():
        service_dir = _service_dir(root, name, config.path)
        prefix = f"{SERVICES_DIR}/{name}"
        entries.append(_Entry(prefix, None))
        entries.extend(_collect(service_dir, service_dir, prefix, name))
    entries.sort(key=lambda entry: entry.name)

    manifest = DeployManifest(
        project_name=descriptor.name,
        services=selected,
        environment_name=environment,
        service_name=service,
        bake_ms=bake_ms,
    )
    _write_archive(msgspec.json.encode(manifest), entries, out)


def _service_dir(root: Path, name: str, path: str) -> Path:
    candidate = (root / path).resolve()
    if not candidate.is_relative_to(root):
        raise UsageError(f"service '{name}': path '{path}' is outside the project directory {root}")
    if not candidate.is_dir():
        what = "is not a directory" if candidate.exists() else "does not exist"
        raise UsageError(f"service '{name}': path '{path}' {what} ({candidate})")
    return candidate


def _skipped(name: str) -> bool:
    return name in SKIPPED_NAMES or name.endswith(SKIPPED_SUFFIXES)


def _collect(service_dir: Path, directory: Path, prefix: str, service: str) -> list[_Entry]:
    entries: list[_Entry] = []
    with os.scandir(directory) as listing:
        children = sorted(listing, key=lambda child: child.name)
    for child in children:
        if _skipped(child.name):
            continue
        path = Path(child.path)
        name = f"{prefix}/{child.name}"
        shown = path.relative_to(service_dir).as_posix()
        if child.is_symlink():
            target = path.resolve()
            if not target.is_relative_to(service_dir):
                raise UsageError(
                    f"service '{service}': symlink '{shown}' points outside the service "
                    f"directory (to {target}); replace it with the file itself"
                )
            if not target.is_file():
                raise UsageError(
                    f"service '{service}': symlink '{shown}' does not point to a regular file "
                    f"(to {target}); only links to files inside the service are packed"
                )
            entries.append(_Entry(name, target, _is_executable(target.stat().st_mode)))
        elif child.is_dir(follow_symlinks=False):
            entries.append(_Entry(name, None))
            entries.extend(_collect(service_dir, path, name, service))
        elif child.is_file(follow_symlinks=False):
            mode = child.stat(follow_symlinks=False).st_mode
            entries.append(_Entry(name, path, _is_executable(mode)))
        else:
            raise UsageError(
                f"service '{service}': '{shown}' is neither a file nor a directory "
                "(socket, fifo or device); remove it or move it out of the service"
            )
    return entries


def _is_executable(mode: int) -> bool:
    return bool(mode & stat.S_IXUSR)


def _member(name: str, kind: bytes, mode: int, size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.size = size
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _write_archive(manifest: bytes, entries: list[_Entry], out: BinaryIO) -> None:
    # filename="" and mtime=0 keep the gzip header free of names and times.
    with (
        gzip.GzipFile(
            filename="", mode="wb", fileobj=out, mtime=0, compresslevel=_COMPRESS_LEVEL
        ) as compressed,
        tarfile.open(fileobj=compressed, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        tar.addfile(
            _member(MANIFEST_NAME, tarfile.REGTYPE, 0o644, len(manifest)), io.BytesIO(manifest)
        )
        for entry in entries:
            if entry.source is None:
                tar.addfile(_member(entry.name, tarfile.DIRTYPE, 0o755))
                continue
            with entry.source.open("rb") as source:
                size = os.fstat(source.fileno()).st_size
                mode = 0o755 if entry.executable else 0o644
                tar.addfile(_member(entry.name, tarfile.REGTYPE, mode, size), source)
