"""The control plane's HTTP surface: auth, request ids, bad input, login, OpenAPI."""

from __future__ import annotations

import io
import json
import stat
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import ControlPlane, plane_state

PROMOTE = "/v1/deployments/promote"


def test_every_v1_request_needs_the_token(control_plane: ControlPlane) -> None:
    no_token = httpx.get(f"{control_plane.api_url}/v1/deployments?projectName=shop")
    wrong = control_plane.client(token="not-the-token").get(
        "/v1/deployments", params={"projectName": "shop"}
    )
    health = httpx.get(f"{control_plane.api_url}/healthz")

    for response in (no_token, wrong):
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"
        assert control_plane.token not in response.text
        assert response.headers["x-request-id"]
    assert health.status_code == 200
    assert health.headers["x-request-id"]


def test_every_response_has_a_request_id_and_errors_have_the_error_shape(
    control_plane: ControlPlane,
) -> None:
    with control_plane.client() as client:
        responses = [
            client.get("/v1/nowhere"),
            client.delete(PROMOTE),
            client.get("/v1/deployments/status", params={"projectName": "nope"}),
            client.get("/v1/deployments/runs/run_missing"),
        ]
    assert [r.status_code for r in responses] == [404, 405, 404, 404]
    for response in responses:
        assert response.headers["x-request-id"].startswith("req_")
        error = response.json()["error"]
        assert set(error) == {"code", "message"}
        assert error["message"]


