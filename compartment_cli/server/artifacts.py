"""The deploy archive, checked and unpacked, and the control plane's artifact store.

The deploy archive
==================

``compartment deploy`` uploads one archive to ``POST /v1/deployments`` with
``Content-Type: application/gzip``: a gzip stream holding a tar archive
(``compartment_cli/workflows/pack.py`` writes it, this module reads it).

* The first member is ``manifest.json``, a regular file holding a JSON
  ``DeployManifest`` (``compartment_cli/models/descriptor.py``)::

      {"projectName": "shop", "environmentName": "staging",
       "services": {"api": {"path": "api", "build": {"command": "make"}}},
       "serviceName": "api"}

  It is decoded strictly: unknown keys and invalid values are refused. When
  ``serviceName`` is given it must be one of ``services``.
* Every other member lies below ``services/<name>/`` where ``<name>`` is a key
  of the manifest's ``services``, and every such service has its directory
  (at least the member ``services/<name>/`` itself). A ``services/`` directory
  member is allowed; nothing else is.
* Members are regular files and directories only. Symlinks, hardlinks,
  devices, fifos and sparse files are refused, as are absolute names, names
  with a ``..`` component or a NUL byte, and names that appear twice. ``.``
  components and a leading ``./`` are ignored.
* Of a file's mode only the owner's exec bit counts: files are unpacked as
  0755 or 0644. Owners, times and other attributes are ignored.
* The uncompressed tar stream (headers, manifest and contents) may not exceed
  the server's byte limit (413 ``payload_too_large``), and the archive may not
  hold more than 100,000 members (400).

The client writes the archive deterministically (members sorted by name,
mtime 0, uid/gid 0, no user or group names, no name or time in the gzip
header), so the same project gives the same bytes. Every other refusal is a 400
``invalid_deploy_request`` whose message names the member and what is wrong.

Artifacts
=========

The server stores each service's tree once, under ``<root>/<sha256>/``, named
by ``ArtifactStore.digest_tree``: a SHA-256 over the sorted relative paths,
each file's exec bit and each file's contents (directories included, so an
empty directory counts). The service's ``build.command`` runs in a newly
stored artifact (``builds.run_build``). ``<root>/<sha256>.built`` is removed when a
build starts and written only after it succeeds, so an artifact whose build
failed or was interrupted is built again by the next deploy, not reused. The
marker lies beside the tree, not in it, so no uploaded file can pose as it.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import os
import shutil
import stat
import tarfile
import time
import uuid
import zlib
from pathlib import Path
from typing import Final, Protocol

import msgspec

from compartment_cli.models.descriptor import MANIFEST_NAME, SERVICES_DIR, DeployManifest

MAX_MEMBERS: Final = 100_000
MAX_MANIFEST_BYTES: Final = 1024 * 1024
BUILT_SUFFIX: Final = ".built"
_CHUNK: Final = 1024 * 1024
_DIGEST_LENGTH: Final = 64


class ArchiveError(Exception):
    """A deploy archive the control plane refuses; ``status`` and ``code`` go on the wire."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = "payload_too_large" if status == 413 else "invalid_deploy_request"


class _OverLimit(Exception):
    """The uncompressed stream passed the byte limit (raised inside tarfile's reads)."""


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class _LimitedReader:
    """Reads the decompressed tar stream, refusing to hand out more than ``limit`` bytes.

    Counting here, below tarfile, bounds everything tarfile reads: member data,
    the data it skips, and pax headers it would otherwise load whole into memory.
    """

    def __init__(self, source: _Readable, limit: int) -> None:
        self._source = source
        self._limit = limit
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            size = self._limit - self.count + 1
        data = self._source.read(min(size, self._limit - self.count + 1))
        self.count += len(data)
        if self.count > self._limit:
            raise _OverLimit
        return data


def read_deploy_archive(
    archive: Path, staging: Path, *, max_bytes: int, max_members: int = MAX_MEMBERS
) -> tuple[DeployManifest, dict[str, Path]]:
    """Check the deploy archive at ``archive`` and unpack it into ``staging``.

    ``staging`` is a fresh, empty directory made by the caller. Returns the
    manifest and, for each of its services, the directory its tree was
    unpacked to (``staging/services/<name>``). Raises ArchiveError, with
    ``staging`` left empty, when the archive is refused (see the module
    docstring); other errors (such as a full disk) also leave it empty.
    """
    try:
        return _unpack(archive, staging, max_bytes=max_bytes, max_members=max_members)
    except BaseException:
        _empty(staging)
        raise


