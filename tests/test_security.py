"""Security checks, each a test, against the real control plane and the installed CLI.

- The token is nowhere but in its two homes (``<data dir>/token`` and the CLI
  config file): not in the stdout or stderr of any command at any verbosity
  (``--verbose``, ``--output json``, ``COMPARTMENT_DEBUG=1``), not in the
  server's log, not in a deployment's log or environment, not in the state
  database, not in error messages: a failing promotion, a wrong token, an
  unreachable server, an unexpected error with a traceback.
- The files the control plane writes are private: the config file 0600 in a
  0700 directory, the data dir 0700 and the token 0600, even under umask 000.
- The API and every route listen on loopback only, unless ``--host`` says
  otherwise, and then only the API moves.
- Hostile archives (hypothesis-generated: absolute paths, ``..``, links,
  devices, fifos, broken or deeply nested manifests) posted to the real
  ``POST /v1/deployments`` are refused with 400 and write nothing.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.server.test_artifacts import (
    Member,
    directory,
    hostile_archive,
    manifest_bytes,
    regular,
    tar_bytes,
)
from tests.support import (
    COMPARTMENT,
    EXAMPLE,
    ControlPlane,
    clean_environ,
    cli_json,
    free_port,
    http_get,
    listening_sockets,
    plane_state,
)

PROJECT = "hello"

# `web` refuses to start in the environment `broken`, after saying why (so a
# promotion there fails); `env` first puts each deployment's whole environment
# into its log, where a leaked token would show.
COMPARTMENT_YML = """\
name: hello
services:
  web:
    path: web
    run:
      command: >-
        env;
        if [ "$COMPARTMENT_ENVIRONMENT" = broken ];
        then echo "web refuses $COMPARTMENT_ENVIRONMENT" >&2; exit 3; fi;
        exec python3 server.py
    readiness: {type: http, path: /healthz, timeoutMs: 15000}
  api:
    path: api
    kind: api
    run:
      command: >-
        env;
        exec python3 server.py
    readiness: {type: http, path: /healthz, timeoutMs: 15000}
