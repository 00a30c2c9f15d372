"""GitHub Actions, when ``GITHUB_ACTIONS=true``: what a workflow run shows of a promotion.

- ``--verbose`` progress is folded in ``::group::``/``::endgroup::``, one group per run;
- a failure gives an ``::error title=…::`` line per failed service (or one for the
  error that ended the command), naming the service and the reason;
- a Markdown table is appended to ``$GITHUB_STEP_SUMMARY`` (service, deployment,
  status, route, duration, failure reason, run id);
- ``deployment-run-id``, ``status``, ``route-url-<service>`` and ``route-urls``
  (all of them as one JSON object) are appended to ``$GITHUB_OUTPUT``.

Workflow commands go to stderr (the runner reads them on both streams), so that
stdout keeps its one JSON document. Nothing of this happens without the variable.
Pure functions make the lines; ``GitHubActions`` only appends them to the files.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from compartment_cli import render

if TYPE_CHECKING:
    from compartment_cli.errors import CompartmentError
    from compartment_cli.models.result import RunResult

__all__ = ["GitHubActions", "command", "outputs", "summary_table"]


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def command(name: str, message: str = "", **properties: str) -> str:
    """One workflow command line: ``::error title=…::message``."""
    props = ",".join(f"{key}={_escape_property(value)}" for key, value in properties.items())
    return f"::{name}{' ' + props if props else ''}::{_escape_data(message)}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ") or "-"


def summary_table(result: RunResult) -> str:
    """The job summary's Markdown: a title line, then one row per service."""
    move = (
        f"{result.source_environment.name} → {result.environment.name}"
        if result.source_environment is not None
        else f"deploy to {result.environment.name}"
    )
    lines = [
        f"### compartment: {result.project.name} {move}: {result.status}",
        "",
        "| service | deployment | status | route | duration | failure reason | run |",
        "|---|---|---|---|---|---|---|",
    ]
    for d in sorted(result.deployments, key=lambda d: d.service_name):
        duration = render.format_duration(render.deployment_duration_ms(d))
        cells = [
            d.service_name,
            d.id,
            d.status,
            d.route_url or "",
            duration,
            d.failure_message or "",
            result.deployment_run_id,
        ]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n\n"


def outputs(result: RunResult | None, error: CompartmentError | None = None) -> dict[str, str]:
    """The step outputs: ``deployment-run-id``, ``status``, ``route-url-<service>``."""
    if result is not None:
        found = {"deployment-run-id": result.deployment_run_id, "status": result.status}
        routes = {d.service_name: d.route_url for d in result.deployments if d.route_url}
        for service, url in sorted(routes.items()):
            found[f"route-url-{service}"] = url
        found["route-urls"] = json.dumps(routes, sort_keys=True)
        return found
    run = None if error is None else error.run
    return {
        "deployment-run-id": "" if run is None else run.run_id,
        "status": "error" if error is None else error.code,
    }


@dataclass(frozen=True)
class GitHubActions:
    """Where a GitHub Actions step takes what this command adds (None: not in Actions)."""

    summary_path: Path | None
    output_path: Path | None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> GitHubActions | None:
        if environ.get("GITHUB_ACTIONS") != "true":
            return None

        def path(name: str) -> Path | None:
            value = environ.get(name, "")
            return Path(value) if value else None

        return cls(path("GITHUB_STEP_SUMMARY"), path("GITHUB_OUTPUT"))

    def failure_lines(self, result: RunResult, verb: str) -> list[str]:
        if result.status == "succeeded":
            return []
        failed = [d for d in result.deployments if d.status != "succeeded" or d.failure_message]
        return [
            command(
                "error",
                d.failure_message or d.status,
                title=f"{verb} {result.deployment_run_id}: {d.service_name} {d.status}",
            )
            for d in sorted(failed, key=lambda d: d.service_name)
        ] or [command("error", f"run {result.deployment_run_id} failed", title=f"{verb} failed")]

    def error_line(self, error: CompartmentError, message: str) -> str:
        return command("error", message, title=f"compartment: {error.code}")

    def record(self, result: RunResult | None, error: CompartmentError | None = None) -> None:
        """Append the job summary (for a result) and the step outputs."""
        if result is not None:
            self._append(self.summary_path, summary_table(result))
        lines = "".join(f"{k}={v}\n" for k, v in outputs(result, error).items())
        self._append(self.output_path, lines)

    @staticmethod
    def _append(path: Path | None, text: str) -> None:
        if path is None:
            return
        with contextlib.suppress(OSError), path.open("a", encoding="utf-8") as file:
            file.write(text)