def _unpack(
    archive: Path, staging: Path, *, max_bytes: int, max_members: int
) -> tuple[DeployManifest, dict[str, Path]]:
    root = Path(os.path.realpath(staging))
    with archive.open("rb") as raw, gzip.GzipFile(fileobj=raw, mode="rb") as decompressed:
        stream = _LimitedReader(decompressed, max_bytes)
        unpacker = _Unpacker(root, max_members)
        try:
            with tarfile.open(fileobj=stream, mode="r|") as tar:  # type: ignore[call-overload]
                for member in tar:
                    unpacker.add(tar, member, max_bytes)
        except _OverLimit:
            at = f" (at member '{unpacker.current}')" if unpacker.current else ""
            raise ArchiveError(
                f"the archive is larger than {max_bytes} bytes uncompressed{at}", status=413
            ) from None
        except gzip.BadGzipFile as exc:
            raise ArchiveError(f"the archive is not gzip-compressed: {exc}") from None
        except (EOFError, zlib.error) as exc:
            raise ArchiveError(f"the archive's gzip stream is damaged: {exc}") from None
        except tarfile.ReadError as exc:
            raise ArchiveError(f"the archive is not a valid tar archive: {exc}") from None
    return unpacker.finish()


class _Unpacker:
    """Checks each member as tarfile yields it, then writes it below ``root``."""

    def __init__(self, root: Path, max_members: int) -> None:
        self.root = root
        self.max_members = max_members
        self.manifest: DeployManifest | None = None
        self.members = 0
        self.current = ""
        self.seen: set[tuple[str, ...]] = set()

    def add(self, tar: tarfile.TarFile, member: tarfile.TarInfo, max_bytes: int) -> None:
        self.current = member.name
        self.members += 1
        if self.members > self.max_members:
            raise ArchiveError(f"the archive holds more than {self.max_members} members")
        parts = _member_parts(member)
        if self.manifest is None:
            self.manifest = _read_manifest(tar, member, parts)
            return
        _check_kind(member)
        if member.offset_data + member.size > max_bytes:
            raise _OverLimit  # before writing a byte of a member that cannot fit
        self._check_place(member, parts)
        if parts in self.seen:
            raise ArchiveError(f"member '{member.name}' appears more than once")
        self.seen.add(parts)
        # A second guard from the standard library: refuses what escapes `root`.
        try:
            tarfile.data_filter(member, str(self.root))
        except tarfile.FilterError as exc:
            raise ArchiveError(f"member '{member.name}' is refused: {exc}") from None
        target = self.root.joinpath(*parts)
        try:
            if member.isdir():
                target.mkdir(mode=0o755, parents=True, exist_ok=True)
            else:
                self._write_file(tar, member, target)
        except OSError as exc:
            if exc.errno in (errno.EEXIST, errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG):
                raise ArchiveError(
                    f"member '{member.name}' cannot be unpacked: {exc.strerror} "
                    "(it clashes with an earlier member or its name is too long)"
                ) from None
            raise

    def _check_place(self, member: tarfile.TarInfo, parts: tuple[str, ...]) -> None:
        assert self.manifest is not None
        if parts == (SERVICES_DIR,) and member.isdir():
            return
        if len(parts) < 2 or parts[0] != SERVICES_DIR or parts[1] not in self.manifest.services:
            known = ", ".join(f"{SERVICES_DIR}/{name}/" for name in sorted(self.manifest.services))
            raise ArchiveError(
                f"member '{member.name}' is outside the services' directories ({known})"
            )
        if len(parts) == 2 and not member.isdir():
            raise ArchiveError(f"member '{member.name}' must be a directory, not a file")

    def _write_file(self, tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path) -> None:
        parent = target.parent
        parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        if os.path.commonpath([os.path.realpath(parent), self.root]) != str(self.root):
            raise ArchiveError(f"member '{member.name}' would be written outside the staging dir")
        mode = 0o755 if member.mode & stat.S_IXUSR else 0o644
        source = tar.extractfile(member)
        assert source is not None  # a regular file always has a reader
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(target, flags, mode)
        with os.fdopen(fd, "wb") as out:
            os.fchmod(fd, mode)  # exact mode whatever the umask: the exec bit is in the digest
            while chunk := source.read(_CHUNK):
                out.write(chunk)

    def finish(self) -> tuple[DeployManifest, dict[str, Path]]:
        if self.manifest is None:
            raise ArchiveError(f"the archive is empty: {MANIFEST_NAME} is missing")
        trees: dict[str, Path] = {}
        for name in sorted(self.manifest.services):
            tree = self.root / SERVICES_DIR / name
            if not tree.is_dir():
                raise ArchiveError(
                    f"service '{name}' is in {MANIFEST_NAME} but the archive has no "
                    f"{SERVICES_DIR}/{name}/ directory"
                )
            trees[name] = tree
        return self.manifest, trees


