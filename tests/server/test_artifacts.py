"""The deploy archive as the control plane reads it, the artifact store, and builds."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import anyio
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compartment_cli.models.descriptor import (
    BuildConfig,
    DeployManifest,
    Descriptor,
    ServiceConfig,
)
from compartment_cli.server import artifacts
from compartment_cli.server.artifacts import (
    ArchiveError,
    ArtifactStore,
    read_deploy_archive,
)
from compartment_cli.server.builds import run_build
from compartment_cli.server.spawn import ProcessSpec, Spawner
from compartment_cli.workflows.pack import pack_services

MiB = 1024 * 1024
MAX_BYTES = 4 * MiB

# --- helpers ----------------------------------------------------------------

Member = tuple[tarfile.TarInfo, bytes | None]


def manifest_bytes(*services: str, service_name: str | None = None) -> bytes:
    return msgspec.json.encode(
        DeployManifest(
            project_name="shop",
            services={name: ServiceConfig(path=name) for name in services or ("web",)},
            service_name=service_name,
        )
    )


def regular(name: str, data: bytes = b"data\n", mode: int = 0o644) -> Member:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    return info, data


def directory(name: str) -> Member:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, 0o755
    return info, None


def special(name: str, kind: bytes, linkname: str = "") -> Member:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor, info.devminor = 1, 3
    return info, None


def tar_bytes(members: list[Member], manifest: bytes | None = None) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        head = [regular("manifest.json", manifest)] if manifest is not None else []
        for info, data in [*head, *members]:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return raw.getvalue()


def write_archive(path: Path, members: list[Member], manifest: bytes | None = None) -> Path:
    path.write_bytes(gzip.compress(tar_bytes(members, manifest)))
    return path


GOOD = [directory("services/web"), regular("services/web/a.txt"), regular("services/web/b/c")]


@pytest.fixture
def place(tmp_path: Path) -> tuple[Path, Path, ArtifactStore]:
    staging = tmp_path / "staging"
    staging.mkdir()
    return tmp_path / "upload.tar.gz", staging, ArtifactStore(tmp_path / "artifacts")


def tree_files(root: Path) -> dict[str, tuple[bytes, bool]]:
    return {
        path.relative_to(root).as_posix(): (path.read_bytes(), os.access(path, os.X_OK))
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


# --- round trip ---------------------------------------------------------------


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, Descriptor]:
    root = tmp_path / "project"
    (root / "web" / "bin").mkdir(parents=True)
    (root / "web" / "empty").mkdir()
    (root / "web" / "index.html").write_text("<h1>shop</h1>\n")
    (root / "web" / "bin" / "start").write_text("#!/bin/sh\n")
    (root / "web" / "bin" / "start").chmod(0o755)
    (root / "api").mkdir()
    (root / "api" / "main.py").write_text("app = None\n")
    desc = Descriptor(
        name="shop",
        services={
            "web": ServiceConfig(path="web", build=BuildConfig(command="make")),
            "api": ServiceConfig(path="api"),
        },
    )
    return root, desc


def upload(tmp_path: Path, root: Path, desc: Descriptor, name: str) -> Path:
    archive = tmp_path / f"{name}.tar.gz"
    with archive.open("wb") as out:
        pack_services(root, desc, environment="staging", service=None, out=out)
    return archive


def test_round_trip_stores_each_tree_once(tmp_path: Path, project: tuple[Path, Descriptor]) -> None:
    root, desc = project
    store = ArtifactStore(tmp_path / "artifacts")
    digests: list[dict[str, str]] = []
    for attempt in ("first", "second"):
        staging = tmp_path / f"staging-{attempt}"
        staging.mkdir()
        manifest, trees = read_deploy_archive(
            upload(tmp_path, root, desc, attempt), staging, max_bytes=MAX_BYTES
        )
        assert manifest.project_name == "shop"
        assert manifest.environment_name == "staging"
        assert manifest.services == desc.services
        assert sorted(trees) == ["api", "web"]
        assert tree_files(trees["web"]) == tree_files(root / "web")
        assert (trees["web"] / "empty").is_dir()
        expected = {name: ArtifactStore.digest_tree(tree) for name, tree in trees.items()}
        results = {name: store.put(tree) for name, tree in trees.items()}
        assert {name: r[0] for name, r in results.items()} == expected
        for name, (digest, artifact_dir, created) in results.items():
            assert created is (attempt == "first")
            assert artifact_dir == store.path(digest) == tmp_path / "artifacts" / digest
            assert store.exists(digest)
            assert tree_files(artifact_dir) == tree_files(root / name)
            assert not trees[name].exists()  # moved in, or discarded
        digests.append({name: r[0] for name, r in results.items()})
    assert digests[0] == digests[1]
    assert sorted(p.name for p in store.root.iterdir()) == sorted(digests[0].values())


def test_one_service_archive(tmp_path: Path, project: tuple[Path, Descriptor]) -> None:
    root, desc = project
    archive = tmp_path / "api.tar.gz"
    with archive.open("wb") as out:
        pack_services(root, desc, environment="production", service="api", out=out)
    staging = tmp_path / "staging"
    staging.mkdir()
    manifest, trees = read_deploy_archive(archive, staging, max_bytes=MAX_BYTES)
    assert manifest.service_name == "api"
    assert list(trees) == ["api"]


def test_plain_archive_with_dot_prefixes_and_implicit_dirs(
    place: tuple[Path, Path, ArtifactStore],
) -> None:
    archive, staging, _ = place
    members = [regular("./services/web/deep/er/x.sh", b"#!/bin/sh\n", 0o775)]
    write_archive(archive, members, manifest_bytes())
    _, trees = read_deploy_archive(archive, staging, max_bytes=MAX_BYTES)
    script = trees["web"] / "deep" / "er" / "x.sh"
    assert script.stat().st_mode & 0o777 == 0o755


# --- digests and the store ------------------------------------------------------


def test_digest_covers_paths_exec_bits_contents_and_empty_dirs(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "f").write_text("one")
    base = ArtifactStore.digest_tree(tree)
    assert ArtifactStore.digest_tree(tree) == base
    changes: list[Callable[[], object]] = [
        lambda: (tree / "sub" / "f").chmod(0o755),
        lambda: (tree / "sub" / "f").write_text("two"),
        lambda: (tree / "sub" / "f").rename(tree / "sub" / "g"),
        lambda: (tree / "empty").mkdir(),
    ]
    seen = {base}
    for change in changes:
        change()
        digest = ArtifactStore.digest_tree(tree)
        assert digest not in seen
        seen.add(digest)
    (tree / "link").symlink_to("sub")
    with pytest.raises(ValueError, match="neither a regular file nor a directory"):
        ArtifactStore.digest_tree(tree)


def test_store_refuses_names_that_are_not_digests(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "artifacts")
    for bad in ("../etc", "A" * 64, "0" * 63, ""):
        with pytest.raises(ValueError, match="not a sha256 digest"):
            store.path(bad)


def test_built_marker_only_after_mark_built(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "artifacts")
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "Makefile").write_text("all:\n")
    digest, artifact_dir, created = store.put(tree)
    assert created
    assert not store.is_built(digest)
    store.mark_built(digest)
    assert store.is_built(digest)
    assert not (artifact_dir / ".compartment-built").exists()  # the tree stays the source's
    assert ArtifactStore.digest_tree(artifact_dir) == digest


# --- hostile archives ---------------------------------------------------------

HOSTILE: dict[str, tuple[list[Member], bytes | None, str]] = {
    "absolute": ([*GOOD, regular("/tmp/evil")], manifest_bytes(), "has an absolute name"),
    "dotdot": (
        [*GOOD, regular("services/web/../../evil")],
        manifest_bytes(),
        "has a '..' component",
    ),
    "symlink": (
        [*GOOD, special("services/web/l", tarfile.SYMTYPE, "/etc/passwd")],
        manifest_bytes(),
        "is a symlink (to '/etc/passwd')",
    ),
    "hardlink": (
        [*GOOD, special("services/web/h", tarfile.LNKTYPE, "services/web/a.txt")],
        manifest_bytes(),
        "is a hardlink",
    ),
    "char device": (
        [*GOOD, special("services/web/null", tarfile.CHRTYPE)],
        manifest_bytes(),
        "is a device",
    ),
    "block device": (
        [*GOOD, special("services/web/sda", tarfile.BLKTYPE)],
        manifest_bytes(),
        "is a device",
    ),
    "fifo": ([*GOOD, special("services/web/p", tarfile.FIFOTYPE)], manifest_bytes(), "is a fifo"),
    "outside services": (
        [*GOOD, regular("etc/passwd")],
        manifest_bytes(),
        "'etc/passwd' is outside the services' directories (services/web/)",
    ),
    "unknown service": (
        [*GOOD, regular("services/other/x")],
        manifest_bytes(),
        "'services/other/x' is outside the services' directories",
    ),
    "second manifest": (
        [*GOOD, regular("manifest.json")],
        manifest_bytes(),
        "'manifest.json' is outside the services' directories",
    ),
    "service root is a file": (
        [regular("services/web")],
        manifest_bytes(),
        "'services/web' must be a directory",
    ),
    "duplicate": (
        [*GOOD, regular("services/web/a.txt", b"again")],
        manifest_bytes(),
        "'services/web/a.txt' appears more than once",
    ),
    "file over directory": (
        [*GOOD, regular("services/web/b")],
        manifest_bytes(),
        "'services/web/b' cannot be unpacked",
    ),
    "no manifest": ([], None, "manifest.json is missing"),
    "manifest not first": (
        [*GOOD, regular("manifest.json", manifest_bytes())],
        None,
        "the first member must be manifest.json, found 'services/web'",
    ),
    "manifest not json": (GOOD, b"{nope", "member 'manifest.json' is invalid: JSON is malformed"),
    "manifest unknown key": (
        GOOD,
        b'{"projectName": "shop", "services": {"web": {"path": "web"}}, "extra": 1}',
        "member 'manifest.json' is invalid: Object contains unknown field `extra`",
    ),
    "manifest bad slug": (
        GOOD,
        b'{"projectName": "Shop!", "services": {"web": {"path": "web"}}}',
        "member 'manifest.json' is invalid: Expected `str` matching regex",
    ),
    "manifest no services": (
        GOOD,
        b'{"projectName": "shop", "services": {}}',
        "`$.services` is empty",
    ),
    "manifest serviceName unknown": (
        GOOD,
        manifest_bytes(service_name="api"),
        "serviceName 'api' is not one of its services",
    ),
    "service without directory": (
        GOOD,
        manifest_bytes("web", "api"),
        "service 'api' is in manifest.json but the archive has no services/api/ directory",
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_archives_are_refused_and_leave_nothing(
    case: str, place: tuple[Path, Path, ArtifactStore]
) -> None:
    archive, staging, store = place
    members, manifest, fragment = HOSTILE[case]
    write_archive(archive, members, manifest)
    with pytest.raises(ArchiveError) as caught:
        read_deploy_archive(archive, staging, max_bytes=MAX_BYTES)
    assert (caught.value.status, caught.value.code) == (400, "invalid_deploy_request")
    assert fragment in caught.value.message
    assert str(caught.value) == caught.value.message
    assert list(staging.iterdir()) == []
    assert list(store.root.iterdir()) == []


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"", "the archive is not a valid tar archive"),
        (b"PK\x03\x04 a zip file", "the archive is not gzip-compressed"),
        (gzip.compress(b"not a tar archive" * 100), "the archive is not a valid tar archive"),
        (gzip.compress(b"x" * 4096)[:-30], "the archive's gzip stream is damaged"),
    ],
    ids=["empty", "zip", "gzip-not-tar", "truncated-gzip"],
)
def test_not_a_gzipped_tar(
    content: bytes, fragment: str, place: tuple[Path, Path, ArtifactStore]
) -> None:
    archive, staging, _ = place
    archive.write_bytes(content)
    with pytest.raises(ArchiveError, match=fragment) as caught:
        read_deploy_archive(archive, staging, max_bytes=MAX_BYTES)
    assert caught.value.status == 400
    assert list(staging.iterdir()) == []


def test_uncompressed_tar_is_refused(place: tuple[Path, Path, ArtifactStore]) -> None:
    archive, staging, _ = place
    archive.write_bytes(tar_bytes(GOOD, manifest_bytes()))
    with pytest.raises(ArchiveError, match="not gzip-compressed"):
        read_deploy_archive(archive, staging, max_bytes=MAX_BYTES)


def test_too_many_members(place: tuple[Path, Path, ArtifactStore]) -> None:
    archive, staging, _ = place
    members = [regular(f"services/web/f{i}") for i in range(20)]
    write_archive(archive, [directory("services/web"), *members], manifest_bytes())
    with pytest.raises(ArchiveError, match="more than 10 members") as caught:
        read_deploy_archive(archive, staging, max_bytes=MAX_BYTES, max_members=10)
    assert caught.value.status == 400
    assert list(staging.iterdir()) == []
    assert artifacts.MAX_MEMBERS == 100_000


# --- size limits ----------------------------------------------------------------


@pytest.fixture
def peak_written(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Bytes in the staging dir at the moment a refused archive is cleaned up."""
    seen: list[int] = []
    original = artifacts._empty

    def measuring(directory: Path) -> None:
        seen.append(sum(p.stat().st_size for p in directory.rglob("*") if p.is_file()))
        original(directory)

    monkeypatch.setattr(artifacts, "_empty", measuring)
    return seen


