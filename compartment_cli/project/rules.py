"""compartment.yml's rules across fields: what the models' types cannot say.

Each rule is one refinement of the platform's descriptor schema
(``compartment-descriptor.contract.ts`` and the ``service-*.contract.ts`` files),
run on a mapping that already passed its type checks. A rule reports at the
line of the key it is about and returns whether the mapping passed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from compartment_cli.models.descriptor import (
    BACKUP_VOLUME,
    DOCKERFILE,
    STATIC_KIND,
    BuildConfig,
    BuildPackages,
    ConnectionConfig,
    ResourceConfig,
    RestartConfig,
    RunConfig,
    ServiceConfig,
)
from compartment_cli.project.nodes import NodeReader, _At

Data = dict[str, object]


def _duplicates(values: list[object]) -> list[int]:
    """Indexes of the values that appeared before."""
    seen: set[object] = set()
    repeated = []
    for index, value in enumerate(values):
        if value in seen:
            repeated.append(index)
        seen.add(value)
    return repeated


def _run_rule(checker: NodeReader, at: _At, run: Data) -> bool:
    if not run:
        checker.report(at, "must have at least one key (command or restart)")
        return False
    return True


def _restart_rule(checker: NodeReader, at: _At, restart: Data) -> bool:
    if "maxRetries" in restart and restart["policy"] != "on-failure":
        checker.report(
            checker.locate(at, "maxRetries"), "is only supported with policy: on-failure"
        )
        return False
    return True


def _packages_rule(checker: NodeReader, at: _At, packages: Data) -> bool:
    if not packages.get("build") and not packages.get("runtime"):
        checker.report(at, "must list at least one build or runtime package")
        return False
    return True


def _build_rule(checker: NodeReader, at: _At, build: Data) -> bool:
    ok = True
    if build.get("strategy") == DOCKERFILE:
        for key in ("command", "packages", "outputDirectory"):
            if key in build:
                checker.report(
                    checker.locate(at, key),
                    f"is only supported when the build uses railpack, not strategy: {DOCKERFILE}",
                )
                ok = False
    return ok


def _unique_ports(checker: NodeReader, at: _At, data: Data) -> bool:
    ports = data.get("ports")
    if not isinstance(ports, list):
        return True
    for index in _duplicates(ports):
        checker.report(
            checker.locate_item(checker.locate(at, "ports"), index),
            f"port {ports[index]} is listed twice",
        )
    return not _duplicates(ports)


def _service_rule(checker: NodeReader, at: _At, service: Data) -> bool:
    ok = _unique_ports(checker, at, service)
    if service.get("ports") == []:
        checker.report(checker.locate(at, "ports"), "must not be empty")
        ok = False
    build = service.get("build", {})
    run = service.get("run", {})
    assert isinstance(build, dict)
    assert isinstance(run, dict)
    if build.get("strategy") == DOCKERFILE and "command" in run:
        checker.report(
            checker.locate(at, "run", "command"),
            f"is only supported when the build uses railpack, not strategy: {DOCKERFILE}",
        )
        ok = False
    if service.get("kind") == STATIC_KIND:
        if "outputDirectory" not in build:
            checker.report(checker.locate(at, "build"), "kind: static needs build.outputDirectory")
            ok = False
        for key in ("run", "readiness", "release"):
            if key in service:
                checker.report(checker.locate(at, key), "is not supported with kind: static")
                ok = False
        if "strategy" in build:
            checker.report(
                checker.locate(at, "build", "strategy"), "is not supported with kind: static"
            )
            ok = False
    elif "outputDirectory" in build:
        checker.report(
            checker.locate(at, "build", "outputDirectory"), "is only supported with kind: static"
        )
        ok = False
    if service.get("connections") == {}:
        checker.report(checker.locate(at, "connections"), "must not be empty")
        ok = False
    return ok


def _connection_rule(checker: NodeReader, at: _At, connection: Data) -> bool:
    if connection["env"] == {}:
        checker.report(checker.locate(at, "env"), "must not be empty")
        return False
    return True


def _resource_rule(checker: NodeReader, at: _At, resource: Data) -> bool:
    ok = _unique_ports(checker, at, resource)
    if "image" not in resource and "preset" not in resource:
        checker.report(at, "needs image or preset")
        ok = False
    readiness = resource.get("readiness")
    ports = resource.get("ports")
    declared = ports if isinstance(ports, list) else []
    if isinstance(readiness, dict) and readiness["port"] not in declared:
        checker.report(
            checker.locate(at, "readiness", "port"), "must be one of the resource's ports"
        )
        ok = False
    volumes = resource.get("volumes")
    if isinstance(volumes, dict) and BACKUP_VOLUME in volumes:
        checker.report(
            checker.locate(at, "volumes", BACKUP_VOLUME), "is reserved for managed backups"
        )
        ok = False
    return ok


RULES: Final[dict[type, Callable[[NodeReader, _At, Data], bool]]] = {
    RunConfig: _run_rule,
    RestartConfig: _restart_rule,
    BuildPackages: _packages_rule,
    BuildConfig: _build_rule,
    ServiceConfig: _service_rule,
    ConnectionConfig: _connection_rule,
    ResourceConfig: _resource_rule,
}