def _member_parts(member: tarfile.TarInfo) -> tuple[str, ...]:
    name = member.name
    if "\x00" in name:
        raise ArchiveError(f"member {name!r} has a NUL byte in its name")
    if name.startswith("/"):
        raise ArchiveError(f"member '{name}' has an absolute name")
    parts = tuple(part for part in name.split("/") if part not in ("", "."))
    if ".." in parts:
        raise ArchiveError(f"member '{name}' has a '..' component")
    if not parts:
        raise ArchiveError(f"member '{name}' has an empty name")
    return parts


def _check_kind(member: tarfile.TarInfo) -> None:
    if (member.isreg() and not member.issparse()) or member.isdir():
        return
    if member.issym():
        kind = f"a symlink (to '{member.linkname}')"
    elif member.islnk():
        kind = f"a hardlink (to '{member.linkname}')"
    elif member.ischr() or member.isblk():
        kind = "a device"
    elif member.isfifo():
        kind = "a fifo"
    elif member.issparse():
        kind = "a sparse file"
    else:
        kind = f"of unsupported tar type {member.type!r}"
    raise ArchiveError(
        f"member '{member.name}' is {kind}; only regular files and directories are accepted"
    )


def _read_manifest(
    tar: tarfile.TarFile, member: tarfile.TarInfo, parts: tuple[str, ...]
) -> DeployManifest:
    if parts != (MANIFEST_NAME,):
        raise ArchiveError(f"the first member must be {MANIFEST_NAME}, found '{member.name}'")
    if not member.isreg() or member.issparse():
        raise ArchiveError(f"member '{MANIFEST_NAME}' must be a regular file")
    if member.size > MAX_MANIFEST_BYTES:
        raise ArchiveError(
            f"member '{MANIFEST_NAME}' is {member.size} bytes; the limit is {MAX_MANIFEST_BYTES}"
        )
    source = tar.extractfile(member)
    assert source is not None
    try:
        manifest = msgspec.json.decode(source.read(), type=DeployManifest, strict=True)
    except msgspec.DecodeError as exc:
        raise ArchiveError(f"member '{MANIFEST_NAME}' is invalid: {exc}") from None
    # msgspec raises these, not DecodeError, for JSON nested deeper than the
    # recursion limit (`connections` may hold any JSON) and for invalid UTF-8
    # in a string: a 400 like any other bad manifest, not a 500.
    except RecursionError:
        raise ArchiveError(f"member '{MANIFEST_NAME}' is invalid: nested too deeply") from None
    except UnicodeError:
        raise ArchiveError(f"member '{MANIFEST_NAME}' is invalid: not valid UTF-8") from None
    if not manifest.services:
        raise ArchiveError(f"member '{MANIFEST_NAME}' is invalid: `$.services` is empty")
    if manifest.service_name is not None and manifest.service_name not in manifest.services:
        raise ArchiveError(
            f"member '{MANIFEST_NAME}' is invalid: serviceName '{manifest.service_name}' "
            "is not one of its services"
        )
    return manifest


def _empty(directory: Path) -> None:
    """Remove everything inside ``directory`` (which only this module wrote to)."""
    if not directory.is_dir():
        return
    for child in directory.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


# --- the artifact store ----------------------------------------------------


