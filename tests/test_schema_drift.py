"""One copy of the schema: the validator, the OpenAPI document and the CLI's messages
take their keys, enums, patterns and limits from the wire models (issue 9).

Each test compares what one consumer uses with what the msgspec Structs state,
so a key or value added to a model and forgotten elsewhere (or the reverse)
fails here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import msgspec
import pytest

from compartment_cli.errors import UsageError
from compartment_cli.models import base, descriptor
from compartment_cli.project import schema as validator
from compartment_cli.server import artifacts, openapi
from compartment_cli.workflows import pack, promote

PACKAGE = Path(__file__).resolve().parent.parent / "compartment_cli"


def model_schema(model: type) -> tuple[dict[str, Any], dict[str, Any]]:
    """The JSON Schema of ``model`` and its components, as msgspec derives them."""
    (top,), components = msgspec.json.schema_components([model])
    name = top["$ref"].rsplit("/", 1)[-1]
    return components[name], components


def properties(model: type) -> dict[str, Any]:
    return model_schema(model)[0]["properties"]


@pytest.mark.parametrize(
    ("accepted", "model", "extra"),
    [
        (validator.TOP_KEYS, descriptor.Descriptor, ()),
        (validator.SERVICE_KEYS, descriptor.ServiceConfig, ()),
        (validator.BUILD_KEYS, descriptor.BuildConfig, ()),
        (validator.RUN_KEYS, descriptor.RunConfig, ()),
        (validator.READINESS_KEYS, descriptor.ReadinessConfig, ()),
    ],
    ids=["top", "service", "build", "run", "readiness"],
)
def test_validator_accepts_exactly_the_model_keys(
    accepted: tuple[str, ...], model: type, extra: tuple[str, ...]
) -> None:
    assert sorted(accepted) == sorted([*properties(model), *extra])


def test_validator_enums_are_the_model_enums() -> None:
    service = properties(descriptor.ServiceConfig)
    build = properties(descriptor.BuildConfig)
    readiness = properties(descriptor.ReadinessConfig)
    assert sorted(descriptor.SERVICE_KINDS) == service["kind"]["enum"]
    assert sorted(descriptor.BUILD_STRATEGIES) == build["strategy"]["enum"]
    assert sorted(descriptor.READINESS_TYPES) == readiness["type"]["enum"]


def test_validator_patterns_and_limits_are_the_model_ones() -> None:
    top = properties(descriptor.Descriptor)
    assert validator.PROJECT_NAME_RE.pattern == top["name"]["pattern"]
    _, components = model_schema(descriptor.DeployManifest)
    services = components["DeployManifest"]["properties"]["services"]
    assert validator.SERVICE_NAME_RE.pattern == services["propertyNames"]["pattern"]
    timeout = properties(descriptor.ReadinessConfig)["timeoutMs"]
    assert timeout["maximum"] == descriptor.MAX_READINESS_TIMEOUT_MS


def test_openapi_parameters_use_the_request_patterns() -> None:
    document = json.loads(openapi.openapi_document())
    request = document["components"]["schemas"]["PromoteRequest"]["properties"]
    for path in ("/v1/deployments", "/v1/deployments/status", "/v1/events"):
        operation = next(iter(document["paths"][path].values()))
        parameters = {p["name"]: p["schema"] for p in operation["parameters"]}
        assert parameters["projectName"] == request["projectName"]
        assert parameters["environmentName"] == request["sourceEnvironmentName"]
        if "serviceName" in parameters:
            assert parameters["serviceName"] == request["serviceName"]["anyOf"][0]


def test_cli_messages_carry_the_rules_written_beside_the_patterns() -> None:
    cases = {
        "projectName": ("Shop", base.PROJECT_NAME_RULE),
        "sourceEnvironmentName": ("", base.ENVIRONMENT_NAME_RULE),
        "serviceName": ("Api", base.SERVICE_NAME_RULE),
    }
    good = {"projectName": "shop", "sourceEnvironmentName": "a", "serviceName": "api"}
    for field, (bad, rule) in cases.items():
        values = {**good, field: bad}
        with pytest.raises(UsageError) as info:
            promote.promote_request(
                values["projectName"], values["sourceEnvironmentName"], "b", values["serviceName"]
            )
        assert rule in str(info.value)


def test_archive_constants_are_defined_once() -> None:
    assert pack.MANIFEST_NAME is descriptor.MANIFEST_NAME is artifacts.MANIFEST_NAME
    assert pack.SERVICES_DIR is descriptor.SERVICES_DIR is artifacts.SERVICES_DIR


SCHEMA_LITERALS = [
    base.PROJECT_NAME_PATTERN.strip("^$"),
    base.SERVICE_NAME_PATTERN.strip("^$"),
    '"dockerfile"',
    '"railpack"',
    '"worker"',
    '"manifest.json"',
    "at most 63 characters",
]


def test_no_module_writes_the_schema_out_again() -> None:
    """Patterns, enums, archive names and name rules appear only in the models."""
    home = {PACKAGE / "models" / "base.py", PACKAGE / "models" / "descriptor.py"}
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path in home:
            continue
        text = path.read_text()
        found += [
            f"{path.relative_to(PACKAGE)}: {literal}"
            for literal in SCHEMA_LITERALS
            if literal in text
        ]
    assert found == []


def test_every_pattern_of_the_models_compiles_in_python() -> None:
    for pattern in (base.PROJECT_NAME_PATTERN, base.SERVICE_NAME_PATTERN):
        re.compile(pattern)
