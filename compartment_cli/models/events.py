"""The deployment event stream, ``GET /v1/events`` (ours; CONTRACT.md section 4).

Every event has an integer ``id`` that only grows across the server, an
``event`` type and one ``data`` line of JSON. Unknown event types are not an
error: a client skips them, so the server may add types later.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from compartment_cli.models.api import ReadSummary, Wire

RunStep = Literal[
    "queued",
    "preparing_source",
    "building_image",
    "publishing_image",
    "release",
    "starting_candidate",
    "checking_readiness",
    "switching_route",
    "baking",
    "switching_back",
    "draining_previous",
    "completed",
]
"""The platform's steps, plus two of ours for ``bakeMs``: ``baking`` (the new deployments
watched after the switch) and ``switching_back`` (a bake failed: every route of the run
moved back to what it served before)."""
StepStatus = Literal["running", "succeeded", "failed", "skipped"]

STEP_EVENT = "deployment.step"
STATUS_EVENT = "deployment.status"
RUN_COMPLETED_EVENT = "run.completed"


class StepEvent(Wire):
    """``deployment.step``: one step of one deployment changed state."""

    deployment_run_id: str
    deployment_id: str
    service_name: str
    step: RunStep
    status: StepStatus
    message: str
    at: str


class RunCompletedEvent(Wire):
    """``run.completed``: the last event of a run."""

    deployment_run_id: str
    status: Literal["succeeded", "failed"]
    deployments: list[ReadSummary]
    at: str


class StatusEvent(msgspec.Struct, frozen=True):
    """``deployment.status``: a deployment's ReadSummary changed."""

    deployment: ReadSummary


DeploymentEvent = StepEvent | StatusEvent | RunCompletedEvent


class UnknownEventError(ValueError):
    """The event type is not one this client knows; callers skip it."""


def decode_event(event_type: str, data: str | bytes) -> DeploymentEvent:
    """Decode one event's ``data`` by its type.

    Raises ``UnknownEventError`` for a type this client does not know and
    ``msgspec.DecodeError`` / ``msgspec.ValidationError`` for malformed data.
    """
    try:
        if event_type == STEP_EVENT:
            return msgspec.json.decode(data, type=StepEvent)
        if event_type == STATUS_EVENT:
            return StatusEvent(msgspec.json.decode(data, type=ReadSummary))
        if event_type == RUN_COMPLETED_EVENT:
            return msgspec.json.decode(data, type=RunCompletedEvent)
    # msgspec raises these rather than DecodeError for JSON nested deeper than
    # the recursion limit (a few KB do it), for text with lone surrogates and
    # for invalid UTF-8 in a string field: malformed data all the same.
    except RecursionError:
        raise msgspec.DecodeError("JSON is malformed: nested too deeply") from None
    except UnicodeError:
        raise msgspec.DecodeError("JSON is malformed: not valid UTF-8") from None
    raise UnknownEventError(event_type)


def event_type_of(event: DeploymentEvent) -> str:
    if isinstance(event, StepEvent):
        return STEP_EVENT
    if isinstance(event, StatusEvent):
        return STATUS_EVENT
    return RUN_COMPLETED_EVENT


def encode_event_data(event: DeploymentEvent) -> bytes:
    """The JSON of an event's ``data:`` line (one line: msgspec never emits newlines)."""
    if isinstance(event, StatusEvent):
        return msgspec.json.encode(event.deployment)
    return msgspec.json.encode(event)


def run_id_of(event: DeploymentEvent) -> str:
    if isinstance(event, StatusEvent):
        return event.deployment.deployment_run_id
    return event.deployment_run_id
