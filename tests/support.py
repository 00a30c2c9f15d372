"""Test support: the real control plane on a free loopback port, and test projects.

``control_plane`` starts ``compartment server`` (the installed executable, as a
user would) with its own data dir and its own CLI config dir, waits for
``/healthz``, and stops it with SIGTERM afterwards. Every server, port and
data dir a test uses is registered, so that ``tests/test_zz_leftovers.py``
can check at the end of the suite that nothing outlived it.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from compartment_cli.server.runtime import free_port

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "hello"
BIN = Path(sys.executable).parent
COMPARTMENT = str(BIN / "compartment")

# What every control plane of this session used; checked by test_zz_leftovers.
REGISTRY: dict[str, Any] = {"ports": set(), "data_dirs": [], "planes": [], "root": None}


def clean_environ(**extra: str) -> dict[str, str]:
    """The environment of a child: ours minus anything that points at a real login."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("COMPARTMENT_") and k not in ("XDG_CONFIG_HOME", "NO_COLOR")
    }
    env.update(extra)
    return env


@dataclass
class ControlPlane:
    """One ``compartment server`` process and what a test needs to talk to it."""

    root: Path
    port: int = field(default_factory=free_port)
    extra_args: list[str] = field(default_factory=list)
    server_env: dict[str, str] = field(default_factory=dict)
    """More environment for the server process only."""
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def config_dir(self) -> Path:
        return self.root / "config"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def token(self) -> str:
        return (self.data_dir / "token").read_text().strip()

    @property
    def env(self) -> dict[str, str]:
        """The environment for a CLI subprocess that uses this server's login."""
        return clean_environ(COMPARTMENT_CLI_CONFIG_DIR=str(self.config_dir))

    def start(self, *extra: str) -> None:
        REGISTRY["ports"].add(self.port)
        if self not in REGISTRY["planes"]:
            REGISTRY["planes"].append(self)
        if self.data_dir not in REGISTRY["data_dirs"]:
            REGISTRY["data_dirs"].append(self.data_dir)
        self.root.mkdir(parents=True, exist_ok=True)
        self.log_path = self.root / "server.log"
        args = [
            COMPARTMENT,
            "server",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            *self.extra_args,
            *extra,
        ]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                args,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**self.env, **self.server_env},
                cwd=self.root,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"compartment server exited:\n{self.log_path.read_text()}")
            try:
                if httpx.get(f"{self.api_url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"compartment server did not start:\n{self.log_path.read_text()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int | None:
        if self.process is None:
            return None
        self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self.process = None
        REGISTRY["ports"].update(self.route_ports())
        return code

    def route_ports(self) -> set[int]:
        database = self.data_dir / "state.db"
        if not database.exists():
            return set()
        db = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
        try:
            return {int(row[0]) for row in db.execute("SELECT port FROM routes")}
        finally:
            db.close()

    def kill(self) -> None:
        """SIGKILL: the server gets no chance to clean up."""
        self.stop(signal.SIGKILL)

    # --- HTTP helpers --------------------------------------------------------

    def client(self, token: str | None = None) -> httpx.Client:
        """A client whose every answer is checked against the platform's shapes first."""
        from tests.conformance import check_response

        return httpx.Client(
            base_url=self.api_url,
            headers={"Authorization": f"Bearer {token or self.token}"},
            timeout=30,
            event_hooks={"response": [check_response]},
        )

    def get(self, path: str, **params: Any) -> httpx.Response:
        with self.client() as client:
            return client.get(path, params=params)

    def post_promote(self, **body: Any) -> httpx.Response:
        with self.client() as client:
            return client.post("/v1/deployments/promote", json=body)

    def post_rollback(self, **body: Any) -> httpx.Response:
        with self.client() as client:
            return client.post("/v1/deployments/rollback", json=body)

    def deploy(
        self, project_dir: Path, environment: str, service: str | None = None
    ) -> httpx.Response:
        from compartment_cli.project import load_project_file
        from compartment_cli.workflows.pack import pack_services

        descriptor = load_project_file(project_dir / "compartment.yml")
        buffer = io.BytesIO()
        pack_services(project_dir, descriptor, environment=environment, service=service, out=buffer)
        with self.client() as client:
            return client.post(
                "/v1/deployments",
                content=buffer.getvalue(),
                headers={"Content-Type": "application/gzip"},
            )

    def run(self, run_id: str) -> dict[str, Any]:
        response = self.get(f"/v1/deployments/runs/{run_id}")
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def wait_run(self, run_id: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.run(run_id)
            if run["status"] in ("succeeded", "failed"):
                return run
            time.sleep(0.05)
        raise AssertionError(f"run {run_id} did not finish in {timeout} s")

    def deploy_and_wait(
        self, project_dir: Path, environment: str, service: str | None = None
    ) -> dict[str, Any]:
        response = self.deploy(project_dir, environment, service)
        assert response.status_code == 200, response.text
        return self.wait_run(response.json()["deploymentRunId"])

    def active(self, project: str, environment: str) -> dict[str, dict[str, Any]]:
        """The active deployments of an environment, by service."""
        response = self.get(
            "/v1/deployments/status", projectName=project, environmentName=environment
        )
        response.raise_for_status()
        return {d["serviceName"]: d for d in response.json()["activeDeployments"]}


FIXTURE_SERVICE = Path(__file__).resolve().parent / "fixtures" / "service.py"


def write_project(
    target: Path, version: str = "1.0.0", name: str = "shop", **services: dict[str, Any]
) -> Path:
    """A project of test services (tests/fixtures/service.py), one directory each.

    ``services`` maps a name to its settings: ``ready_after`` (s), ``health_status``,
    ``exit_code``, ``fail_after`` (s: /healthz answers 503 from then on), ``broken_if`` (a
    path: the service exits at start while it exists), ``readiness``
    (False: no block; a dict: the block), ``kind``,
    ``version``. Default: services ``web`` and ``api``, ready at once.
    """
    target.mkdir(parents=True, exist_ok=True)
    specs = services or {"web": {}, "api": {}}
    descriptor: dict[str, Any] = {"name": name, "services": {}}
    for service, spec in specs.items():
        directory = target / service
        directory.mkdir(exist_ok=True)
        shutil.copy(FIXTURE_SERVICE, directory / "service.py")
        (directory / "VERSION").write_text(str(spec.get("version", version)) + "\n")
        for key, filename in (
            ("ready_after", "READY_AFTER"),
            ("health_status", "HEALTH_STATUS"),
            ("exit_code", "EXIT_CODE"),
            ("fail_after", "FAIL_AFTER"),
            ("broken_if", "BROKEN_IF"),
        ):
            (directory / filename).unlink(missing_ok=True)
            if key in spec:
                (directory / filename).write_text(str(spec[key]) + "\n")
        config: dict[str, Any] = {
            "path": service,
            "kind": spec.get("kind", "web"),
            "run": {"command": f"{sys.executable} service.py"},
        }
        readiness = spec.get("readiness", {"type": "http", "path": "/healthz", "timeoutMs": 20000})
        if readiness:
            config["readiness"] = readiness
        descriptor["services"][service] = config
    # JSON is YAML: the loader reads it like any compartment.yml.
    (target / "compartment.yml").write_text(json.dumps(descriptor, indent=2) + "\n")
    return target


def promote_by_cli(
    plane: ControlPlane, directory: Path, source: str = "staging", target: str = "production"
) -> dict[str, Any]:
    """``compartment promote --output json`` in ``directory``, as a user runs it: its result."""
    done = subprocess.run(
        [COMPARTMENT, "promote", "--from", source, "--to", target, "--output", "json"],
        cwd=directory,
        env=plane.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert plane.token not in done.stdout + done.stderr
    result: dict[str, Any] = cli_json(done.stdout)
    assert result["status"] == "succeeded", result
    assert result["environment"] == {"name": target}
    return result


def result_rows(stdout: str) -> list[list[str]]:
    """The rows of a text result (or ``deployment list``), split in cells: what follows its
    column headers."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:1] == ["SERVICE"])
    return [line.split() for line in lines[start + 1 :] if line.strip()]


def http_get(url: str, timeout: float = 5) -> str:
    """GET through a route, as a browser would: a new connection each time."""
    with httpx.Client(timeout=timeout) as client:
        response = client.get(url, headers={"Connection": "close"})
        return f"{response.status_code} {response.text.strip()}"


def wait_serving(url: str, timeout: float = 20) -> str:
    """GET through a route until it answers 200 (a restarted control plane brings
    each deployment back on its own, its route answering 503 until then)."""
    deadline = time.monotonic() + timeout
    while True:
        answer = http_get(url)
        if answer.startswith("200 ") or time.monotonic() > deadline:
            return answer
        time.sleep(0.02)


def plane_state(plane: ControlPlane) -> dict[str, Any]:
    """Every row of every table and every file around the data dir (but the DB's own and the
    server's log): what a refused request must leave exactly as it was."""
    db = sqlite3.connect(f"file:{plane.data_dir / 'state.db'}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        rows = {t: db.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall() for t in tables}
    finally:
        db.close()
    files = sorted(
        (path.relative_to(plane.root).as_posix(), path.stat().st_size)
        for path in plane.root.rglob("*")
        if not path.name.startswith(("state.db", "server.log"))
    )
    return {"rows": rows, "files": files}


def deployment_processes(data_dir: Path) -> dict[int, str]:
    """The live processes a control plane started for this data dir: pid → deployment id."""
    marker = f"COMPARTMENT_CONTROL_PLANE={data_dir.resolve()}".encode()
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            continue
        if marker in environ and state != "Z":
            deployment = next(
                (
                    v.split(b"=", 1)[1].decode()
                    for v in environ
                    if v.startswith(b"COMPARTMENT_DEPLOYMENT_ID=")
                ),
                "",
            )
            found[int(entry.name)] = deployment
    return found


def serving_processes(data_dir: Path) -> dict[str, int]:
    """How many processes run the service itself (not its shell), by deployment id."""
    counts: dict[str, int] = {}
    for pid, deployment in deployment_processes(data_dir).items():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if cmdline.split(b"\0")[0].endswith(b"sh"):
            continue
        counts[deployment] = counts.get(deployment, 0) + 1
    return counts


# --- what a process holds, from /proc ------------------------------------------------


def socket_inodes(pid: int) -> set[str]:
    """The inodes of the sockets process ``pid`` has open (``socket:[inode]`` fds)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def _proc_address(hex_address: str, family: socket.AddressFamily) -> str:
    # /proc prints each 32-bit word of the address in host byte order.
    raw = bytes.fromhex(hex_address)
    if sys.byteorder == "little":
        raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return socket.inet_ntop(family, raw)


def listening_sockets(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket in LISTEN state that process ``pid`` holds.

    Reads the socket tables of the process's network namespace
    (``/proc/<pid>/net/tcp`` and ``tcp6``) and keeps the sockets whose inode
    is one of the process's file descriptors.
    """
    inodes = socket_inodes(pid)
    found: set[tuple[str, int]] = set()
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and inode in inodes:  # 0A: TCP_LISTEN
                address, _, port = local.partition(":")
                found.add((_proc_address(address, family), int(port, 16)))
    return found


def open_fds(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def proc_status(pid: int, key: str) -> int:
    """A number of /proc/<pid>/status, e.g. ``VmRSS`` (kB) or ``Threads``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name == key:
            return int(value.split()[0])
    raise KeyError(key)


def zombie_children(pid: int) -> list[int]:
    """Children of ``pid`` that have exited and were never reaped."""
    zombies = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if fields[0] == "Z" and int(fields[1]) == pid:
            zombies.append(int(entry.name))
    return zombies


# --- the JSON the CLI prints, checked against its published schemas -------------------------


def _validators() -> dict[str, Any]:
    import jsonschema

    from compartment_cli.cli.schemas import KINDS, shipped

    found = REGISTRY.setdefault("validators", {})
    if not found:
        for kind in KINDS:
            schema = json.loads(shipped(kind))
            jsonschema.Draft202012Validator.check_schema(schema)
            found[kind] = jsonschema.Draft202012Validator(schema)
    return found  # type: ignore[no-any-return]


def kind_of(document: Any) -> str:
    """Which schema a document of ``--output json`` answers to."""
    if isinstance(document, dict) and "error" in document:
        return "error"
    if isinstance(document, dict) and document.get("kind") == "compartment.promotion-plan":
        return "plan"
    if isinstance(document, dict) and "deploymentRunId" in document:
        return "result"
    return "list"


def cli_json(stdout: str | bytes) -> Any:
    """The one JSON document a ``compartment ... --output json`` printed, validated against
    the schema ``compartment schema <kind>`` publishes (result, error, list or plan)."""
    document = json.loads(stdout)
    _validators()[kind_of(document)].validate(document)
    return document
