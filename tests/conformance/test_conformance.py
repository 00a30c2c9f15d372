"""``compartment server`` speaks the hosted platform's newest shapes (issue 10).

Every answer read through ``ControlPlane.client()`` is already checked by the
response hook of tests/conformance; the tests here make sure each endpoint is
met in success and failure, and check what the hook cannot: the config file the
server writes, the OpenAPI document's formats, and that our Structs declare the
same keys as the platform's shapes.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import msgspec
import pytest

from compartment_cli.models import api
from compartment_cli.models.config import LOCAL_ORGANIZATION, record_remote
from compartment_cli.server.openapi import openapi_document
from tests.conformance import CHECKED, _document, assert_conforms, problems
from tests.support import COMPARTMENT, ControlPlane

PROJECT = "shop"


def test_every_endpoint_answers_in_the_platform_shape(
    control_plane: ControlPlane, project: Any
) -> None:
    CHECKED.clear()
    good = project("1.0.0")
    control_plane.deploy_and_wait(good, "staging")
    promoted = control_plane.post_promote(
        projectName=PROJECT, sourceEnvironmentName="staging", targetEnvironmentName="production"
    )
    assert promoted.status_code == 200
    control_plane.wait_run(promoted.json()["deploymentRunId"])
    # A failed deployment: failureMessage, completedAt, no rollback to it.
    bad = project(
        "2.0.0", web={"health_status": 503, "readiness": {"type": "http", "timeoutMs": 1500}}
    )
    failed = control_plane.deploy_and_wait(bad, "staging", "web")
    assert failed["status"] == "failed"

    status = control_plane.get(
        "/v1/deployments/status", projectName=PROJECT, environmentName="staging"
    )
    listed = control_plane.get("/v1/deployments", projectName=PROJECT, environmentName="staging")
    errors = [
        control_plane.get("/v1/deployments/status", projectName="nope"),
        control_plane.get("/v1/deployments", projectName="Not A Slug"),
        control_plane.post_promote(
            projectName=PROJECT, sourceEnvironmentName="staging", targetEnvironmentName="staging"
        ),
        control_plane.post_promote(projectName=PROJECT, sourceEnvironmentName="staging"),
        control_plane.post_promote(
            projectName=PROJECT, sourceEnvironmentName="nowhere", targetEnvironmentName="x"
        ),
    ]
    with control_plane.client(token="wrong") as client:
        errors.append(client.get("/v1/deployments", params={"projectName": PROJECT}))

    assert status.json()["infrastructureBlocker"] is None
    assert [e.status_code for e in errors] == [404, 400, 409, 400, 404, 401]
    failed_summary = next(d for d in listed.json()["deployments"] if d["status"] == "failed")
    assert failed_summary["failureMessage"]
    assert failed_summary["rollbackAvailable"] is False
    assert sorted(set(CHECKED)) == [
        "DeployResponse",
        "ErrorResponse",
        "ListResponse",
        "StatusResponse",
    ]


def test_a_deploy_answer_carries_the_platform_build_and_run(
    control_plane: ControlPlane, project: Any
) -> None:
    directory = project("1.0.0", api={"kind": "api"}, worker={"kind": "worker"})
    descriptor = json.loads((directory / "compartment.yml").read_text())
    del descriptor["services"]["worker"]["run"]  # a service without run.command
    descriptor["services"]["worker"]["readiness"] = {"type": "http", "path": "healthz"}
    descriptor["services"]["api"]["build"] = {"env": ["NODE_ENV"], "packages": {"build": ["git"]}}
    (directory / "compartment.yml").write_text(json.dumps(descriptor))
    response = control_plane.deploy(directory, "staging")
    assert response.status_code == 200, response.text
    deployments = {d["serviceName"]: d for d in response.json()["deployments"]}
    for deployment in deployments.values():
        assert_conforms("DeploymentSummary", deployment)
        operation = deployment["operation"]
        assert operation["id"] == response.json()["deploymentRunId"]
        assert (operation["targetType"], operation["targetId"]) == ("deployment", deployment["id"])
        assert deployment["accessProtected"] is False
    assert deployments["worker"]["run"] == {}
    assert "command" not in deployments["worker"]["build"]
    assert deployments["worker"]["readiness"]["path"] == "healthz"
    assert deployments["api"]["build"] == {
        "env": ["NODE_ENV"],
        "include": [],
        "packages": {"build": ["git"], "runtime": []},
        "strategy": "auto",
    }
    assert deployments["api"]["run"]["command"].endswith("service.py")
    control_plane.wait_run(response.json()["deploymentRunId"])


def test_the_config_file_is_one_the_official_cli_accepts(control_plane: ControlPlane) -> None:
    config = json.loads((control_plane.config_dir / "config.json").read_text())
    assert_conforms("CliConfig", config)
    assert_conforms("CliReadyRemote", config["remotes"][config["currentRemote"]])


def test_the_hook_refuses_what_the_platform_refuses() -> None:
    """The schemas are not blind: yesterday's answers fail them."""
    old_operation = {
        "type": "deploy",
        "status": "running",
        "createdAt": "2026-01-01T00:00:00Z",
        "completedAt": None,
    }
    assert any(
        "'id' is a required property" in p for p in problems("OperationSummary", old_operation)
    )
    assert problems("ResolvedRunConfig", {"command": None})
    assert problems("ResolvedBuildConfig", {"command": "make", "strategy": "auto"})
    assert problems(
        "StatusResponse",
        {
            "activeDeployments": [],
            "deployments": [],
            "environment": {"name": "x"},
            "project": {"name": "p"},
        },
    )
    assert problems("DateTime", "2026-01-01T00:00:00+00:00")
    assert problems("Url", "not a url")
    assert not problems("DateTime", "2026-01-01T00:00:00.123Z")


