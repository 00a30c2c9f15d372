"""The control plane's refusals: what the API answers when it will not do a request.

Each becomes ``{"error": {"code", "message"}}`` with its HTTP status (``app.py``
maps them); codes are the platform's where it has one. Refusals raised in more
than one place are built here, once.
"""

from __future__ import annotations


class Refusal(Exception):
    """The API refuses a request: an HTTP status and the platform's error code."""

    def __init__(
        self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def project_not_found(project: str) -> Refusal:
    return Refusal(404, "project_not_found", f"project {project!r} not found")


def environment_not_found(environment: str, project: str) -> Refusal:
    return Refusal(
        404,
        "environment_not_found",
        f"environment {environment!r} not found in project {project!r}",
    )
