"""The deploy archive as the client packs it: contents, determinism, refusals."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import msgspec
import pytest

from compartment_cli.errors import UsageError
from compartment_cli.models.descriptor import (
    BuildConfig,
    DeployManifest,
    Descriptor,
    ServiceConfig,
)
from compartment_cli.workflows.pack import pack_services


def write(path: Path, text: str, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    write(root / "compartment.yml", "name: shop\n")
    write(root / "web" / "index.html", "<h1>shop</h1>\n")
    write(root / "web" / "bin" / "start", "#!/bin/sh\nexec serve\n", 0o755)
    write(root / "web" / "src" / "app.py", "print('hi')\n", 0o600)
    (root / "web" / "empty").mkdir()
    write(root / "web" / ".git" / "HEAD", "ref: refs/heads/main\n")
    write(root / "web" / "src" / "__pycache__" / "app.cpython-311.pyc", "x")
    write(root / "web" / "src" / "stale.pyc", "x")
    write(root / "web" / "node_modules" / "left-pad" / "index.js", "x")
    write(root / "web" / ".venv" / "pyvenv.cfg", "x")
    # What the platform leaves out by name is only version control: the rest is the
    # project's .gitignore's to say.
    write(root / "web" / ".gitignore", "__pycache__/\n*.pyc\nnode_modules/\n.venv/\n.gitignore\n")
    write(root / "api" / "main.py", "app = None\n")
    return root


def descriptor(**services: ServiceConfig) -> Descriptor:
    return Descriptor(
        name="shop",
        services=services
        or {
            "web": ServiceConfig(path="web", build=BuildConfig(command="make")),
            "api": ServiceConfig(path="./api", kind="api"),
        },
    )


def pack(project: Path, desc: Descriptor | None = None, service: str | None = None) -> bytes:
    out = io.BytesIO()
    pack_services(project, desc or descriptor(), environment="staging", service=service, out=out)
    return out.getvalue()


def members(data: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return tar.getmembers()


def read_member(data: bytes, name: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        source = tar.extractfile(name)
        assert source is not None
        return source.read()


def test_archive_holds_manifest_first_then_sorted_service_trees(project: Path) -> None:
    data = pack(project)
    names = [m.name for m in members(data)]
    assert names[0] == "manifest.json"
    assert names[1:] == sorted(names[1:])
    assert names[1:] == [
        "services/api",
        "services/api/main.py",
        "services/web",
        "services/web/bin",
        "services/web/bin/start",
        "services/web/empty",
        "services/web/index.html",
        "services/web/src",
        "services/web/src/app.py",
    ]
    manifest = msgspec.json.decode(read_member(data, "manifest.json"), type=DeployManifest)
    assert manifest.project_name == "shop"
    assert manifest.environment_name == "staging"
    assert manifest.service_name is None
    assert sorted(manifest.services) == ["api", "web"]
    assert manifest.services["web"].build == BuildConfig(command="make")
    assert read_member(data, "services/web/index.html") == b"<h1>shop</h1>\n"


def test_members_carry_no_times_owners_or_stray_mode_bits(project: Path) -> None:
    by_name = {m.name: m for m in members(pack(project))}
    for member in by_name.values():
        assert (member.mtime, member.uid, member.gid) == (0, 0, 0)
        assert (member.uname, member.gname) == ("", "")
        assert member.isfile() or member.isdir()
    assert by_name["services/web/bin/start"].mode == 0o755
    assert by_name["services/web/src/app.py"].mode == 0o644  # was 0600
    assert by_name["services/web/index.html"].mode == 0o644
    assert by_name["services/web/empty"].mode == 0o755


def test_same_tree_gives_same_bytes(project: Path) -> None:
    first = pack(project)
    assert pack(project) == first
    for path in project.rglob("*"):
        os.utime(path, (1_000_000, 1_000_000), follow_symlinks=False)
    (project / "web" / "index.html").chmod(0o664)
    assert pack(project) == first
    assert first[4:8] == b"\0\0\0\0"  # the gzip header's mtime
    assert not first[3] & 0x08  # and no file name in it
    write(project / "web" / "index.html", "<h1>changed</h1>\n")
    assert pack(project) != first


def test_one_service_only(project: Path) -> None:
    data = pack(project, service="api")
    assert [m.name for m in members(data)] == [
        "manifest.json",
        "services/api",
        "services/api/main.py",
    ]
    manifest = msgspec.json.decode(read_member(data, "manifest.json"), type=DeployManifest)
    assert manifest.service_name == "api"
    assert list(manifest.services) == ["api"]


def test_unknown_service_is_a_usage_error(project: Path) -> None:
    with pytest.raises(UsageError, match=r"service 'worker' is not in compartment.yml"):
        pack(project, service="worker")


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("../elsewhere", "is outside the project directory"),
        ("/etc", "is outside the project directory"),
        ("missing", "does not exist"),
        ("compartment.yml", "is not a directory"),
    ],
)
def test_bad_service_path_names_service_and_path(project: Path, path: str, fragment: str) -> None:
    (project.parent / "elsewhere").mkdir()
    with pytest.raises(UsageError, match=rf"service 'web': path '{path}' {fragment}"):
        pack(project, descriptor(web=ServiceConfig(path=path)))


def test_service_path_through_symlink_out_of_project_is_refused(project: Path) -> None:
    outside = project.parent / "outside"
    outside.mkdir()
    (project / "linked").symlink_to(outside)
    with pytest.raises(UsageError, match="is outside the project directory"):
        pack(project, descriptor(web=ServiceConfig(path="linked")))


def test_symlink_to_file_inside_service_is_stored_as_the_file(project: Path) -> None:
    (project / "web" / "start").symlink_to("bin/start")
    data = pack(project, service="web")
    member = {m.name: m for m in members(data)}["services/web/start"]
    assert member.isfile()
    assert member.mode == 0o755
    assert read_member(data, "services/web/start") == b"#!/bin/sh\nexec serve\n"


@pytest.mark.parametrize(
    ("target", "fragment"),
    [
        ("../../api/main.py", "points outside the service directory"),
        ("/etc/hostname", "points outside the service directory"),
        ("src", "does not point to a regular file"),
        ("nowhere", "does not point to a regular file"),
    ],
)
def test_other_symlinks_are_refused(project: Path, target: str, fragment: str) -> None:
    (project / "web" / "src" / "link").symlink_to(target)
    with pytest.raises(UsageError, match=rf"service 'web': symlink 'src/link' {fragment}"):
        pack(project, service="web")


def test_fifo_in_a_service_is_refused(project: Path) -> None:
    os.mkfifo(project / "web" / "pipe")
    with pytest.raises(UsageError, match="'pipe' is neither a file nor a directory"):
        pack(project, service="web")


# --- what is packed: the platform's source-archive rules ---------------------------------

# (case, files of the tree (path → text; "svc" is the service), the service's packed files)
GITIGNORE_CASES: list[tuple[str, dict[str, str], list[str]]] = [
    (
        "a root .gitignore applies below",
        {".gitignore": "*.log\n", "svc/a.log": "", "svc/b.txt": ""},
        ["b.txt"],
    ),
    (
        "a negation brings a file back",
        {".gitignore": "*.log\n!keep.log\n", "svc/a.log": "", "svc/keep.log": ""},
        ["keep.log"],
    ),
    (
        "the deepest .gitignore with a say decides",
        {
            ".gitignore": "*.log\n",
            "svc/sub/.gitignore": "!important.log\n",
            "svc/sub/important.log": "",
            "svc/sub/other.log": "",
        },
        ["sub/.gitignore", "sub/important.log"],
    ),
    (
        "a directory rule matches at any depth and its folder is not entered",
        {"svc/.gitignore": "build/\n", "svc/build/x": "", "svc/deep/build/y": "", "svc/deep/z": ""},
        [".gitignore", "deep/z"],
    ),
    (
        "an anchored rule matches only beside its .gitignore",
        {"svc/.gitignore": "/dist\n", "svc/dist/a": "", "svc/sub/dist/b": ""},
        [".gitignore", "sub/dist/b"],
    ),
    (
        "a file in an ignored folder cannot be brought back (git's rule)",
        {"svc/.gitignore": "logs/\n!logs/keep.txt\n", "svc/logs/keep.txt": "", "svc/ok": ""},
        [".gitignore", "ok"],
    ),
    (
        "a service whose folder is ignored is packed all the same",
        {".gitignore": "svc/\n*.tmp\n", "svc/main.py": "", "svc/x.tmp": ""},
        ["main.py"],
    ),
    (
        "secrets and build output go when ignored; node_modules stays when not; .git never",
        {
            ".gitignore": ".env\n/svc/out/\n",
            "svc/.env": "SECRET=1",
            "svc/out/app.js": "",
            "svc/node_modules/pad/index.js": "",
            "svc/.git/HEAD": "",
            "svc/.hg/x": "",
            "svc/index.js": "",
        },
        ["index.js", "node_modules/pad/index.js"],
    ),
    (
        "a .gitignore above the repository root does not apply",
        {"../.gitignore": "*\n", "svc/a": ""},
        ["a"],
    ),
    (
        "comments, blank lines and escaped characters are gitignore's",
        {
            "svc/.gitignore": "# a comment\n\n\\#hash\n*.o\n",
            "svc/#hash": "",
            "svc/m.o": "",
            "svc/m.c": "",
        },
        [".gitignore", "m.c"],
    ),
]


@pytest.mark.parametrize(
    ("files", "expected"),
    [case[1:] for case in GITIGNORE_CASES],
    ids=[case[0] for case in GITIGNORE_CASES],
)
def test_gitignore_rules_decide_what_is_packed(
    tmp_path: Path, files: dict[str, str], expected: list[str]
) -> None:
    repo = tmp_path / "outer" / "repo"
    (repo / ".git").mkdir(parents=True)
    write(repo / "compartment.yml", "name: shop\n")
    for name, text in files.items():
        write(repo / name, text)
    desc = Descriptor(name="shop", services={"svc": ServiceConfig(path="svc")})
    data = pack(repo, desc)
    packed = sorted(
        m.name.removeprefix("services/svc/")
        for m in members(data)
        if m.isfile() and m.name != "manifest.json"
    )
    assert packed == expected


def test_outside_git_the_project_directory_is_the_root(tmp_path: Path) -> None:
    write(tmp_path / ".gitignore", "*\n")  # above compartment.yml, and no git: not read
    root = tmp_path / "project"
    write(root / "compartment.yml", "name: shop\n")
    write(root / ".gitignore", "*.log\n")
    write(root / "svc" / "a.log", "")
    write(root / "svc" / "a.txt", "")
    desc = Descriptor(name="shop", services={"svc": ServiceConfig(path="svc")})
    names = [m.name for m in members(pack(root, desc)) if m.isfile()]
    assert names == ["manifest.json", "services/svc/a.txt"]


def test_stats_count_what_was_packed_and_left_out(tmp_path: Path) -> None:
    root = tmp_path / "project"
    (root / ".git").mkdir(parents=True)
    write(root / "compartment.yml", "name: shop\n")
    write(root / ".gitignore", ".env\nnode_modules/\n")
    write(root / "svc" / "main.py", "12345")
    write(root / "svc" / "lib" / "util.py", "123")
    write(root / "svc" / ".env", "SECRET=1")
    write(root / "svc" / "node_modules" / "x.js", "")
    write(root / "svc" / ".git" / "HEAD", "")
    desc = Descriptor(name="shop", services={"svc": ServiceConfig(path="svc")})
    stats = pack_services(root, desc, environment="e", service=None, out=io.BytesIO())
    assert (stats.files, stats.bytes) == (2, 8)
    assert sorted(stats.left_out) == [
        ("svc/.env", ".gitignore"),
        ("svc/.git", "version control"),
        ("svc/node_modules", ".gitignore"),
    ]
    assert stats.summary() == (
        "packed 2 files, 8 bytes; left out 3 paths (2 by .gitignore, 1 by version control)"
    )


def test_a_missing_service_path_names_its_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "compartment.yml", "name: shop\nservices:\n  web:\n    path: nowhere\n")
    desc = Descriptor(name="shop", services={"web": ServiceConfig(path="nowhere")})
    with pytest.raises(UsageError) as info:
        pack(tmp_path, desc)
    assert str(info.value).startswith(
        "compartment.yml:4: service 'web': path 'nowhere' does not exist"
    )