def gzip_bomb(path: Path, member: str, size: int) -> None:
    """A small gzip whose tar holds one member of ``size`` zero bytes."""
    info = tarfile.TarInfo(member)
    info.size = size
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: gzip container
    with path.open("wb") as out:
        head, manifest = regular("manifest.json", manifest_bytes())
        assert manifest is not None
        padding = bytes(-len(manifest) % tarfile.BLOCKSIZE)
        out.write(compressor.compress(head.tobuf(tarfile.PAX_FORMAT) + manifest + padding))
        out.write(compressor.compress(info.tobuf(tarfile.PAX_FORMAT)))
        zeros = bytes(MiB)
        for _ in range(size // MiB):
            out.write(compressor.compress(zeros))
        out.write(compressor.compress(bytes(size % MiB + 1024)))
        out.write(compressor.flush())


def test_gzip_bomb_is_refused_with_413_before_writing(
    place: tuple[Path, Path, ArtifactStore], peak_written: list[int]
) -> None:
    archive, staging, _ = place
    gzip_bomb(archive, "services/web/zeros", 64 * MiB)
    assert archive.stat().st_size < 200 * 1024
    with pytest.raises(ArchiveError, match=r"larger than 1048576 bytes uncompressed") as caught:
        read_deploy_archive(archive, staging, max_bytes=MiB)
    assert (caught.value.status, caught.value.code) == (413, "payload_too_large")
    assert "services/web/zeros" in caught.value.message
    assert peak_written == [0]
    assert list(staging.iterdir()) == []


def test_many_files_over_the_limit_stop_at_the_limit(
    place: tuple[Path, Path, ArtifactStore], peak_written: list[int]
) -> None:
    archive, staging, _ = place
    chunk = b"z" * (100 * 1024)
    members = [regular(f"services/web/f{i:02}", chunk) for i in range(30)]
    write_archive(archive, [directory("services/web"), *members], manifest_bytes())
    with pytest.raises(ArchiveError) as caught:
        read_deploy_archive(archive, staging, max_bytes=MiB)
    assert caught.value.status == 413
    assert 0 < peak_written[0] <= MiB
    assert list(staging.iterdir()) == []


def test_huge_pax_header_is_bounded_too(place: tuple[Path, Path, ArtifactStore]) -> None:
    archive, staging, _ = place
    info, data = regular("services/web/a")
    info.pax_headers = {"comment": "x" * (3 * MiB)}
    write_archive(archive, [directory("services/web"), (info, data)], manifest_bytes())
    with pytest.raises(ArchiveError) as caught:
        read_deploy_archive(archive, staging, max_bytes=MiB)
    assert caught.value.status == 413
    assert list(staging.iterdir()) == []


def test_archive_within_the_limit_is_accepted(place: tuple[Path, Path, ArtifactStore]) -> None:
    archive, staging, _ = place
    write_archive(
        archive,
        [directory("services/web"), regular("services/web/big", b"b" * (MiB // 2))],
        manifest_bytes(),
    )
    _, trees = read_deploy_archive(archive, staging, max_bytes=MiB)
    assert (trees["web"] / "big").stat().st_size == MiB // 2


# --- hostile archives, generated ---------------------------------------------------

SAFE_NAME = st.text(alphabet="abcdefgh.-_", min_size=1, max_size=8).filter(
    lambda name: name not in (".", "..")
)


@st.composite
def hostile_member(draw: st.DrawFn) -> Member:
    """A member that must be refused; links and paths aim at the sentinel dir."""
    leaf = draw(SAFE_NAME)
    escape = draw(st.sampled_from(["../../../sentinel", "../../sentinel/x", "/tmp/sentinel"]))
    kind = draw(
        st.sampled_from(
            ["absolute", "dotdot", "symlink", "hardlink", "chr", "blk", "fifo", "outside"]
        )
    )
    if kind == "absolute":
        return regular(draw(st.sampled_from(["/", "//", "/services/web/"])) + leaf)
    if kind == "dotdot":
        # Not "/tmp/sentinel": after "services/web/" that is "services/web//tmp/sentinel",
        # a harmless name inside the service that is rightly accepted.
        climb = draw(st.sampled_from(["../../../sentinel", "../../sentinel/x"]))
        return regular(draw(st.sampled_from(["services/web/", "", "services/web/x/"])) + climb)
    if kind == "symlink":
        return special(f"services/web/{leaf}", tarfile.SYMTYPE, escape)
    if kind == "hardlink":
        return special(f"services/web/{leaf}", tarfile.LNKTYPE, escape)
    if kind == "outside":
        return regular(draw(st.sampled_from(["sentinel/", "services/", "../", "x/"])) + leaf)
    types = {"chr": tarfile.CHRTYPE, "blk": tarfile.BLKTYPE, "fifo": tarfile.FIFOTYPE}
    return special(f"services/web/{leaf}", types[kind])


@st.composite
def hostile_archive(draw: st.DrawFn) -> list[Member]:
    good = draw(st.lists(st.builds(lambda n: regular(f"services/web/{n}"), SAFE_NAME), max_size=4))
    bad = draw(st.lists(hostile_member(), min_size=1, max_size=4))
    members = draw(st.permutations([directory("services/web"), *good, *bad]))
    if draw(st.booleans()):
        # A file written "through" an earlier symlink member, if that were followed.
        links = [info.name for info, _ in bad if info.issym()]
        if links:
            members.append(regular(f"{links[0]}/pwned"))
    return members


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(hostile_archive())
def test_generated_hostile_archives_never_escape(members: list[Member]) -> None:
    with tempfile.TemporaryDirectory() as temp:
        base = Path(temp)
        staging = base / "a" / "b" / "staging"
        sentinel = base / "a" / "sentinel"
        for path in (staging, sentinel, base / "sentinel"):
            path.mkdir(parents=True)
        archive = write_archive(base / "upload.tar.gz", members, manifest_bytes())
        with pytest.raises(ArchiveError) as caught:
            read_deploy_archive(archive, staging, max_bytes=MAX_BYTES)
        assert caught.value.status == 400
        assert list(staging.iterdir()) == []
        assert list(sentinel.iterdir()) == []
        assert list((base / "sentinel").iterdir()) == []
        assert sorted(p.name for p in base.iterdir()) == ["a", "sentinel", "upload.tar.gz"]


# --- builds ------------------------------------------------------------------------


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def run_build_in(
    tmp_path: Path,
    artifact_dir: Path,
    command: str,
    log: Path,
    *,
    timeout: float = 10.0,
    env: dict[str, str] | None = None,
) -> tuple[bool, str]:
    """The server's build of ``command`` in ``artifact_dir``, with the server's spawner."""
    spec = ProcessSpec(
        "dep-1", "shop", "staging", "web", command, artifact_dir, log, None, env or {}
    )
    spawner = Spawner(str(tmp_path / "data"))
    return anyio.run(lambda: run_build(spawner, spec, timeout=timeout))


def build(tmp_path: Path, command: str, timeout: float = 10.0) -> tuple[bool, str, str]:
    work = tmp_path / "artifact"
    work.mkdir(exist_ok=True)
    log = tmp_path / "logs" / "build.log"
    ok, message = run_build_in(
        tmp_path, work, command, log, timeout=timeout, env={"GREETING": "hi"}
    )
    return ok, message, log.read_text()


def test_build_success_runs_in_the_artifact_dir(tmp_path: Path) -> None:
    ok, message, log = build(tmp_path, 'echo "$GREETING from $(pwd)"; touch built-here; echo e >&2')
    assert ok
    assert message.startswith("build finished in ")
    assert message.endswith(" s")
    assert (tmp_path / "artifact" / "built-here").exists()
    assert f"hi from {tmp_path / 'artifact'}" in log
    assert "e\n" in log
    assert log.startswith("$ echo")
    assert log.endswith(f"==> {message}\n")


def test_build_failure_reports_exit_code_and_appends_to_log(tmp_path: Path) -> None:
    assert build(tmp_path, "echo first")[0]
    ok, message, log = build(tmp_path, "echo broken; exit 2")
    assert (ok, message) == (False, "build command exited with code 2")
    assert log.index("first") < log.index("broken")
    assert log.endswith("==> build command exited with code 2\n")


def test_only_a_successful_build_marks_the_artifact_built(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path / "artifacts")
    tree = tmp_path / "tree"
    tree.mkdir()
    digest, artifact_dir, _ = store.put(tree)

    def build_in_artifact(command: str, timeout: float = 5) -> bool:
        log = tmp_path / "log"
        return run_build_in(tmp_path, artifact_dir, command, log, timeout=timeout)[0]

    assert not build_in_artifact("false")
    assert not store.is_built(digest)
    assert build_in_artifact("true")
    assert store.is_built(digest)
    assert (tmp_path / "artifacts" / f"{digest}.built").is_file()
    assert not build_in_artifact("exit 3")  # a failed rebuild takes the mark away
    assert not store.is_built(digest)
    assert build_in_artifact("true")
    assert not build_in_artifact("sleep 10", timeout=0.2)
    assert not store.is_built(digest)
    assert sorted(p.name for p in store.root.iterdir()) == [digest]


def test_build_timeout_kills_the_whole_group(tmp_path: Path) -> None:
    started = time.monotonic()
    ok, message, log = build(tmp_path, "sleep 60 & echo $! > child.pid; sleep 60", timeout=0.5)
    assert (ok, message) == (False, "build timed out after 0.5 s and was stopped")
    assert time.monotonic() - started < 5
    child = int((tmp_path / "artifact" / "child.pid").read_text())
    deadline = time.monotonic() + 2
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not alive(child)
    assert log.endswith(f"==> {message}\n")


def test_build_leaves_nothing_running_after_success(tmp_path: Path) -> None:
    ok, _, _ = build(tmp_path, "sleep 60 >/dev/null 2>&1 & echo $! > child.pid")
    assert ok
    child = int((tmp_path / "artifact" / "child.pid").read_text())
    deadline = time.monotonic() + 2
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not alive(child)


def test_build_that_cannot_start(tmp_path: Path) -> None:
    ok, message = run_build_in(tmp_path, tmp_path / "missing", "true", tmp_path / "log", timeout=5)
    assert not ok
    assert message.startswith("build command could not start")