class ArtifactStore:
    """Service trees stored once each, as ``<root>/<sha256>/``, plus build markers."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    @staticmethod
    def digest_tree(path: Path) -> str:
        """SHA-256 over the sorted relative paths, file exec bits and file contents.

        Only regular files and directories may be in the tree (ValueError otherwise).
        """
        entries: list[tuple[str, Path, os.stat_result]] = []
        _list_tree(path, path, entries)
        entries.sort(key=lambda entry: entry[0])
        digest = hashlib.sha256()
        for relative, full, info in entries:
            name = relative.encode("utf-8", "surrogateescape")
            if stat.S_ISDIR(info.st_mode):
                digest.update(b"d\0" + name + b"\0")
                continue
            executable = b"x" if info.st_mode & stat.S_IXUSR else b"-"
            with full.open("rb") as source:
                size = os.fstat(source.fileno()).st_size
                digest.update(b"f\0" + name + b"\0" + executable + str(size).encode() + b"\0")
                copied = 0
                while chunk := source.read(_CHUNK):
                    copied += len(chunk)
                    digest.update(chunk)
            if copied != size:
                raise ValueError(f"'{full}' changed while its digest was computed")
        return digest.hexdigest()

    def path(self, digest: str) -> Path:
        if len(digest) != _DIGEST_LENGTH or not all(c in "0123456789abcdef" for c in digest):
            raise ValueError(f"not a sha256 digest: {digest!r}")
        return self.root / digest

    def exists(self, digest: str) -> bool:
        return self.path(digest).is_dir()

    def put(self, tree: Path) -> tuple[str, Path, bool]:
        """Store ``tree`` under its digest: (digest, artifact dir, created).

        A new tree is moved in with one atomic rename (copied first when it is
        on another file system); ``tree`` is discarded when that digest is
        already stored, and the stored artifact is kept as it is.
        """
        digest = self.digest_tree(tree)
        target = self.path(digest)
        if target.is_dir():
            shutil.rmtree(tree)
            return digest, target, False
        # A marker left by an artifact removed by hand.
        built_marker(self.path(digest)).unlink(missing_ok=True)
        try:
            created = self._move_in(tree, target)
        finally:
            if tree.exists():
                shutil.rmtree(tree)
        return digest, target, created

    def _move_in(self, tree: Path, target: Path) -> bool:
        try:
            os.rename(tree, target)
            return True
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                return False  # the same tree was stored meanwhile
            if exc.errno != errno.EXDEV:
                raise
        incoming = self.root / f".incoming-{uuid.uuid4().hex}"
        try:
            shutil.copytree(tree, incoming, symlinks=True)
            os.rename(incoming, target)
            return True
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                return False
            raise
        finally:
            if incoming.exists():
                shutil.rmtree(incoming)

    def is_built(self, digest: str) -> bool:
        """True once a build of this artifact succeeded (``run_build`` or ``mark_built``)."""
        return self.exists(digest) and built_marker(self.path(digest)).is_file()

    def mark_built(self, digest: str) -> None:
        """Record that ``digest`` is built: for an artifact that needs no build command."""
        if not self.exists(digest):
            raise ValueError(f"artifact {digest} is not stored")
        write_marker(built_marker(self.path(digest)))


def built_marker(artifact_dir: Path) -> Path:
    """``<root>/<sha256>.built``: beside the tree, so no uploaded file can pose as it."""
    artifact_dir = Path(os.path.abspath(artifact_dir))
    return artifact_dir.with_name(f"{artifact_dir.name}{BUILT_SUFFIX}")


def write_marker(marker: Path) -> None:
    """Write a marker file atomically: it exists whole or not at all."""
    partial = marker.with_name(f".{marker.name}.{uuid.uuid4().hex}")
    partial.write_text(f"{time.time():.3f}\n")
    os.replace(partial, marker)


def _list_tree(
    root: Path, directory: Path, entries: list[tuple[str, Path, os.stat_result]]
) -> None:
    with os.scandir(directory) as listing:
        children = list(listing)
    for child in children:
        info = child.stat(follow_symlinks=False)
        full = Path(child.path)
        relative = full.relative_to(root).as_posix()
        if stat.S_ISDIR(info.st_mode):
            entries.append((relative, full, info))
            _list_tree(root, full, entries)
        elif stat.S_ISREG(info.st_mode):
            entries.append((relative, full, info))
        else:
            raise ValueError(f"'{full}' is neither a regular file nor a directory")
