"""``GET /openapi.json``: an OpenAPI 3.1 document built from the wire models.

The schemas come from the same msgspec Structs the server encodes its
responses with, so the document cannot drift from what is served.
"""

from __future__ import annotations

import functools
from typing import Any, get_args

import msgspec

from compartment_cli import __version__
from compartment_cli.models.api import (
    BUSY_RUN_HEADER,
    DeployResponse,
    EnvironmentListResponse,
    ErrorResponse,
    ListLimit,
    ListResponse,
    PromoteRequest,
    RollbackRequest,
    RunResponse,
    StatusResponse,
)
from compartment_cli.models.base import EnvironmentName, ProjectName, ServiceName
from compartment_cli.models.events import RunCompletedEvent, RunStep, StepEvent
from compartment_cli.models.logs import LogsResponse, TailLines

_REF = "#/components/schemas/{name}"


def _ref(model: type) -> dict[str, str]:
    return {"$ref": _REF.format(name=model.__name__)}


def _json(model: type) -> dict[str, Any]:
    return {"application/json": {"schema": _ref(model)}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {
        str(status): {"description": "Error", "content": _json(ErrorResponse)}
        for status in (400, 401, *statuses)
    }


def _query(name: str, schema: dict[str, Any], *, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": schema}


# The query parameters share the request bodies' name types.
_PROJECT = msgspec.json.schema(ProjectName)
_ENVIRONMENT = msgspec.json.schema(EnvironmentName)
_SERVICE = msgspec.json.schema(ServiceName)


@functools.cache
def openapi_document() -> bytes:
    _, components = msgspec.json.schema_components(
        [
            PromoteRequest,
            RollbackRequest,
            DeployResponse,
            StatusResponse,
            ListResponse,
            RunResponse,
            LogsResponse,
            EnvironmentListResponse,
            StepEvent,
            RunCompletedEvent,
            ErrorResponse,
        ],
        ref_template=_REF,
    )
    paths: dict[str, Any] = {
        "/healthz": {
            "get": {
                "operationId": "healthz",
                "summary": "Liveness of the control plane (no auth).",
                "security": [],
                "responses": {
                    "200": {
                        "description": "Serving",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {"status": {"const": "ok"}},
                                    "required": ["status"],
                                }
                            }
                        },
                    }
                },
            }
        },
        "/v1/deployments/promote": {
            "post": {
                "operationId": "promoteDeployment",
                "summary": "Make the deployments active in one environment active in another,"
                " without a rebuild.",
                "description": "Extensions of ours, left out by clients that do not use them:"
                " sourceDeploymentIds (409 plan_stale unless the source's active deployments"
                " are exactly these, checked atomically at admission) and bakeMs (after the"
                " switch, watch the new deployments this long, the previous ones still"
                " running; a failure switches every route of the run back: steps baking and"
                " switching_back). A busy target (409 deployment_target_busy) names the run"
                " holding it in the message and in the header " + BUSY_RUN_HEADER + ".",
                "requestBody": {"required": True, "content": _json(PromoteRequest)},
                "responses": {
                    "200": {"description": "The run", "content": _json(DeployResponse)},
                    **_errors(404, 409),
                },
            }
        },
        "/v1/deployments/rollback": {
            "post": {
                "operationId": "rollbackDeployment",
                "summary": "Make earlier deployments of an environment active again, started"
                " from their artifacts (no rebuild), gated by readiness like a promotion.",
                "description": "Without a target: each active service (or serviceName) goes"
                " back to its previous deployment. targetDeploymentRunId: that run's"
                " deployments. targetDeploymentId: one service to that deployment. bakeMs"
                " (ours) as on promote. A target whose artifact retention removed is refused"
                " with 409 deployment_image_cleaned.",
                "requestBody": {"required": True, "content": _json(RollbackRequest)},
                "responses": {
                    "200": {"description": "The run", "content": _json(DeployResponse)},
                    **_errors(404, 409),
                },
            }
        },
        "/v1/deployments": {
            "get": {
                "operationId": "listDeployments",
                "summary": "Deployments of an environment, newest first.",
                "parameters": [
                    _query("projectName", _PROJECT, required=True),
                    _query("environmentName", _ENVIRONMENT),
                    _query("serviceName", _SERVICE),
                    _query("limit", msgspec.json.schema(ListLimit)),
                ],
                "responses": {
                    "200": {"description": "The list", "content": _json(ListResponse)},
                    **_errors(404),
                },
            },
            "post": {
                "operationId": "deploy",
                "summary": "Deploy: upload the services of compartment.yml as one gzipped tar"
                " (manifest.json first, then services/<name>/...).",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/gzip": {
                            "schema": {"type": "string", "contentMediaType": "application/gzip"}
                        }
                    },
                },
                "responses": {
                    "200": {"description": "The run", "content": _json(DeployResponse)},
                    **_errors(404, 409, 413, 415),
                },
            },
        },
        "/v1/deployments/status": {
            "get": {
                "operationId": "getDeploymentStatus",
                "summary": "Active deployments of an environment and the deployments asked for.",
                "parameters": [
                    _query("projectName", _PROJECT, required=True),
                    _query("environmentName", _ENVIRONMENT),
                    _query("deploymentId", {"type": "string", "minLength": 1}),
                    _query("serviceName", _SERVICE),
                ],
                "responses": {
                    "200": {"description": "Status", "content": _json(StatusResponse)},
                    **_errors(404),
                },
            }
        },
        "/v1/deployments/runs/{deploymentRunId}": {
            "get": {
                "operationId": "getDeploymentRun",
                "summary": "One deployment run (ours): where it goes and how it stands.",
                "parameters": [
                    {
                        "name": "deploymentRunId",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    }
                ],
                "responses": {
                    "200": {"description": "The run", "content": _json(RunResponse)},
                    **_errors(404),
                },
            }
        },
        "/v1/deployments/logs": {
            "get": {
                "operationId": "getDeploymentLogs",
                "summary": "Log lines of the active deployments of an environment (the platform's"
                " endpoint); ours: deploymentId or deploymentRunId pick other deployments, and"
                " follow=true answers with server-sent events (`log`, then `end`).",
                "parameters": [
                    _query("projectName", _PROJECT, required=True),
                    _query("environmentName", _ENVIRONMENT),
                    _query("serviceName", _SERVICE),
                    _query("since", {"type": "string", "format": "date-time"}),
                    _query("tailLines", msgspec.json.schema(TailLines)),
                    _query("deploymentId", {"type": "string", "minLength": 1}),
                    _query("deploymentRunId", {"type": "string", "minLength": 1}),
                ],
                "responses": {
                    "200": {"description": "The lines", "content": _json(LogsResponse)},
                    **_errors(404),
                },
            }
        },
        "/v1/environments": {
            "get": {
                "operationId": "listEnvironments",
                "summary": "A project's environments (ours), so that a mistyped target is caught"
                " before a promotion creates it.",
                "parameters": [_query("projectName", _PROJECT, required=True)],
                "responses": {
                    "200": {
                        "description": "Environments",
                        "content": _json(EnvironmentListResponse),
                    },
                    **_errors(404),
                },
            }
        },
        "/v1/events": {
            "get": {
                "operationId": "streamEvents",
                "summary": "Server-sent events of one environment (ours): deployment.step,"
                " deployment.status, run.completed. Reconnect with Last-Event-ID.",
                "description": "Each event's data is one JSON line: deployment.step is a"
                " StepEvent (its step one of "
                + ", ".join(get_args(RunStep))
                + "; baking and switching_back are ours, for bakeMs), deployment.status a"
                " ReadSummary, run.completed a RunCompletedEvent.",
                "parameters": [
                    _query("projectName", _PROJECT, required=True),
                    _query("environmentName", _ENVIRONMENT, required=True),
                    {
                        "name": "Last-Event-ID",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string", "pattern": "^[0-9]+$"},
                    },
                ],
                "responses": {
                    "200": {
                        "description": "An endless event stream",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    },
                    **_errors(404),
                },
            }
        },
    }
    document = {
        "openapi": "3.1.0",
        "info": {"title": "Compartment control plane (local)", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }
    return msgspec.json.encode(document)
