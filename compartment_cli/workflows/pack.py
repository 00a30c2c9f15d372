"""Pack a project's services into the deploy archive (``POST /v1/deployments``).

The archive format is documented in ``compartment_cli/server/artifacts.py``,
which reads it. The archive is deterministic: the same trees and descriptor give
the same bytes, whatever the file times, owners or umask, so the control plane
can recognise an unchanged service by the digest of its tree.

What is packed is what the platform's source archive packs
(``packages/source-archive/src/`` of the platform):

- ``.gitignore`` files apply at every level, from the repository root (the
  nearest directory above compartment.yml holding ``.git``; compartment.yml's
  own directory outside git) down to each file's directory, with gitignore
  semantics and negations; the deepest file that has a say decides. An
  ignored directory is not entered.
- A rule that would leave out a service's own directory is dropped for that
  service (a service is packed even when its folder is git-ignored).
- ``.git``, ``.hg`` and ``.svn`` are never packed. Nothing else is left out
  by name: a vendored ``node_modules`` is packed unless a ``.gitignore`` says not.

The matching is pathspec's ``GitIgnoreSpec`` (git's own rules, including its
corner cases), not a matcher of ours.
"""

from __future__ import annotations

import gzip
import io
import os
import stat
import tarfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Final

import msgspec
from pathspec import GitIgnoreSpec

from compartment_cli.errors import UsageError
from compartment_cli.models.descriptor import (
    MANIFEST_NAME,
    SERVICES_DIR,
    DeployManifest,
    Descriptor,
    ServiceConfig,
)
from compartment_cli.project import PROJECT_FILE, display_name, line_of

VCS_DIRECTORIES: Final = frozenset({".git", ".hg", ".svn"})
GITIGNORE: Final = ".gitignore"
# Any fixed level keeps the output deterministic; 6 is zlib's own trade-off.
_COMPRESS_LEVEL = 6


@dataclass(frozen=True)
class _Entry:
    """One member below ``services/<name>/``: a directory, or a file read from ``source``."""

    name: str
    source: Path | None
    executable: bool = False


@dataclass
class PackStats:
    """What went into the archive and what was left out, and why (for ``deploy --verbose``)."""

    files: int = 0
    bytes: int = 0
    left_out: list[tuple[str, str]] = field(default_factory=list)
    """(path relative to the project directory, reason), a left-out directory counting once."""

    def summary(self) -> str:
        text = f"packed {self.files} files, {self.bytes} bytes"
        if not self.left_out:
            return text + "; left nothing out"
        reasons = Counter(reason for _, reason in self.left_out)
        why = ", ".join(f"{count} by {reason}" for reason, count in sorted(reasons.items()))
        return f"{text}; left out {len(self.left_out)} paths ({why})"


def pack_services(
    project_dir: Path,
    descriptor: Descriptor,
    *,
    environment: str,
    service: str | None,
    out: BinaryIO,
    bake_ms: int | None = None,
) -> PackStats:
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

    stats = PackStats()
    ignore_root = _ignore_root(root)
    entries: list[_Entry] = []
    for name, config in selected.items():
        service_dir = _service_dir(root, name, config.path)
        prefix = f"{SERVICES_DIR}/{name}"
        entries.append(_Entry(prefix, None))
        walk = _Walk(service_dir, name, _Ignores(ignore_root, service_dir), stats, root)
        entries.extend(walk.collect(service_dir, prefix))
    entries.sort(key=lambda entry: entry.name)

    manifest = DeployManifest(
        project_name=descriptor.name,
        services=selected,
        environment_name=environment,
        service_name=service,
        bake_ms=bake_ms,
    )
    _write_archive(msgspec.json.encode(manifest), entries, out)
    return stats


def _service_dir(root: Path, name: str, path: str) -> Path:
    candidate = (root / path).resolve()
    where = _where(root, name)
    if not candidate.is_relative_to(root):
        raise UsageError(
            f"{where}service '{name}': path '{path}' is outside the project directory {root}"
        )
    if not candidate.is_dir():
        what = "is not a directory" if candidate.exists() else "does not exist"
        raise UsageError(f"{where}service '{name}': path '{path}' {what} ({candidate})")
    return candidate


def _where(root: Path, service: str) -> str:
    """``compartment.yml:7: `` for the line of the service's path, when it can be found."""
    path = root / PROJECT_FILE
    line = line_of(path, "services", service, "path") or line_of(path, "services", service)
    return f"{display_name(path)}:{line}: " if line else ""