def test_the_server_records_itself_as_the_local_remote(control_plane: ControlPlane) -> None:
    config_file = control_plane.config_dir / "config.json"
    config = json.loads(config_file.read_text())

    assert config["currentRemote"] == "local"
    assert config["remotes"]["local"] == {
        "apiUrl": control_plane.api_url,
        "sessionToken": control_plane.token,
        # The official CLI refuses every project command without one.
        "currentOrganization": {"id": "org_local", "name": "Local", "slug": "local"},
    }
    assert stat.S_IMODE(config_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((control_plane.data_dir / "token").stat().st_mode) == 0o600


def test_login_keeps_the_rest_of_an_existing_config(session_root: Path, tmp_path: Path) -> None:
    plane = ControlPlane(tmp_path / "plane")
    plane.config_dir.mkdir(parents=True)
    existing = {
        "currentRemote": "cloud",
        "remotes": {"cloud": {"apiUrl": "https://api.example", "sessionToken": "s3cret"}},
        "telemetry": False,
    }
    (plane.config_dir / "config.json").write_text(json.dumps(existing))
    plane.start()
    try:
        config = json.loads((plane.config_dir / "config.json").read_text())
    finally:
        plane.stop()

    assert config["currentRemote"] == "cloud"
    assert config["telemetry"] is False
    assert config["remotes"]["cloud"] == existing["remotes"]["cloud"]
    assert config["remotes"]["local"]["apiUrl"] == plane.api_url


def test_no_login_leaves_the_config_alone(tmp_path: Path) -> None:
    plane = ControlPlane(tmp_path / "plane", extra_args=["--no-login", "--token", "t0ken-t0ken"])
    plane.start()
    try:
        assert not (plane.config_dir / "config.json").exists()
        with plane.client(token="t0ken-t0ken") as client:
            assert client.get("/v1/deployments", params={"projectName": "shop"}).status_code == 404
    finally:
        plane.stop()
    assert "t0ken-t0ken" not in (plane.root / "server.log").read_text()


def test_the_token_can_come_from_the_environment_instead_of_the_process_list(
    tmp_path: Path,
) -> None:
    plane = ControlPlane(
        tmp_path / "plane", server_env={"COMPARTMENT_SERVER_TOKEN": "env-t0ken-env-t0ken"}
    )
    plane.start()
    try:
        assert plane.process is not None
        cmdline = Path(f"/proc/{plane.process.pid}/cmdline").read_bytes()
        with plane.client(token="env-t0ken-env-t0ken") as client:
            assert client.get("/v1/deployments", params={"projectName": "shop"}).status_code == 404
        with plane.client(token="wrong-wrong-wrong") as client:
            assert client.get("/v1/deployments", params={"projectName": "shop"}).status_code == 401
    finally:
        plane.stop()
    assert b"env-t0ken" not in cmdline


# --- bad input changes nothing ----------------------------------------------------------


def archive(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def member(name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, **extra: Any) -> Any:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    for key, value in extra.items():
        setattr(info, key, value)
    return info, (data if kind == tarfile.REGTYPE else None)


MANIFEST = json.dumps(
    {
        "projectName": "shop",
        "environmentName": "production",
        "services": {"web": {"path": "web", "run": {"command": "true"}}},
    }
).encode()

BAD_UPLOADS = {
    "absolute member": [member("manifest.json", MANIFEST), member("/etc/evil", b"x")],
    "climbs out": [member("manifest.json", MANIFEST), member("services/web/../../evil", b"x")],
    "symlink out": [
        member("manifest.json", MANIFEST),
        member("services/web/link", kind=tarfile.SYMTYPE, linkname="/etc/passwd"),
    ],
    "hardlink": [
        member("manifest.json", MANIFEST),
        member("services/web/link", kind=tarfile.LNKTYPE, linkname="/etc/passwd"),
    ],
    "device": [
        member("manifest.json", MANIFEST),
        member("services/web/dev", kind=tarfile.CHRTYPE, devmajor=1, devminor=3),
    ],
    "manifest with unknown field": [
        member("manifest.json", MANIFEST[:-1] + b', "extra": 1}'),
        member("services/web/app.py", b"x"),
    ],
    "bad project name": [
        member("manifest.json", MANIFEST.replace(b'"shop"', b'"Shop_1"')),
        member("services/web/app.py", b"x"),
    ],
    "no manifest": [member("services/web/app.py", b"x")],
}


@pytest.fixture
def deployed(control_plane: ControlPlane, project: Any) -> ControlPlane:
    """A control plane with something deployed, so that 'unchanged' means something."""
    assert control_plane.deploy_and_wait(project("1.0.0"), "staging")["status"] == "succeeded"
    return control_plane


@pytest.mark.parametrize("case", sorted(BAD_UPLOADS))
def test_a_hostile_or_invalid_upload_is_refused_and_writes_nothing(
    deployed: ControlPlane, case: str
) -> None:
    before = plane_state(deployed)
    with deployed.client() as client:
        response = client.post(
            "/v1/deployments",
            content=archive(BAD_UPLOADS[case]),
            headers={"Content-Type": "application/gzip"},
        )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_deploy_request"
    assert plane_state(deployed) == before


def test_an_upload_over_the_limit_is_refused(tmp_path: Path) -> None:
    plane = ControlPlane(tmp_path / "plane", extra_args=["--max-upload-bytes", "100000"])
    plane.start()
    try:
        before = plane_state(plane)
        big = archive([member("manifest.json", MANIFEST), member("services/web/big", b"0" * 10**6)])
        with plane.client() as client:
            declared = client.post(
                "/v1/deployments",
                content=b"\0" * 200_000,
                headers={"Content-Type": "application/gzip"},
            )
            bomb = client.post(
                "/v1/deployments", content=big, headers={"Content-Type": "application/gzip"}
            )
        assert declared.status_code == 413
        assert bomb.status_code == 413  # small compressed, over the limit unpacked
        assert {declared.json()["error"]["code"], bomb.json()["error"]["code"]} == {
            "payload_too_large"
        }
        assert plane_state(plane) == before
    finally:
        plane.stop()


BAD_BODIES: dict[str, bytes] = {
    "malformed JSON": b'{"projectName": "shop",',
    "not an object": b"[1, 2]",
    "wrong types": json.dumps(
        {"projectName": 1, "sourceEnvironmentName": "a", "targetEnvironmentName": "b"}
    ).encode(),
    "unknown field": json.dumps(
        {
            "projectName": "shop",
            "sourceEnvironmentName": "staging",
            "targetEnvironmentName": "production",
            "force": True,
        }
    ).encode(),
    "project name breaks the pattern": json.dumps(
        {
            "projectName": "Shop",
            "sourceEnvironmentName": "staging",
            "targetEnvironmentName": "production",
        }
    ).encode(),
    "service name breaks the pattern": json.dumps(
        {
            "projectName": "shop",
            "sourceEnvironmentName": "staging",
            "targetEnvironmentName": "production",
            "serviceName": "-api",
        }
    ).encode(),
    "environment name too long": json.dumps(
        {
            "projectName": "shop",
            "sourceEnvironmentName": "staging",
            "targetEnvironmentName": "p" * 64,
        }
    ).encode(),
}


@pytest.mark.parametrize("case", sorted(BAD_BODIES))
def test_a_bad_promote_body_is_a_400_and_changes_nothing(deployed: ControlPlane, case: str) -> None:
    before = plane_state(deployed)
    with deployed.client() as client:
        response = client.post(
            PROMOTE, content=BAD_BODIES[case], headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_promote_deployment_request"
    assert plane_state(deployed) == before


def test_bad_queries_are_400(deployed: ControlPlane) -> None:
    with deployed.client() as client:
        unknown = client.get("/v1/deployments/status", params={"projectName": "shop", "nope": "1"})
        limit = client.get("/v1/deployments", params={"projectName": "shop", "limit": "101"})
        missing = client.get("/v1/deployments")
        deploy_as_json = client.post("/v1/deployments", json={"projectName": "shop"})
    assert [unknown.status_code, limit.status_code, missing.status_code] == [400, 400, 400]
    assert deploy_as_json.status_code == 415


def test_list_is_newest_first_and_bounded(deployed: ControlPlane, project: Any) -> None:
    deployed.deploy_and_wait(project("2.0.0"), "staging")
    listing = deployed.get("/v1/deployments", projectName="shop", environmentName="staging")
    one = deployed.get(
        "/v1/deployments", projectName="shop", environmentName="staging", limit=1, serviceName="api"
    )

    created = [d["createdAt"] for d in listing.json()["deployments"]]
    assert len(created) == 4
    assert created == sorted(created, reverse=True)
    [latest_api] = one.json()["deployments"]
    assert latest_api["serviceName"] == "api"
    assert latest_api["isActive"] is True


# --- the OpenAPI document is served and true -----------------------------------------------


def test_openapi_document_describes_every_endpoint(control_plane: ControlPlane) -> None:
    document = httpx.get(f"{control_plane.api_url}/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    assert set(document["paths"]) == {
        "/healthz",
        "/v1/deployments",
        "/v1/deployments/promote",
        "/v1/deployments/rollback",
        "/v1/deployments/status",
        "/v1/deployments/runs/{deploymentRunId}",
        "/v1/deployments/logs",
        "/v1/environments",
        "/v1/events",
    }


def test_real_responses_match_the_openapi_schemas(deployed: ControlPlane) -> None:
    import jsonschema

    document = httpx.get(f"{deployed.api_url}/openapi.json").json()
    registry_root = {"components": document["components"]}

    def check(response: httpx.Response, schema_name: str) -> None:
        schema = {"$ref": f"#/components/schemas/{schema_name}", **registry_root}
        jsonschema.validate(response.json(), schema)

    promoted = deployed.post_promote(
        projectName="shop", sourceEnvironmentName="staging", targetEnvironmentName="production"
    )
    check(promoted, "DeployResponse")
    run_id = promoted.json()["deploymentRunId"]
    deployed.wait_run(run_id)
    check(deployed.get(f"/v1/deployments/runs/{run_id}"), "RunResponse")
    check(
        deployed.get("/v1/deployments/status", projectName="shop", environmentName="production"),
        "StatusResponse",
    )
    check(deployed.get("/v1/deployments", projectName="shop"), "ListResponse")
    check(deployed.post_promote(projectName="shop"), "ErrorResponse")


def test_schemathesis_finds_no_server_error_and_no_response_outside_the_schema(
    deployed: ControlPlane, tmp_path: Path
) -> None:
    command = [
        str(Path(sys.executable).parent / "schemathesis"),
        "run",
        f"{deployed.api_url}/openapi.json",
        "--header",
        f"Authorization: Bearer {deployed.token}",
        "--checks",
        "not_a_server_error,response_schema_conformance,status_code_conformance",
        # The endless stream and the binary upload have tests of their own.
        "--exclude-operation-id",
        "streamEvents",
        "--exclude-operation-id",
        "deploy",
        "--max-examples",
        "25",
        "--seed",
        "1",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
