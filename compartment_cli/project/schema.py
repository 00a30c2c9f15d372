"""The compartment.yml schema, checked on the node tree with a line for each problem.

The keys, enums, patterns and limits come from the wire models
(``compartment_cli.models.descriptor`` and ``compartment_cli.models.base``): this
module decides only how each is reported.
"""

from __future__ import annotations

import re
from typing import Final

from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from compartment_cli.models.base import (
    PROJECT_NAME_PATTERN,
    PROJECT_NAME_RULE,
    RESERVED_PROJECT_NAMES,
    SERVICE_NAME_PATTERN,
    SERVICE_NAME_RULE,
    required_keys,
    wire_keys,
)
from compartment_cli.models.descriptor import (
    BUILD_STRATEGIES,
    MAX_READINESS_TIMEOUT_MS,
    READINESS_TYPES,
    SERVICE_KINDS,
    BuildConfig,
    Descriptor,
    ReadinessConfig,
    RunConfig,
    ServiceConfig,
)
from compartment_cli.project.nodes import (
    _INVALID,
    _NON_TEXT_TAGS,
    NodeReader,
    _At,
    _contains_invalid,
    _line,
    _quote,
)

PROJECT_NAME_RE: Final = re.compile(PROJECT_NAME_PATTERN)
SERVICE_NAME_RE: Final = re.compile(SERVICE_NAME_PATTERN)
# Keys the file may hold, as the models name them on the wire. ``release`` is
# checked here but not carried by ServiceConfig (nothing runs it locally).
TOP_KEYS: Final = wire_keys(Descriptor)
SERVICE_KEYS: Final = (*wire_keys(ServiceConfig), "release")
BUILD_KEYS: Final = wire_keys(BuildConfig)
RUN_KEYS: Final = wire_keys(RunConfig)
READINESS_KEYS: Final = wire_keys(ReadinessConfig)


class DescriptorChecker(NodeReader):
    """Checks a compartment.yml node tree against the schema; builds the Descriptor's data."""

    def document(self, root: Node) -> dict[str, object] | None:
        self.check_tags(root)
        at = _At(root, _line(root), ())
        if id(root) not in self._bad_tags and not isinstance(root, MappingNode):
            self.report(
                at, f"the file must be a mapping with name and services, not {self.describe(at)}"
            )
            return None
        return self.strict_mapping(
            at,
            TOP_KEYS,
            required_keys(Descriptor),
            {"name": self.project_name, "services": self.services, "resources": self.resources},
        )

    def project_name(self, at: _At) -> str | None:
        name = self.string(at)
        if name is None:
            return None
        if not PROJECT_NAME_RE.fullmatch(name):
            self.report(
                at,
                f"{_quote(name)} is not a project slug: {PROJECT_NAME_RULE}",
            )
            return None
        if name in RESERVED_PROJECT_NAMES:
            self.report(at, f"{_quote(name)} is reserved; choose another name")
            return None
        return name

    def services(self, at: _At) -> dict[str, object] | None:
        entries = self.mapping(at)
        if entries is None:
            return None
        if not at.node.value:
            self.report(at, "must have at least one service")
            return None
        out: dict[str, object] = {}
        ok = True
        for name, entry in entries.items():
            if not SERVICE_NAME_RE.fullmatch(name):
                self.report(
                    at.child(entry.key, name),
                    f"is not a valid service name: {SERVICE_NAME_RULE}",
                )
                ok = False
            service = self.service(at.child(entry.value, name, _line(entry.key)))
            if service is None:
                ok = False
            else:
                out[name] = service
        return out if ok else None

    def service(self, at: _At) -> dict[str, object] | None:
        node = at.node
        if isinstance(node, ScalarNode) and node.tag not in _NON_TEXT_TAGS:
            path = self.service_path(at)
            return None if path is None else {"path": path}
        if isinstance(node, MappingNode) or id(node) in self._bad_tags:
            service = self.strict_mapping(
                at,
                SERVICE_KEYS,
                required_keys(ServiceConfig),
                {
                    "path": self.service_path,
                    "kind": lambda a: self.choice(a, SERVICE_KINDS),
                    "accessMode": self.string,
                    "build": self.build,
                    "run": self.run,
                    "release": self.release,
                    "readiness": self.readiness,
                    "connections": self.connections,
                },
            )
            if service is not None:
                # Validated, but ServiceConfig has no place for it (yet).
                service.pop("release", None)
            return service
        self.report(at, f"must be a path string or a mapping, not {self.describe(at)}")
        return None

    def service_path(self, at: _At) -> str | None:
        path = self.string(at, "a path string")
        if path == "":
            self.report(at, "must not be empty (use . for the repository root)")
            return None
        return path

    def build(self, at: _At) -> dict[str, object] | None:
        return self.strict_mapping(
            at,
            BUILD_KEYS,
            required_keys(BuildConfig),
            {
                "command": self.string,
                "env": self.env,
                "include": self.strings,
                "outputDirectory": self.string,
                "packages": self.strings,
                "strategy": lambda a: self.choice(a, BUILD_STRATEGIES),
            },
        )

    def env(self, at: _At) -> dict[str, str] | None:
        entries = self.mapping(at)
        if entries is None:
            return None
        values = {
            name: self.string(at.child(e.value, name, _line(e.key))) for name, e in entries.items()
        }
        if None in values.values():
            return None
        return {name: value for name, value in values.items() if value is not None}

    def run(self, at: _At) -> dict[str, object] | None:
        run = self.strict_mapping(at, RUN_KEYS, required_keys(RunConfig), {"command": self.string})
        if run == {}:
            self.report(at, "must have at least one key (command)")
            return None
        return run

    def release(self, at: _At) -> object:
        if self.mapping(at) is None:
            return None
        return self._complete(self.plain(at))

    def readiness(self, at: _At) -> dict[str, object] | None:
        return self.strict_mapping(
            at,
            READINESS_KEYS,
            ("type",),  # required in the file, though the model has a default
            {
                "type": lambda a: self.choice(a, READINESS_TYPES),
                "path": self.readiness_path,
                "timeoutMs": self.timeout_ms,
            },
        )

    def readiness_path(self, at: _At) -> str | None:
        path = self.string(at)
        if path is not None and not path.startswith("/"):
            self.report(at, f"must start with /, not {_quote(path)}")
            return None
        return path

    def timeout_ms(self, at: _At) -> int | None:
        if id(at.node) in self._bad_tags:
            return None
        value = self.scalar(at) if isinstance(at.node, ScalarNode) else None
        if value is _INVALID:
            return None
        if not isinstance(value, int) or isinstance(value, bool):
            self.report(at, f"must be a whole number of milliseconds, not {self.describe(at)}")
            return None
        if value <= 0:
            self.report(at, f"must be greater than 0, not {value}")
            return None
        if value > MAX_READINESS_TIMEOUT_MS:
            self.report(at, f"must be at most {MAX_READINESS_TIMEOUT_MS}, not {value}")
            return None
        return value

    def connections(self, at: _At) -> object:
        if (
            not isinstance(at.node, MappingNode | SequenceNode)
            and id(at.node) not in self._bad_tags
        ):
            self.report(at, f"must be a mapping or a list, not {self.describe(at)}")
            return None
        return self._complete(self.plain(at))

    def resources(self, at: _At) -> object:
        if self.mapping(at) is None:
            return None
        return self._complete(self.plain(at))

    def _complete(self, value: object) -> object:
        """``value``, or None when any part of it was reported invalid."""
        return None if _contains_invalid(value) else value
