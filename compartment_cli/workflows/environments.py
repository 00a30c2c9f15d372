"""The target environment, looked at before a run is requested.

The platform creates a target environment on first use, so a mistyped
``--to prodution`` would promote into a new, empty environment and pass a CI
gate while production stays untouched. Before promote or deploy request a
run, ``check_target`` lists the project's environments (``GET
/v1/environments``, ours) and refuses a name that does not exist but is close
to one that does (``UsageError``, exit 2, "did you mean production?"), unless
the caller asks to create it. Close means: the same but for case and ``-``/``_``,
or at most two edits apart (and fewer edits than the shorter name has
letters); names that differ only in their digits (``pr-1``, ``pr-2``) are
meant to differ. A control plane that cannot list environments is said so
(a notice, shown in verbose mode) and the run goes on unchecked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from compartment_cli.client.api import ApiClient
from compartment_cli.errors import ApiRefused, UsageError

__all__ = ["TargetCheck", "check_target", "closest", "edit_distance", "is_near"]

MAX_EDITS = 2


class _Notices(Protocol):
    def notice(self, message: str) -> None: ...


@dataclass(frozen=True)
class TargetCheck:
    exists: bool | None
    """Whether the target environment existed before the request; None: not known."""


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance: insertions, deletions and substitutions."""
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, 1):
        current = [i]
        for j, char_b in enumerate(b, 1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b))
            )
        previous = current
    return previous[-1]


def _fold(name: str) -> str:
    return name.lower().replace("_", "-")


def _without_digits(name: str) -> str:
    return "".join(c for c in name if not c.isdigit())


def is_near(name: str, existing: str) -> bool:
    """Whether ``name`` looks like a mistyped ``existing`` (see the module's docstring)."""
    if name == existing:
        return False
    a, b = _fold(name), _fold(existing)
    if a == b:
        return True
    if _without_digits(a) == _without_digits(b):
        return False
    distance = edit_distance(a, b)
    return distance <= MAX_EDITS and distance < min(len(a), len(b))


def closest(name: str, existing: list[str]) -> str | None:
    """The existing name ``name`` most likely mistypes, if any."""
    near = [e for e in existing if is_near(name, e)]
    return min(near, key=lambda e: (edit_distance(_fold(name), _fold(e)), e), default=None)


async def check_target(
    api: ApiClient, project: str, target: str, *, flag: str, create: bool, progress: _Notices
) -> TargetCheck:
    """Refuse a ``target`` that mistypes an environment of ``project`` unless ``create``."""
    try:
        listing = await api.environments(project)
    except ApiRefused as exc:
        if exc.code != "project_not_found":  # a new project: the request itself will tell
            progress.notice(
                f"the control plane at {api.where} cannot list environments ({exc.code}); "
                f"{flag} {target} is not checked against the existing ones"
            )
        return TargetCheck(exists=None)
    names = sorted(e.name for e in listing.environments)
    if target in names:
        return TargetCheck(exists=True)
    suggestion = closest(target, names)
    if suggestion is not None and not create:
        raise UsageError(
            f"{flag} {target!r} is not an environment of {project}, but close to "
            f"{suggestion!r}: did you mean {suggestion}? (To create {target!r}, add "
            f"--create-env.) Environments: {', '.join(names)}",
            code="environment_name_suspect",
        )
    return TargetCheck(exists=False)
