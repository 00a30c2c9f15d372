"""The hosted platform's response shapes as JSON Schemas (``platform.schema.json``), and a
check every answer of the suite's control planes goes through.

``check_response`` is an httpx response hook: ``ControlPlane.client()`` (tests/support.py)
installs it, so every answer a test reads from ``compartment server`` through the
helpers is first checked against the platform's shape for its endpoint.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

import httpx
import jsonschema

SCHEMA_FILE = Path(__file__).resolve().parent / "platform.schema.json"

# (method, path pattern, status class) → the schema of the answer; None: ours only.
ENDPOINTS: list[tuple[str, re.Pattern[str], str]] = [
    ("POST", re.compile(r"/v1/deployments/promote"), "DeployResponse"),
    ("POST", re.compile(r"/v1/deployments/rollback"), "DeployResponse"),
    ("POST", re.compile(r"/v1/deployments"), "DeployResponse"),
    ("GET", re.compile(r"/v1/deployments/status"), "StatusResponse"),
    ("GET", re.compile(r"/v1/deployments"), "ListResponse"),
]


@functools.cache
def _document() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(SCHEMA_FILE.read_text())
    return document


@functools.cache
def validator(name: str) -> jsonschema.Draft202012Validator:
    schema = {**_document(), "$ref": f"#/$defs/{name}"}
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


def problems(name: str, document: Any) -> list[str]:
    """Every way ``document`` differs from the platform's ``name``, as ``path: message``."""
    return [
        f"{'/'.join(str(p) for p in error.absolute_path) or '(root)'}: {error.message}"
        for error in validator(name).iter_errors(document)
    ]


def assert_conforms(name: str, document: Any) -> None:
    found = problems(name, document)
    assert not found, f"not the platform's {name}:\n" + "\n".join(found)


def schema_of(method: str, path: str, status: int) -> str | None:
    """The platform schema of an answer, or None for an endpoint the platform does not have."""
    if status >= 400:
        return "ErrorResponse"
    for endpoint_method, pattern, name in ENDPOINTS:
        if method == endpoint_method and pattern.fullmatch(path):
            return name
    return None


CHECKED: list[str] = []
"""Names of the schemas checked so far in this process (the conformance test reads it)."""


def check_response(response: httpx.Response) -> None:
    """httpx response hook: the answer has the platform's shape for its endpoint."""
    request = response.request
    if response.headers.get("content-type", "").split(";")[0] != "application/json":
        return
    name = schema_of(request.method, request.url.path, response.status_code)
    response.read()
    if name is None:
        # Ours (runs/{id}): its deployments are the platform's ReadSummary all the same.
        for deployment in response.json().get("deployments", []):
            assert_conforms("ReadSummary", deployment)
        return
    assert_conforms(name, response.json())
    CHECKED.append(name)