"""


@pytest.fixture
def hello(tmp_path: Path) -> Path:
    """examples/hello with the compartment.yml above, in its own git root."""
    target = tmp_path / PROJECT
    shutil.copytree(EXAMPLE, target)
    (target / "compartment.yml").write_text(COMPARTMENT_YML)
    (target / ".git").mkdir()
    return target


def cli(
    plane: ControlPlane, *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [COMPARTMENT, *args],
        cwd=cwd,
        env={**plane.env, "COMPARTMENT_DEBUG": "1", **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


HOMES = ("data/token", "config/config.json")


def assert_confined(plane: ControlPlane, secret: str, *outputs: str, homes: bool = True) -> None:
    """``secret`` is in no output and in no file of the plane but its homes.

    Every file under the plane's root is read as bytes: the server's log, the
    deployment logs, the state database (and its WAL), artifacts, uploads.
    """
    for output in outputs:
        assert secret not in output, output
    needle = secret.encode()
    found = []
    for path in plane.root.rglob("*"):
        relative = path.relative_to(plane.root).as_posix()
        if not path.is_file() or (homes and relative in HOMES):
            continue
        if needle in path.read_bytes():
            found.append(relative)
    assert found == []


def outputs_of(*runs: subprocess.CompletedProcess[str]) -> list[str]:
    return [text for run in runs for text in (run.stdout, run.stderr)]


# --- the token stays home ------------------------------------------------------------------


def test_token_in_no_output_of_any_command_at_any_verbosity(
    control_plane: ControlPlane, hello: Path
) -> None:
    """deploy, promote, list, watch: text, --verbose, --output json, COMPARTMENT_DEBUG=1."""
    plane = control_plane
    runs = []
    for flags in ([], ["--verbose"], ["--verbose", "--output", "json"]):
        runs.append(cli(plane, "deploy", "--env", "blue", *flags, cwd=hello))
        runs.append(cli(plane, "promote", "--from", "blue", "--to", "green", *flags, cwd=hello))
    assert [run.returncode for run in runs] == [0] * len(runs), runs
    run_id = cli_json(runs[-1].stdout)["deploymentRunId"]
    for flags in ([], ["--output", "json"]):
        runs.append(cli(plane, "deployment", "list", "--env", "green", *flags, cwd=hello))
    for flags in ([], ["--verbose"], ["--verbose", "--output", "json"]):
        runs.append(cli(plane, "deployment", "watch", run_id, *flags, cwd=hello))
    # The same with the token in the environment instead of the config file.
    by_env = {"COMPARTMENT_API_URL": plane.api_url, "COMPARTMENT_TOKEN": plane.token}
    runs.append(
        cli(
            plane,
            "promote",
            "--from",
            "green",
            "--to",
            "blue",
            "-v",
            "-o",
            "json",
            cwd=hello,
            env=by_env,
        )
    )
    runs.append(cli(plane, "deployment", "list", "--env", "blue", cwd=hello, env=by_env))
    assert [run.returncode for run in runs] == [0] * len(runs), runs
    assert any("checking_readiness" in run.stderr for run in runs)  # verbose did show events
    assert_confined(plane, plane.token, *outputs_of(*runs))


def test_token_in_no_output_of_a_failing_promotion(
    control_plane: ControlPlane, hello: Path
) -> None:
    plane = control_plane
    assert cli(plane, "deploy", "--env", "blue", cwd=hello).returncode == 0
    runs = [
        cli(plane, "promote", "--from", "blue", "--to", "broken", *flags, cwd=hello)
        for flags in ([], ["--verbose"], ["--verbose", "--output", "json"])
    ]
    assert [run.returncode for run in runs] == [1, 1, 1], runs
    assert "web refuses broken" in runs[0].stderr  # the log tail is in the failure message
    # A refused one too (exit 3): its message comes from the API's error body.
    refused = cli(plane, "promote", "--from", "nowhere", "--to", "blue", "-v", cwd=hello)
    assert refused.returncode == 3
    assert_confined(plane, plane.token, *outputs_of(*runs, refused))


def test_wrong_token_is_in_no_output_and_no_log(control_plane: ControlPlane, hello: Path) -> None:
    plane = control_plane
    wrong = "wrong-Token-7c1d9e0b2a"
    env = {"COMPARTMENT_API_URL": plane.api_url, "COMPARTMENT_TOKEN": wrong}
    runs = [
        cli(plane, "promote", "--from", "blue", "--to", "green", "-v", *flags, cwd=hello, env=env)
        for flags in ([], ["--output", "json"])
    ]
    runs.append(cli(plane, "deploy", "--env", "blue", "-v", cwd=hello, env=env))
    runs.append(cli(plane, "deployment", "watch", "run_x", "-o", "json", cwd=hello, env=env))
    assert [run.returncode for run in runs] == [4, 4, 4, 4], runs
    assert cli_json(runs[1].stdout)["error"]["code"] == "unauthorized"
    assert_confined(plane, wrong, *outputs_of(*runs), homes=False)
    assert_confined(plane, plane.token, *outputs_of(*runs))


def test_token_in_no_output_when_the_server_is_unreachable(tmp_path: Path, hello: Path) -> None:
    secret = "unreachable-Token-51f0c2d8"
    env = clean_environ(
        COMPARTMENT_CLI_CONFIG_DIR=str(tmp_path / "no-config"),
        COMPARTMENT_API_URL=f"http://127.0.0.1:{free_port()}",
        COMPARTMENT_TOKEN=secret,
        COMPARTMENT_DEBUG="1",
    )
    commands = (
        ["promote", "--from", "blue", "--to", "green", "-v"],
        ["promote", "--from", "blue", "--to", "green", "-v", "-o", "json"],
        ["deploy", "--env", "blue", "-v"],
        ["deployment", "list", "-o", "json"],
    )
    # At once: each spends its retry budget (a couple of seconds) waiting.
    processes = [
        subprocess.Popen(
            [COMPARTMENT, *args],
            cwd=hello,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for args in commands
    ]
    runs = []
    for process, args in zip(processes, commands, strict=True):
        stdout, stderr = process.communicate(timeout=60)
        runs.append(subprocess.CompletedProcess(args, process.returncode, stdout, stderr))
    assert [run.returncode for run in runs] == [5, 5, 5, 5], runs
    assert "connection refused" in runs[0].stderr
    for output in outputs_of(*runs):
        assert secret not in output


# Loaded by the CLI's interpreter through PYTHONPATH: the status read that
# follows an accepted promotion fails with an error the CLI does not expect.
INJECTED_BUG = """\
import httpx

