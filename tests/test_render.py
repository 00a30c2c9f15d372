"""Renderers are pure: a result or an event in, lines or bytes out."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import msgspec

from compartment_cli import render
from compartment_cli.models.api import ListResponse, NameRef, ReadOperationSummary, ReadSummary
from compartment_cli.models.events import StepEvent
from compartment_cli.models.result import RunResult


def summary(service: str, **changes: object) -> ReadSummary:
    base = ReadSummary(
        id=f"dep_{service}",
        service_name=service,
        deployment_run_id="run_1",
        status="succeeded",
        promotion_stage="active",
        health="healthy",
        is_active=True,
        label=None,
        route_url=f"http://127.0.0.1:900{len(service)}/",
        failure_message=None,
        created_at="2025-01-01T12:00:00.000Z",
        completed_at="2025-01-01T12:00:04.200Z",
        rollback_available=False,
        operation=ReadOperationSummary(
            type="promote", status="succeeded", created_at="x", completed_at=None
        ),
    )
    return msgspec.structs.replace(base, **changes)


def result(status: str = "succeeded", *deployments: ReadSummary) -> RunResult:
    deps = list(deployments) or [summary("web"), summary("api")]
    return RunResult(
        deployment_run_id="run_1",
        status=status,  # type: ignore[arg-type]
        project=NameRef(name="shop"),
        source_environment=NameRef(name="staging"),
        environment=NameRef(name="production"),
        deployments=deps,
        active_deployments=deps,
        duration_ms=4200,
    )


def test_result_lines_header_then_one_row_per_service() -> None:
    lines = render.result_lines(result())
    assert lines == [
        "shop  staging → production  run run_1  succeeded  4.2s",
        "SERVICE  DEPLOYMENT  STATUS     ROUTE                   DURATION",
        "api      dep_api     succeeded  http://127.0.0.1:9003/  4.2s",
        "web      dep_web     succeeded  http://127.0.0.1:9003/  4.2s",
    ]


def test_result_header_of_a_deploy() -> None:
    deployed = msgspec.structs.replace(result(), source_environment=None)
    assert (
        render.result_lines(deployed)[0] == "shop  deploy to production  run run_1  succeeded  4.2s"
    )


def test_result_header_says_new_environment_and_joined_run_when_the_result_does() -> None:
    joined = msgspec.structs.replace(result(), environment_created=True, joined=True)
    assert render.header_line(joined) == (
        "shop  staging → production (new environment)  joined run run_1 already in progress"
        "  succeeded  4.2s"
    )


def test_result_lines_without_route_or_completion() -> None:
    worker = summary("worker", route_url=None, completed_at=None, status="stopped", is_active=False)
    (line,) = render.result_lines(result("failed", worker))[2:]
    assert line.split() == ["worker", "dep_worker", "stopped", "-", "-"]


def test_a_failed_deployment_is_not_shown_as_served_by_its_route() -> None:
    previous = summary("web", id="dep_old")
    failed = summary("web", id="dep_new", status="failed", is_active=False)
    failed_run = msgspec.structs.replace(result("failed", failed), active_deployments=[previous])
    (line,) = render.result_lines(failed_run)[2:]
    assert "not switched: http://127.0.0.1:9003/ still serves dep_old" in line
    first = msgspec.structs.replace(failed_run, active_deployments=[])
    assert render.result_lines(first)[2].split()[3:5] == ["not", "switched"]


def test_colour_only_when_asked() -> None:
    plain = render.result_lines(result())
    coloured = render.result_lines(result(), color=True)
    assert all("\x1b[" not in line for line in plain)
    assert any("\x1b[32msucceeded" in line for line in coloured)


def test_failure_lines() -> None:
    assert render.failure_lines(result()) == []
    failed = summary("web", status="failed", failure_message="web: GET /healthz answered 503")
    lines = render.failure_lines(result("failed", failed, summary("api")))
    assert lines[0] == ("The promotion failed: production keeps serving its previous deployments.")
    assert lines[1:] == [
        "  web: GET /healthz answered 503",
        "    all of its output: compartment deployment logs dep_web",
    ]


def test_failure_lines_of_a_run_that_had_ended_are_in_the_past() -> None:
    failed = summary("web", status="failed", failure_message="web: boom")
    lines = render.failure_lines(result("failed", failed), ended=True)
    assert lines[0] == "The promotion failed: production kept serving its previous deployments."


def test_failure_lines_name_each_service_once() -> None:
    failed = result(
        "failed",
        summary("api", status="failed", failure_message="api: readiness GET /healthz answered 503"),
        summary("web", status="failed", failure_message="exited with code 3"),
    )
    assert render.failure_lines(failed)[1:] == [
        "  api: readiness GET /healthz answered 503",
        "    all of its output: compartment deployment logs dep_api",
        "  web: exited with code 3",
        "    all of its output: compartment deployment logs dep_web",
    ]


def test_a_cause_is_printed_once_under_its_service() -> None:
    crash = (
        "s14: process exited with code 1 before it was ready; last log lines:\n"
        "  Traceback (most recent call last):\n  ValueError: boom"
    )
    services = [f"s{i:02d}" for i in range(20)]
    deployments = [
        summary(
            s,
            status="failed",
            failure_message=crash
            if s == "s14"
            else f"{s}: not promoted, because s14: process exited with code 1 before it was ready;"
            " last log lines:\n  Traceback (most recent call last):\n  ValueError: boom",
        )
        for s in services
    ]
    lines = render.failure_lines(result("failed", *deployments))
    assert sum("ValueError: boom" in line for line in lines) == 1
    assert "  s03: not promoted: s14 failed" in lines
    at = lines.index("  s14: process exited with code 1 before it was ready; last log lines:")
    assert lines[at + 1 : at + 4] == [
        "    Traceback (most recent call last):",
        "    ValueError: boom",
        "    all of its output: compartment deployment logs dep_s14",
    ]
    assert len(lines) == 1 + 19 + 4


def test_result_json_is_the_documented_shape() -> None:
    document = json.loads(render.result_json(result()))
    assert list(document) == [
        "deploymentRunId",
        "status",
        "project",
        "sourceEnvironment",
        "environment",
        "deployments",
        "activeDeployments",
        "durationMs",
        "environmentCreated",
        "joined",
    ]
    assert document["deployments"][0]["serviceName"] == "web"
    assert document["durationMs"] == 4200


def test_error_json() -> None:
    raw = render.error_json("timeout", "Timed out.", 124)
    assert raw.endswith(b"\n")
    assert raw.count(b"\n") == 1
    assert json.loads(raw) == {
        "error": {"code": "timeout", "message": "Timed out.", "exitCode": 124}
    }


def test_error_json_names_the_run_once_there_is_one() -> None:
    raw = render.error_json(
        "timeout", "Timed out.", 124, run_id="run_1", project="shop", environment="production"
    )
    assert json.loads(raw)["error"] == {
        "code": "timeout",
        "message": "Timed out.",
        "exitCode": 124,
        "deploymentRunId": "run_1",
        "project": {"name": "shop"},
        "environment": {"name": "production"},
    }


def test_step_line_matches_the_documented_example() -> None:
    event = StepEvent(
        deployment_run_id="run_1",
        deployment_id="dep_api",
        service_name="api",
        step="checking_readiness",
        status="running",
        message="GET /healthz answered 503, retrying",
        at="2025-01-01T12:00:01.204Z",
    )
    assert render.step_line(event, tz=UTC) == (
        "12:00:01.204  api  checking_readiness  GET /healthz answered 503, retrying"
    )
    done = msgspec.structs.replace(event, status="succeeded", message="")
    assert render.step_line(done, tz=timezone(timedelta(hours=2))) == (
        "14:00:01.204  api  checking_readiness succeeded"
    )


def test_step_line_keeps_an_unparseable_time() -> None:
    event = StepEvent(
        deployment_run_id="r",
        deployment_id="d",
        service_name="api",
        step="queued",
        status="running",
        message="m",
        at="yesterday",
    )
    assert render.step_line(event).startswith("yesterday  api  queued  m")


def test_deployment_change_line() -> None:
    at = datetime(2025, 1, 1, 12, 0, 2, 5000, tzinfo=UTC)
    deployment = summary("web", status="running", promotion_stage="awaiting_readiness")
    assert render.deployment_change_line(deployment, at, tz=UTC) == (
        "12:00:02.005  web  running  awaiting_readiness  health healthy"
    )


def test_format_duration() -> None:
    assert render.format_duration(None) == "-"
    assert render.format_duration(850) == "850ms"
    assert render.format_duration(4200) == "4.2s"
    assert render.format_duration(65_000) == "1m05s"
    assert render.format_duration(7_380_000) == "2h03m"


def test_list_lines_and_json() -> None:
    listing = ListResponse(
        deployments=[summary("web"), summary("api", is_active=False, status="stopped")],
        environment=NameRef(name="production"),
        project=NameRef(name="shop"),
    )
    lines = render.list_lines(listing)
    assert lines[0].split() == [
        "SERVICE",
        "DEPLOYMENT",
        "STATUS",
        "STAGE",
        "ACTIVE",
        "CREATED",
        "ROUTE",
    ]
    assert lines[1].split()[:5] == ["web", "dep_web", "succeeded", "active", "active"]
    assert lines[1].split()[-1] == "http://127.0.0.1:9003/"
    # A stopped deployment is not reached through the route.
    assert lines[2].split()[:5] == ["api", "dep_api", "stopped", "active", "-"]
    assert lines[2].split()[-1] == "-"
    assert json.loads(render.list_json(listing))["project"] == {"name": "shop"}


def test_a_queued_step_that_succeeded_reads_queued() -> None:
    event = StepEvent(
        deployment_run_id="run_1",
        deployment_id="dep_api",
        service_name="api",
        step="queued",
        status="succeeded",
        message="promoting dep_1 from staging",
        at="2025-01-01T12:00:01.204Z",
    )
    assert render.step_line(event, tz=UTC) == (
        "12:00:01.204  api  queued  promoting dep_1 from staging"
    )
