"""compartment.yml: finding it, loading it, and reporting every problem with its line."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from compartment_cli.errors import ExitCode, UsageError
from compartment_cli.models.descriptor import (
    BuildConfig,
    BuildPackages,
    ConnectionConfig,
    Descriptor,
    ReadinessConfig,
    ReleaseConfig,
    ResourceConfig,
    RestartConfig,
    RunConfig,
    ServiceConfig,
)
from compartment_cli.project import (
    MAX_FILE_BYTES,
    NOT_FOUND_MESSAGE,
    PROJECT_FILE,
    Problem,
    ProjectFileError,
    find_project_file,
    load_project_file,
)
from tests.support import COMPARTMENT, clean_environ

FULL = """\
# The shop.
name: shop
services:
  web: .
  api:
    path: ./api
    kind: api
    accessMode: public
    ports: [8080]
    build:
      command: make build
      env: [NODE_ENV, PORT]
      include: [shared/, README.md]
      packages: {build: [curl]}
      strategy: railpack
    run:
      command: ./serve --port 8080
      restart: {policy: on-failure, maxRetries: 3}
    release:
      command: ./migrate
    readiness:
      type: http
      path: healthz
      timeoutMs: 5000
    connections:
      db: {env: {DATABASE_URL: url}}
resources:
  db: {preset: postgres}
"""


def write(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / PROJECT_FILE
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def problems_of(tmp_path: Path, text: str | bytes) -> list[tuple[int | None, str, str]]:
    with pytest.raises(ProjectFileError) as info:
        load_project_file(write(tmp_path, text))
    return [(p.line, p.key_path, p.message) for p in info.value.problems]


def only_problem(tmp_path: Path, text: str | bytes) -> tuple[int | None, str, str]:
    problems = problems_of(tmp_path, text)
    assert len(problems) == 1, problems
    return problems[0]


# --- valid files ---------------------------------------------------------------


def test_shorthand_service_is_a_path(tmp_path: Path) -> None:
    descriptor = load_project_file(write(tmp_path, "name: shop\nservices:\n  web: .\n"))
    assert descriptor == Descriptor(name="shop", services={"web": ServiceConfig(path=".")})


def test_full_object_maps_camel_case_keys_onto_the_model(tmp_path: Path) -> None:
    descriptor = load_project_file(write(tmp_path, FULL))
    assert descriptor.name == "shop"
    assert list(descriptor.services) == ["web", "api"]
    api = descriptor.services["api"]
    assert api == ServiceConfig(
        path="./api",
        kind="api",
        access_mode="public",
        ports=[8080],
        build=BuildConfig(
            command="make build",
            env=["NODE_ENV", "PORT"],
            include=["shared/", "README.md"],
            packages=BuildPackages(build=["curl"]),
            strategy="railpack",
        ),
        run=RunConfig(
            command="./serve --port 8080", restart=RestartConfig(policy="on-failure", max_retries=3)
        ),
        release=ReleaseConfig(command="./migrate"),
        readiness=ReadinessConfig(type="http", path="healthz", timeout_ms=5000),
        connections={"db": ConnectionConfig(env={"DATABASE_URL": "url"})},
    )
    assert api.readiness is not None
    assert api.readiness.url_path == "/healthz"
    assert descriptor.resources == {"db": ResourceConfig(preset="postgres")}


def test_readiness_defaults_and_limits(tmp_path: Path) -> None:
    text = (
        "name: a\nservices:\n"
        "  x: {path: ., readiness: {type: http}}\n"
        "  y: {path: ., readiness: {type: http, timeoutMs: 300000}}\n"
    )
    services = load_project_file(write(tmp_path, text)).services
    assert services["x"].readiness == ReadinessConfig()
    assert services["y"].readiness == ReadinessConfig(timeout_ms=300_000)


def test_release_is_accepted_and_carried(tmp_path: Path) -> None:
    text = "name: a\nservices:\n  x:\n    path: .\n    release: {command: migrate}\n"
    service = load_project_file(write(tmp_path, text)).services["x"]
    assert service == ServiceConfig(path=".", release=ReleaseConfig(command="migrate"))


def test_merge_keys_and_aliases_are_followed(tmp_path: Path) -> None:
    text = """\