_send = httpx.AsyncClient.send


async def send(self, request, *args, **kwargs):
    if request.url.path == "/v1/deployments/status":
        raise RuntimeError("injected bug for a security test")
    return await _send(self, request, *args, **kwargs)


httpx.AsyncClient.send = send
"""


def test_token_in_no_traceback_of_an_unexpected_error(
    control_plane: ControlPlane, hello: Path, tmp_path: Path
) -> None:
    plane = control_plane
    assert cli(plane, "deploy", "--env", "blue", cwd=hello).returncode == 0
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(INJECTED_BUG)
    runs = [
        cli(
            plane,
            "promote",
            "--from",
            "blue",
            "--to",
            "green",
            "-v",
            *flags,
            cwd=hello,
            env={"PYTHONPATH": str(site)},
        )
        for flags in ([], ["--output", "json"])
    ]
    assert [run.returncode for run in runs] == [70, 70], runs
    for run in runs:
        assert "Traceback (most recent call last)" in run.stderr  # COMPARTMENT_DEBUG=1
        assert "injected bug for a security test" in run.stderr
    assert cli_json(runs[1].stdout)["error"]["code"] == "internal_error"
    assert_confined(plane, plane.token, *outputs_of(*runs))


class TokenInEnvironmentPlane(ControlPlane):
    """A server started by someone who has COMPARTMENT_TOKEN (and a secret) exported."""

    SECRET = "exported-Secret-93ab01"

    @property
    def env(self) -> dict[str, str]:
        env = super().env
        token_file = self.data_dir / "token"
        if token_file.exists():
            env["COMPARTMENT_TOKEN"] = token_file.read_text().strip()
        env["COMPARTMENT_DEPLOY_SECRET"] = self.SECRET
        return env


def test_token_in_no_deployment_environment_or_log_and_not_in_the_server_log(
    tmp_path: Path, hello: Path
) -> None:
    plane = TokenInEnvironmentPlane(tmp_path / "plane")
    plane.data_dir.mkdir(parents=True)
    (plane.data_dir / "token").write_text("env-Token-0d5e6f7a8b\n")
    plane.data_dir.joinpath("token").chmod(0o600)
    plane.start()
    try:
        assert plane.env["COMPARTMENT_TOKEN"] == plane.token
        deployed = cli(plane, "deploy", "--env", "blue", "-v", cwd=hello)
        promoted = cli(plane, "promote", "--from", "blue", "--to", "green", "-v", cwd=hello)
        failed = cli(plane, "promote", "--from", "blue", "--to", "broken", "-v", cwd=hello)
        assert (deployed.returncode, promoted.returncode, failed.returncode) == (0, 0, 1)
        logs = list((plane.data_dir / "logs").glob("*.log"))
        assert logs
        # `env` ran in each deployment that became ready (blue and green, web and api);
        # a candidate of `broken` may be stopped before it prints anything.
        ran = [log for log in logs if "COMPARTMENT_DEPLOYMENT_ID=" in log.read_text()]
        assert len(ran) >= 4, [log.read_text()[:200] for log in logs]
    finally:
        plane.stop()
    runs = (deployed, promoted, failed)
    assert_confined(plane, plane.token, *outputs_of(*runs))
    assert_confined(plane, plane.SECRET, *outputs_of(*runs))
    server_log = (plane.root / "server.log").read_text()
    assert "listening on" in server_log


# --- private files ---------------------------------------------------------------------------


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_config_file_is_0600_and_data_dir_private_even_under_umask_000(tmp_path: Path) -> None:
    plane = ControlPlane(tmp_path / "plane")
    with umask(0):
        plane.start()
    try:
        config = plane.config_dir / "config.json"
        assert json.loads(config.read_text())["remotes"]["local"]["sessionToken"] == plane.token
        assert mode(config) == 0o600
        assert mode(plane.config_dir) == 0o700
        assert mode(plane.data_dir) == 0o700
        assert mode(plane.data_dir / "token") == 0o600
    finally:
        plane.stop()


def test_an_existing_config_file_becomes_0600(tmp_path: Path) -> None:
    plane = ControlPlane(tmp_path / "plane")
    plane.config_dir.mkdir(parents=True, mode=0o755)
    config = plane.config_dir / "config.json"
    config.write_text('{"remotes": {}}\n')
    config.chmod(0o644)
    plane.start()
    try:
        assert mode(config) == 0o600
        assert mode(plane.config_dir) & 0o022 == 0  # neither group- nor world-writable
        assert plane.token in config.read_text()
    finally:
        plane.stop()


# --- loopback only ---------------------------------------------------------------------------


def test_api_and_routes_listen_on_loopback_only_by_default(
    control_plane: ControlPlane, hello: Path
) -> None:
    plane = control_plane
    assert cli(plane, "deploy", "--env", "blue", cwd=hello).returncode == 0
    assert cli(plane, "promote", "--from", "blue", "--to", "green", cwd=hello).returncode == 0
    assert plane.process is not None
    listening = listening_sockets(plane.process.pid)
    route_ports = plane.route_ports()
    assert len(route_ports) == 4
    assert listening == {("127.0.0.1", port) for port in {plane.port, *route_ports}}
    for env in ("blue", "green"):
        for deployment in plane.active(PROJECT, env).values():
            assert deployment["routeUrl"].startswith("http://127.0.0.1:")


class OtherLoopbackPlane(ControlPlane):
    """A server started with ``--host 127.0.0.2``: another loopback address."""

    HOST = "127.0.0.2"

    @property
    def api_url(self) -> str:
        return f"http://{self.HOST}:{self.port}"


def test_host_flag_moves_the_api_only_when_given(tmp_path: Path, hello: Path) -> None:
    """--host 127.0.0.2: the API listens there (and only there), the routes stay on 127.0.0.1."""
    plane = OtherLoopbackPlane(tmp_path / "plane", extra_args=["--host", OtherLoopbackPlane.HOST])
    plane.start()
    try:
        assert plane.process is not None
        config = json.loads((plane.config_dir / "config.json").read_text())
        assert config["remotes"]["local"]["apiUrl"] == plane.api_url
        deployed = cli(plane, "deploy", "--env", "blue", cwd=hello)  # through the config file
        assert deployed.returncode == 0, deployed.stderr
        listening = listening_sockets(plane.process.pid)
        route_ports = plane.route_ports()
        assert len(route_ports) == 2
        assert listening == {(plane.HOST, plane.port)} | {("127.0.0.1", p) for p in route_ports}
        for deployment in plane.active(PROJECT, "blue").values():
            assert http_get(deployment["routeUrl"]).startswith("200 ")
    finally:
        plane.stop()


# --- hostile archives, end to end ------------------------------------------------------------


def gzipped(members: list[Member], manifest: bytes | None) -> bytes:
    return gzip.compress(tar_bytes(members, manifest))


def deep(depth: int) -> bytes:
    """A manifest whose ``connections`` (any JSON) nest ``depth`` levels deep."""
    nested = b"[" * depth + b"]" * depth
    return b'{"projectName": "shop", "services": {"web": {"path": "web", "connections": %s}}}' % (
        nested
    )


MANIFESTS = st.one_of(
    st.just(manifest_bytes()),
    st.sampled_from(
        [
            deep(5_000),
            deep(100_000),
            b'{"projectName": "\xff"}',
            b"{nope",
            b"",
            b"\xff\xfe",
            b"[]",
            b"null",
        ]
    ),
    st.binary(max_size=40),
)
GOOD_WEB = [directory("services/web"), regular("services/web/server.py")]


@st.composite
def hostile_upload(draw: st.DrawFn) -> bytes:
    """A gzipped deploy archive the server must refuse: hostile members or a bad manifest."""
    if draw(st.booleans()):
        return gzipped(draw(hostile_archive()), manifest_bytes())
    manifest = draw(MANIFESTS)
    if manifest == manifest_bytes():
        return gzipped(draw(hostile_archive()), manifest)
    return gzipped(GOOD_WEB, manifest)


@pytest.fixture(scope="module")
def plane_for_uploads(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    plane = ControlPlane(tmp_path_factory.mktemp("uploads") / "plane")
    plane.start()
    directory = tmp_path_factory.mktemp("uploads-project") / PROJECT
    shutil.copytree(EXAMPLE, directory)
    assert plane.deploy_and_wait(directory, "blue")["status"] == "succeeded"
    yield plane
    plane.stop()


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(hostile_upload())
def test_hostile_archives_posted_to_the_server_are_refused_and_write_nothing(
    plane_for_uploads: ControlPlane, upload: bytes
) -> None:
    plane = plane_for_uploads
    before = plane_state(plane)
    outside = sorted(Path(tempfile.gettempdir()).glob("sentinel*"))
    with plane.client() as client:
        response = client.post(
            "/v1/deployments", content=upload, headers={"Content-Type": "application/gzip"}
        )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_deploy_request"
    assert plane_state(plane) == before
    assert sorted(Path(tempfile.gettempdir()).glob("sentinel*")) == outside


def test_the_same_upload_without_anything_hostile_is_accepted(
    plane_for_uploads: ControlPlane,
) -> None:
    """So the refusals above are for what is hostile, not for how the archives are made."""
    manifest = json.dumps(
        {
            "projectName": "shop",
            "environmentName": "probe",
            "services": {"web": {"path": "web", "run": {"command": "sleep 30"}}},
        }
    ).encode()
    with plane_for_uploads.client() as client:
        response = client.post(
            "/v1/deployments",
            content=gzipped(GOOD_WEB, manifest),
            headers={"Content-Type": "application/gzip"},
        )
    assert response.status_code == 200, response.text
    run = plane_for_uploads.wait_run(response.json()["deploymentRunId"])
    assert run["status"] == "succeeded", run


HOSTILE_BODIES = {
    "not utf-8": b'{"projectName": "\xff", "sourceEnvironmentName": "blue"}',
    "deep array": b"[" * 50_000 + b"]" * 50_000,
    "deep in a key": b'{"projectName": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
    "deep object": b'{"a": ' * 50_000 + b"1" + b"}" * 50_000,
    "nul": b'{"projectName": "hello\x00"}',
}


@pytest.mark.parametrize("case", sorted(HOSTILE_BODIES))
def test_hostile_json_bodies_are_refused_and_change_nothing(
    plane_for_uploads: ControlPlane, case: str
) -> None:
    plane = plane_for_uploads
    before = plane_state(plane)
    log = plane.root / "server.log"
    tracebacks = log.read_text().count("Traceback")
    with plane.client() as client:
        response = client.post(
            "/v1/deployments/promote",
            content=HOSTILE_BODIES[case],
            headers={"Content-Type": "application/json"},
        )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_promote_deployment_request"
    assert plane_state(plane) == before
    assert log.read_text().count("Traceback") == tracebacks