def _ignore_root(project_dir: Path) -> Path:
    """The repository root above ``project_dir`` (a directory with ``.git``), else itself."""
    for directory in (project_dir, *project_dir.parents):
        if os.path.lexists(directory / ".git"):
            return directory
    return project_dir


class _Ignores:
    """The ``.gitignore`` rules that apply below ``root``, for one service's walk."""

    def __init__(self, root: Path, service_dir: Path) -> None:
        self.root = root
        self._service = service_dir.relative_to(root).as_posix()
        self._specs: dict[str, GitIgnoreSpec | None] = {}

    def _spec(self, base: str) -> GitIgnoreSpec | None:
        if base not in self._specs:
            self._specs[base] = self._read(base)
        return self._specs[base]

    def _read(self, base: str) -> GitIgnoreSpec | None:
        try:
            text = (self.root / base / GITIGNORE).read_text(encoding="utf-8", errors="replace")
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise UsageError(f"{base}/{GITIGNORE} cannot be read: {exc.strerror}") from None
        rules = [line for line in text.splitlines() if line.strip()]
        service = _below(base, self._service)
        if service not in (None, "."):
            # Rules that would leave out the service's own folder do not apply to it.
            rules = [rule for rule in rules if not _leaves_out(rule, service)]
        return GitIgnoreSpec.from_lines(rules)

    def verdict(self, relative: str, is_dir: bool) -> str | None:
        """The ``.gitignore`` that leaves ``relative`` (to the root) out, or None."""
        decided: str | None = None
        parts = relative.split("/")[:-1]
        for depth in range(len(parts) + 1):
            base = "/".join(parts[:depth]) or "."
            spec = self._spec(base)
            below = _below(base, relative)
            if spec is None or below is None:
                continue
            result = spec.check_file(below + "/" if is_dir else below)
            if result.include is not None:
                source = GITIGNORE if base == "." else f"{base}/{GITIGNORE}"
                decided = source if result.include else None
        return decided


def _below(base: str, relative: str) -> str | None:
    if base == ".":
        return relative
    if relative == base:
        return "."
    return relative[len(base) + 1 :] if relative.startswith(base + "/") else None


def _leaves_out(rule: str, path: str) -> bool:
    spec = GitIgnoreSpec.from_lines([rule])
    return any(spec.check_file(candidate).include is True for candidate in (path, path + "/"))


@dataclass
class _Walk:
    service_dir: Path
    service: str
    ignores: _Ignores
    stats: PackStats
    project_dir: Path

    def collect(self, directory: Path, prefix: str) -> list[_Entry]:
        entries: list[_Entry] = []
        with os.scandir(directory) as listing:
            children = sorted(listing, key=lambda child: child.name)
        for child in children:
            path = Path(child.path)
            shown = path.relative_to(self.service_dir).as_posix()
            if self._left_out(child, path):
                continue
            name = f"{prefix}/{child.name}"
            if child.is_symlink():
                target = self._link_target(path, shown)
                entries.append(_Entry(name, target, _is_executable(target.stat().st_mode)))
            elif child.is_dir(follow_symlinks=False):
                entries.append(_Entry(name, None))
                entries.extend(self.collect(path, name))
                continue
            elif child.is_file(follow_symlinks=False):
                stat_result = child.stat(follow_symlinks=False)
                entries.append(_Entry(name, path, _is_executable(stat_result.st_mode)))
            else:
                raise UsageError(
                    f"service '{self.service}': '{shown}' is neither a file nor a directory "
                    "(socket, fifo or device); remove it or move it out of the service"
                )
            self.stats.files += 1
            self.stats.bytes += os.stat(entries[-1].source or path).st_size
        return entries

    def _left_out(self, child: os.DirEntry[str], path: Path) -> bool:
        shown = os.path.relpath(path, self.project_dir)
        if child.name in VCS_DIRECTORIES:
            self.stats.left_out.append((shown, "version control"))
            return True
        relative = path.relative_to(self.ignores.root).as_posix()
        reason = self.ignores.verdict(relative, child.is_dir(follow_symlinks=False))
        if reason is not None:
            self.stats.left_out.append((shown, reason))
            return True
        return False

    def _link_target(self, path: Path, shown: str) -> Path:
        target = path.resolve()
        if not target.is_relative_to(self.service_dir):
            raise UsageError(
                f"service '{self.service}': symlink '{shown}' points outside the service "
                f"directory (to {target}); replace it with the file itself"
            )
        if not target.is_file():
            raise UsageError(
                f"service '{self.service}': symlink '{shown}' does not point to a regular file "
                f"(to {target}); only links to files inside the service are packed"
            )
        return target


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