SHAPES = [
    (api.DeployResponse, "DeployResponse"),
    (api.DeploymentSummary, "DeploymentSummary"),
    (api.OperationSummary, "OperationSummary"),
    (api.ReadOperationSummary, "ReadOperationSummary"),
    (api.ReadSummary, "ReadSummary"),
    (api.StatusResponse, "StatusResponse"),
    (api.ListResponse, "ListResponse"),
    (api.EnvironmentSummary, "EnvironmentSummary"),
    (api.ProjectSummary, "ProjectSummary"),
    (api.ResolvedBuildConfig, "ResolvedBuildConfig"),
    (api.ResolvedRunConfig, "ResolvedRunConfig"),
]


@pytest.mark.parametrize(("model", "name"), SHAPES, ids=[name for _, name in SHAPES])
def test_our_structs_declare_the_platform_keys(model: type, name: str) -> None:
    platform = _document()["$defs"][name]
    (ref,), components = msgspec.json.schema_components([model])
    ours = components[ref["$ref"].rsplit("/", 1)[-1]]
    assert sorted(ours["properties"]) == sorted(platform["properties"])
    # Keys we always send are the platform's required keys, plus the optional ones we fill.
    assert set(platform.get("required", [])) <= set(ours["properties"])


def test_the_openapi_document_states_the_platform_formats() -> None:
    schemas = json.loads(openapi_document())["components"]["schemas"]
    summary = schemas["DeploymentSummary"]["properties"]
    read = schemas["ReadSummary"]["properties"]
    assert summary["createdAt"]["format"] == "date-time"
    assert {"type": "string", "format": "date-time"} in read["completedAt"]["anyOf"]
    assert {"type": "string", "format": "uri"} in read["routeUrl"]["anyOf"]
    assert read["id"]["minLength"] == 1
    assert {"type": "string", "minLength": 1} in read["failureMessage"]["anyOf"]
    assert "infrastructureBlocker" in schemas["StatusResponse"]["properties"]
    assert read["promotionStage"]["enum"] == list(api.PROMOTION_STAGES)


def test_schema_file_names_the_contract_version() -> None:
    comment = json.loads(Path(__file__).with_name("platform.schema.json").read_text())["$comment"]
    assert "compartmentdev/compartment" in comment
    assert "4955a5147794b19d20ba9c818219dfc53db662a7" in comment


def test_recording_the_remote_keeps_what_the_user_chose(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(
        json.dumps(
            {
                "currentRemote": "cloud",
                "remotes": {
                    "cloud": {"apiUrl": "https://api.example", "sessionToken": "s"},
                    "local": {"apiUrl": "http://old", "currentOrganization": {"id": "o"}},
                },
            }
        )
    )
    record_remote(path, "local", "http://127.0.0.1:8787", "tok", LOCAL_ORGANIZATION)
    config = json.loads(path.read_text())
    assert config["currentRemote"] == "cloud"
    assert config["remotes"]["cloud"] == {"apiUrl": "https://api.example", "sessionToken": "s"}
    # An incomplete organization is replaced; the official CLI needs id, name and slug.
    assert config["remotes"]["local"]["currentOrganization"] == {
        "id": "org_local",
        "name": "Local",
        "slug": "local",
    }
    assert_conforms("CliConfig", config)

    chosen = {"id": "org_9", "name": "Mine", "slug": "mine"}
    config["remotes"]["local"]["currentOrganization"] = chosen
    path.write_text(json.dumps(config))
    record_remote(path, "local", "http://127.0.0.1:8787", "tok", LOCAL_ORGANIZATION)
    assert json.loads(path.read_text())["remotes"]["local"]["currentOrganization"] == chosen


def test_deploy_verbose_says_what_it_packed_and_what_is_not_used(
    control_plane: ControlPlane, project: Any
) -> None:
    directory = project("1.0.0", web={})
    descriptor = json.loads((directory / "compartment.yml").read_text())
    descriptor["services"]["web"]["ports"] = [3000]
    descriptor["services"]["web"]["accessMode"] = "public"
    descriptor["resources"] = {"db": {"preset": "postgres"}}
    (directory / "compartment.yml").write_text(json.dumps(descriptor))
    (directory / ".gitignore").write_text("*.log\n")
    (directory / "web" / "debug.log").write_text("x")
    completed = subprocess.run(
        [COMPARTMENT, "deploy", "--env", "staging", "--verbose"],
        cwd=directory,
        env=control_plane.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    assert "left out 1 paths (1 by .gitignore)" in completed.stderr
    assert re.search(r"packed \d+ files, \d+ bytes", completed.stderr)
    assert (
        "not used by the local control plane: resources, services.web.ports, "
        "services.web.accessMode" in completed.stderr
    )