name: a
services:
  x: &base {path: ., kind: api}
  y:
    <<: *base
    kind: worker
"""
    services = load_project_file(write(tmp_path, text)).services
    assert services["x"] == ServiceConfig(path=".", kind="api")
    assert services["y"] == ServiceConfig(path=".", kind="worker")


def test_dates_stay_text_and_numbers_are_numbers(tmp_path: Path) -> None:
    text = "name: a\nservices: {x: 2024-01-01}\n"
    text += "resources:\n  r:\n    image: x\n    env: {D: 2024-01-01}\n    ports: [0x10]\n"
    text += "    volumes: {f: 1.5, n: ~, b: true}\n"
    descriptor = load_project_file(write(tmp_path, text))
    assert descriptor.services["x"].path == "2024-01-01"
    resource = descriptor.resources["r"]
    assert resource.env == {"D": "2024-01-01"}
    assert resource.ports == [16]
    assert resource.volumes == {"f": 1.5, "n": None, "b": True}


def test_byte_order_mark_is_ignored(tmp_path: Path) -> None:
    path = write(tmp_path, b"\xef\xbb\xbfname: a\nservices: {x: .}\n")
    assert load_project_file(path).name == "a"


# --- one broken rule at a time: the exact line ------------------------------------


# A service with its path; whatever follows starts at line 5.
X = "name: a\nservices:\n  x:\n    path: .\n"

BROKEN = [
    # top level
    ("services: {x: .}\n", (1, "name", "is required")),
    ("name: a\n", (1, "services", "is required")),
    ("# c\n\nname: a\nservices: {x: .}\nextra: 1\n", (5, "extra", "is not a known key")),
    ("name: a\nservices: {x: .}\nresource: {}\n", (3, "resource", "did you mean resources?")),
    ("name: Shop\nservices: {x: .}\n", (1, "name", "is not a project slug")),
    ("name: 1shop\nservices: {x: .}\n", (1, "name", "is not a project slug")),
    ("name: " + "a" * 64 + "\nservices: {x: .}\n", (1, "name", "is not a project slug")),
    ("name: create\nservices: {x: .}\n", (1, "name", "is reserved")),
    ("name: 12\nservices: {x: .}\n", (1, "name", "must be a string, not a number (12)")),
    ("name: a\nservices: {}\n", (2, "services", "must have at least one service")),
    ("name: a\nservices:\n", (2, "services", "must be a mapping, not empty (null)")),
    ("name: a\nservices:\n  - web\n", (2, "services", "must be a mapping, not a list")),
    ("name: a\nservices: {x: .}\nresources: [a]\n", (3, "resources", "must be a mapping")),
    # services
    ("name: a\nservices:\n  Web: .\n", (3, "services.Web", "is not a valid service name")),
    ("name: a\nservices:\n  -x: .\n", (3, "services.-x", "is not a valid service name")),
    ("name: a\nservices:\n  x: 5\n", (3, "services.x", "must be a path string or a mapping")),
    ("name: a\nservices:\n  x:\n", (3, "services.x", "not empty (null)")),
    ("name: a\nservices:\n  x: ''\n", (3, "services.x", "must not be empty")),
    ("name: a\nservices:\n  x:\n    kind: api\n", (3, "services.x.path", "is required")),
    (X + "    kind: lambda\n", (5, "services.x.kind", "one of")),
    (X + "    port: 80\n", (5, "services.x.port", "known key")),
    ("name: a\nservices:\n  x:\n    path: [a]\n", (4, "services.x.path", "a path string")),
    (X + "    accessMode: 1\n", (5, "services.x.accessMode", "one of authenticated, public")),
    (X + "    accessMode: open\n", (5, "services.x.accessMode", "one of authenticated, public")),
    (X + "    release: go\n", (5, "services.x.release", "must be a mapping, not a string")),
    (X + "    connections: db\n", (5, "services.x.connections", "must be a mapping")),
    # run
    (X + "    run: {}\n", (5, "services.x.run", "at least one key")),
    (X + "    run: go\n", (5, "services.x.run", "must be a mapping")),
    (
        X + "    run:\n      command: [a]\n",
        (6, "services.x.run.command", "must be a string, not a list"),
    ),
    (X + "    run:\n      cmd: a\n", (6, "services.x.run.cmd", "did you mean command?")),
    # build
    (
        X + "    build:\n      strategy: nix\n",
        (6, "services.x.build.strategy", "auto, dockerfile, railpack"),
    ),
    (
        X + "    build:\n      env:\n        - 8080\n",
        (7, "services.x.build.env[0]", 'quote it ("8080")'),
    ),
    (X + "    build:\n      env: {A: b}\n", (6, "services.x.build.env", "must be a list")),
    (
        X + "    build:\n      include:\n        - ok\n        - {a: 1}\n",
        (8, "services.x.build.include[1]", "must be a string"),
    ),
    (
        X + "    build:\n      packages: curl\n",
        (6, "services.x.build.packages", "must be a mapping"),
    ),
    (
        X + "    build:\n      outputDirectory: true\n",
        (6, "services.x.build.outputDirectory", "a boolean (true)"),
    ),
    (
        X + "    build:\n      output_directory: d\n",
        (6, "services.x.build.output_directory", "did you mean outputDirectory?"),
    ),
    # readiness
    (X + "    readiness: {path: /}\n", (5, "services.x.readiness.type", "is required")),
    (X + "    readiness: {type: tcp}\n", (5, "services.x.readiness.type", "must be one of http")),
    (
        X + "    readiness:\n      type: http\n      path: ''\n",
        (7, "services.x.readiness.path", "must not be empty"),
    ),
    (
        X + "    readiness:\n      type: http\n      timeoutMs: 300001\n",
        (7, "services.x.readiness.timeoutMs", "must be at most 300000"),
    ),
    (
        X + "    readiness:\n      type: http\n      timeoutMs: 0\n",
        (7, "services.x.readiness.timeoutMs", "greater than 0"),
    ),
    (
        X + "    readiness:\n      type: http\n      timeoutMs: -5\n",
        (7, "services.x.readiness.timeoutMs", "greater than 0"),
    ),
    (
        X + "    readiness:\n      type: http\n      timeoutMs: true\n",
        (7, "services.x.readiness.timeoutMs", "not a boolean"),
    ),
    (
        X + "    readiness:\n      type: http\n      timeoutMs: 1.5\n",
        (7, "services.x.readiness.timeoutMs", "whole number"),
    ),
    (
        X + "    readiness:\n      type: http\n      timeoutMs: '100'\n",
        (7, "services.x.readiness.timeoutMs", "not a string"),
    ),
    (
        X + "    readiness:\n      type: http\n      timeout_ms: 100\n",
        (7, "services.x.readiness.timeout_ms", "did you mean timeoutMs?"),
    ),
    # the document itself
    ("- a\n- b\n", (1, "", "must be a mapping with name and services, not a list")),
    ("just text\n", (1, "", "must be a mapping with name and services, not a string")),
    ("name: a\nname: b\nservices: {x: .}\n", (2, "name", "duplicate key (first at line 1)")),
    (
        "name: a\nservices:\n  x: .\n  y: .\n  x: ./x\n",
        (5, "services.x", "duplicate key (first at line 3)"),
    ),
    ("name: a\nservices: {x: .\n", (2, "", "YAML syntax error: the '{' here is never closed")),
    ("name: a\nservices:\n  x: .\n   y: .\n", (4, "", "YAML syntax error")),
    ("name: a\nservices: {x: .}\n---\nname: b\n", (3, "", "expected a single document")),
    ("name: a\nservices: {x: *nope}\n", (2, "", "undefined alias")),
    ('name: a\nservices:\n  x: "\x00"\n', (3, "", "character YAML does not allow")),
    ("name: a\nservices:\n  ? [x]\n  : .\n", (3, "services", "a key must be a string, not a list")),
]


@pytest.mark.parametrize(("text", "expected"), BROKEN, ids=[e[1][1] or e[1][2] for e in BROKEN])
def test_each_rule_reports_its_line(
    tmp_path: Path, text: str, expected: tuple[int, str, str]
) -> None:
    line, key_path, message = only_problem(tmp_path, text)
    assert (line, key_path) == expected[:2]
    assert expected[2] in message


@pytest.mark.parametrize(
    "tag_text",
    [
        "!!python/object/apply:os.system [echo pwned]",
        "!!python/name:os.system",
        "!custom .",
        "!!binary aGk=",
        "!!set {a, b}",
        "!!omap [a: 1]",
        "!!timestamp 2024-01-01",
        "!<tag:example.com,2024:thing> x",
    ],
)
def test_tags_are_refused_at_their_line(tmp_path: Path, tag_text: str) -> None:
    line, key_path, message = only_problem(tmp_path, f"name: a\nservices:\n  x: {tag_text}\n")
    assert (line, key_path) == (3, "services.x")
    assert "is not allowed" in message


@pytest.mark.parametrize(
    "text",
    [
        "name: !!set {a}\nservices: {x: .}\n",
        "name: a\nservices: {x: {path: ., kind: !!set {a}}}\n",
        "name: a\nservices: {x: {path: ., readiness: {type: http, timeoutMs: !!set {a}}}}\n",
    ],
)
def test_a_refused_tag_is_reported_once(tmp_path: Path, text: str) -> None:
    [(_, _, message)] = problems_of(tmp_path, text)
    assert "!!set is not allowed" in message


def test_tag_on_a_key_is_refused(tmp_path: Path) -> None:
    text = "name: a\nservices:\n  x: .\nresources:\n  !!python/name:os.system : 1\n"
    line, _, message = only_problem(tmp_path, text)
    assert line == 5
    assert "!!python/name:os.system" in message


def test_core_tags_are_allowed(tmp_path: Path) -> None:
    text = "name: !!str a\nservices: !!map {x: !!str ., y: {path: ., ports: [!!int '7']}}\n"
    descriptor = load_project_file(write(tmp_path, text))
    assert descriptor.services["y"].ports == [7]


def test_several_problems_are_all_reported_in_line_order(tmp_path: Path) -> None:
    text = """\
name: Shop
services:
  api:
    kind: lambda
    readiness:
      type: http
      timeoutMs: 400000
  Bad: .
extra: true
"""
    problems = problems_of(tmp_path, text)
    assert [(line, key_path) for line, key_path, _ in problems] == [
        (1, "name"),
        (3, "services.api.path"),
        (4, "services.api.kind"),
        (7, "services.api.readiness.timeoutMs"),
        (8, "services.Bad"),
        (9, "extra"),
    ]
    assert [message for _, _, message in problems][1:4] == [
        "is required",
        'must be one of api, cron, job, static, web, worker, not "lambda"',
        "must be at most 300000, not 400000",
    ]


def test_message_has_one_line_per_problem_with_file_and_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    text = "name: a\nservices:\n  api:\n    path: .\n    readiness: {type: http, timeoutMs: 1}\n"
    text += "    kind: nope\n"
    write(tmp_path, text)
    with pytest.raises(ProjectFileError) as info:
        load_project_file(Path(PROJECT_FILE))
    error = info.value
    assert error.message.splitlines() == [
        "compartment.yml:6: services.api.kind: must be one of api, cron, job, static, web, "
        'worker, not "nope"',
    ]
    assert str(error) == error.message
    assert isinstance(error, UsageError)
    assert error.exit_code is ExitCode.USAGE
    assert int(error.exit_code) == 2
    assert error.code == "invalid_project_file"
    assert error.path == Path(PROJECT_FILE)


def test_message_uses_the_path_outside_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    path = write(tmp_path, "name: a\n")
    with pytest.raises(ProjectFileError) as info:
        load_project_file(path)
    assert info.value.message == f"{path}:1: services: is required"


def test_problem_render_without_line_or_key() -> None:
    assert Problem(None, "", "the file is empty").render("c.yml") == "c.yml: the file is empty"
    assert Problem(3, "a.b", "bad").render("c.yml") == "c.yml:3: a.b: bad"


# --- files that are not YAML at all ------------------------------------------------


@pytest.mark.parametrize("text", ["", "\n\n", "# nothing here\n", "---\n...\n"])
def test_empty_file(tmp_path: Path, text: str) -> None:
    assert only_problem(tmp_path, text) == (
        None,
        "",
        "the file is empty; it needs name and services",
    )


def test_not_utf8_reports_the_line(tmp_path: Path) -> None:
    line, _, message = only_problem(tmp_path, b"name: a\nservices:\n  x: caf\xe9\n")
    assert line == 3
    assert "not valid UTF-8" in message


def test_unreadable_file(tmp_path: Path) -> None:
    (tmp_path / PROJECT_FILE).mkdir()
    with pytest.raises(ProjectFileError) as info:
        load_project_file(tmp_path / PROJECT_FILE)
    [problem] = info.value.problems
    assert problem.line is None
    assert problem.message.startswith("cannot be read")


def test_missing_file_is_a_project_file_error(tmp_path: Path) -> None:
    with pytest.raises(ProjectFileError, match="cannot be read"):
        load_project_file(tmp_path / PROJECT_FILE)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads anything")
def test_permission_denied(tmp_path: Path) -> None:
    path = write(tmp_path, "name: a\nservices: {x: .}\n")
    path.chmod(0)
    try:
        with pytest.raises(ProjectFileError, match="Permission denied"):
            load_project_file(path)
    finally:
        path.chmod(0o644)


def test_file_size_is_capped(tmp_path: Path) -> None:
    text = "name: a\nservices: {x: .}\n" + "# padding\n" * (MAX_FILE_BYTES // 10 + 1)
    assert only_problem(tmp_path, text) == (None, "", "is larger than 1024 KiB")


def test_alias_bomb_is_stopped(tmp_path: Path) -> None:
    lines = ["name: a", "services: {x: .}", "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    lines += ["resources: {r: {image: x, volumes: {bomb: *a8}}}"]
    problems = problems_of(tmp_path, "\n".join(lines) + "\n")
    assert any("aliases expand to more than" in message for _, _, message in problems)


def test_self_referencing_alias(tmp_path: Path) -> None:
    text = "name: a\nservices: {x: .}\nresources: {r: {image: x, volumes: &v {loop: *v}}}\n"
    assert only_problem(tmp_path, text) == (
        3,
        "resources.r.volumes.loop",
        "refers to itself through an alias",
    )


def test_mapping_that_merges_itself(tmp_path: Path) -> None:
    text = "name: a\nservices:\n  x: &x {path: ., <<: *x}\n"
    assert only_problem(tmp_path, text) == (3, "services.x", "merges itself through an alias")


def test_deep_nesting_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    text = "name: a\nservices: {x: .}\nresources: {a: " + "[" * 5000 + "]" * 5000 + "}\n"
    line, _, message = only_problem(tmp_path, text)
    assert line == 3
    assert message == "is nested more than 64 levels deep"


# --- finding the file ----------------------------------------------------------------


def test_find_in_start_directory(tmp_path: Path) -> None:
    path = write(tmp_path, "name: a\n")
    assert find_project_file(tmp_path) == path


def test_find_walks_up_to_the_git_root(tmp_path: Path) -> None:
    (tmp_path / "repo" / ".git").mkdir(parents=True)
    path = write(tmp_path / "repo", "name: a\n")
    deep = tmp_path / "repo" / "src" / "pkg"
    deep.mkdir(parents=True)
    assert find_project_file(deep) == path


def test_find_stops_at_the_git_root(tmp_path: Path) -> None:
    write(tmp_path, "name: outside\n")  # above the repository: not ours
    (tmp_path / "repo" / ".git").mkdir(parents=True)
    deep = tmp_path / "repo" / "src"
    deep.mkdir()
    assert find_project_file(deep) is None


def test_git_file_marks_a_root_too(tmp_path: Path) -> None:
    write(tmp_path, "name: outside\n")
    (tmp_path / "worktree").mkdir()
    (tmp_path / "worktree" / ".git").write_text("gitdir: /elsewhere\n")
    assert find_project_file(tmp_path / "worktree") is None


def test_find_outside_git_walks_further_up(tmp_path: Path) -> None:
    path = write(tmp_path, "name: a\n")
    deep = tmp_path / "a" / "b" / "c"
    deep.mkdir(parents=True)
    assert find_project_file(deep) == path


def test_find_from_a_relative_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "name: a\n")
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path)
    assert find_project_file(Path("sub")) == path


def test_not_found_message_is_the_official_one() -> None:
    assert NOT_FOUND_MESSAGE == (
        "compartment.yml was not found in the current directory. "
        "Pass --project <slug> or run inside a compartment repo."
    )


# --- properties: a Descriptor or a ProjectFileError with lines, nothing else ----------

PROPERTY_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def check_outcome(path: Path, data: bytes) -> None:
    """Loading gives a Descriptor, or a ProjectFileError whose every problem has a line."""
    path.write_bytes(data)
    n_lines = data.count(b"\n") + 1
    error: ProjectFileError | None = None
    try:
        descriptor = load_project_file(path)
    except ProjectFileError as raised:
        error = raised
    if error is None:
        assert isinstance(descriptor, Descriptor)
        assert descriptor.services
        return
    assert error.problems
    for problem in error.problems:
        if problem.line is None:
            assert problem.key_path == ""
            assert problem.message.startswith(("the file is empty", "is larger than"))
        else:
            assert 1 <= problem.line <= n_lines + 1, problem
    assert len(error.message.splitlines()) == min(len(error.problems), 101)


YAML_CHARS = st.sampled_from(
    [*"abcxyz019 -:_.,[]{}#&*!|>'\"%@`?~<\n\t", "name", "services", "\u00e9", "\x00"]
)


@PROPERTY_SETTINGS
@given(
    st.one_of(
        st.lists(YAML_CHARS, max_size=80).map("".join).map(str.encode),
        st.text(max_size=60).map(str.encode),
        st.binary(max_size=60),
    )
)
def test_arbitrary_text(tmp_path: Path, data: bytes) -> None:
    check_outcome(tmp_path / PROJECT_FILE, data)


KEYS = st.sampled_from(
    [
        "name",
        "services",
        "resources",
        "path",
        "kind",
        "build",
        "run",
        "readiness",
        "type",
        "timeoutMs",
        "command",
        "env",
        "include",
        "strategy",
        "web",
        "api",
        "Bad",
        "<<",
    ]
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-10, 400_000),
    st.floats(allow_nan=False),
    st.sampled_from(["http", "/", ".", "api", "dockerfile", "", "create", "a-b"]),
    st.text(max_size=8),
)
DATA = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=5)),
    max_leaves=20,
)


@PROPERTY_SETTINGS
@given(st.dictionaries(KEYS, DATA, max_size=4))
def test_arbitrary_documents(tmp_path: Path, document: dict[str, object]) -> None:
    import io

    stream = io.StringIO()
    YAML(typ="safe", pure=True).dump(document, stream)
    check_outcome(tmp_path / PROJECT_FILE, stream.getvalue().encode())


TOKENS = st.sampled_from(
    [
        "",
        "~",
        "true",
        "-1",
        "0",
        "300001",
        "1e9",
        "0x1F",
        "[a, b]",
        "{}",
        "{a: 1}",
        "!!python/object/apply:os.system [ls]",
        "!x y",
        "&a z",
        "*a",
        "'unterminated",
        '"esc\\q"',
        "<<: *a",
        "- item",
        "|\n  block",
        "%YAML 1.1",
        "---",
        "\t",
    ]
)
MUTATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("delete"), st.integers(0, 40)),
        st.tuples(st.just("duplicate"), st.integers(0, 40)),
        st.tuples(st.just("swap"), st.integers(0, 40), st.integers(0, 40)),
        st.tuples(st.just("value"), st.integers(0, 40), TOKENS),
        st.tuples(st.just("insert"), st.integers(0, 40), TOKENS),
        st.tuples(st.just("indent"), st.integers(0, 40), st.integers(-4, 4)),
        st.tuples(st.just("chars"), st.integers(0, 2000), st.text(max_size=4)),
    ),
    min_size=1,
    max_size=4,
)


def mutate(text: str, mutations: list[tuple[object, ...]]) -> str:
    lines = text.splitlines()
    for op, *args in mutations:
        if not lines:
            break
        i = int(args[0]) % len(lines)  # type: ignore[call-overload]
        if op == "delete":
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, lines[i])
        elif op == "swap":
            j = int(args[1]) % len(lines)  # type: ignore[call-overload]
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "value":
            key = lines[i].split(":", 1)[0]
            lines[i] = f"{key}: {args[1]}"
        elif op == "insert":
            indent = len(lines[i]) - len(lines[i].lstrip())
            lines.insert(i, " " * indent + str(args[1]))
        elif op == "indent":
            shift = int(args[1])  # type: ignore[call-overload]
            lines[i] = " " * shift + lines[i] if shift > 0 else lines[i][-shift:]
        else:
            joined = "\n".join(lines)
            at = int(args[0]) % (len(joined) + 1)  # type: ignore[call-overload]
            lines = (joined[:at] + str(args[1]) + joined[at:]).splitlines()
    return "\n".join(lines) + "\n"


@PROPERTY_SETTINGS
@given(MUTATIONS)
def test_mutations_of_a_valid_file(tmp_path: Path, mutations: list[tuple[object, ...]]) -> None:
    check_outcome(tmp_path / PROJECT_FILE, mutate(FULL, mutations).encode())


# --- what a user sees (the real executable) -------------------------------------------


def run_compartment(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = clean_environ(
        COMPARTMENT_CLI_CONFIG_DIR=str(cwd / ".config"),
        COMPARTMENT_API_URL="http://127.0.0.1:9",
        COMPARTMENT_TOKEN="t",
        NO_COLOR="1",
    )
    return subprocess.run(
        [COMPARTMENT, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


def test_every_problem_line_is_an_error_line(tmp_path: Path) -> None:
    write(tmp_path, "name: Shop\nservices:\n  web:\n    kind: nope\n")
    completed = run_compartment(tmp_path, "promote", "--from", "a", "--to", "b")
    assert completed.returncode == 2
    lines = completed.stderr.splitlines()
    assert lines == [
        'error: compartment.yml:1: name: "Shop" is not a project slug: lowercase letters, '
        "digits and '-', starting with a letter, at most 63 characters",
        "error: compartment.yml:3: services.web.path: is required",
        "error: compartment.yml:4: services.web.kind: must be one of api, cron, job, static, "
        'web, worker, not "nope"',
    ]


def test_a_yaml_syntax_error_is_told_in_words_at_its_line(tmp_path: Path) -> None:
    write(tmp_path, "name: shop\nservices:\n  web: .\n   api: .\n")
    completed = run_compartment(tmp_path, "promote", "--from", "a", "--to", "b")
    assert completed.returncode == 2
    assert completed.stderr == (
        "error: compartment.yml:4: YAML syntax error: a ':' where no key may start: check this "
        "line's indentation against the line above, or quote a value that contains ': '\n"
    )


def test_a_missing_service_path_is_reported_at_its_line(tmp_path: Path) -> None:
    write(tmp_path, "name: shop\nservices:\n  api: .\n  web:\n    path: nowhere\n")
    completed = run_compartment(tmp_path, "deploy")
    assert completed.returncode == 2
    assert completed.stderr.startswith(
        "error: compartment.yml:5: service 'web': path 'nowhere' does not exist"
    )
