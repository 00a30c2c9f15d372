"""The compartment.yml schema, checked on the node tree with a line for each problem.

The schema is the wire models' (``compartment_cli.models.descriptor``): this
module walks their msgspec type information, so the keys, enums, patterns and
limits it accepts are the models'. What the types cannot say (one field
depending on another, as the platform's descriptor schema states it) is in
``_RULES`` and ``_document_rules``; how each problem is worded is decided here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

import msgspec
import msgspec.inspect as mi
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode

from compartment_cli.models.base import (
    PROJECT_NAME_PATTERN,
    PROJECT_NAME_RULE,
    RESERVED_PROJECT_NAMES,
    SERVICE_NAME_PATTERN,
    SERVICE_NAME_RULE,
    wire_keys,
)
from compartment_cli.models.descriptor import (
    INCLUDE_GLOB_CHARACTERS,
    PACKAGE_NAME_PATTERN,
    PACKAGE_NAME_RULE,
    RESERVED_VARIABLE_PREFIX,
    RESOURCE_OUTPUT_NAME_PATTERN,
    RESOURCE_OUTPUT_NAME_RULE,
    VARIABLE_NAME_PATTERN,
    VARIABLE_NAME_RULE,
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
from compartment_cli.project.rules import RULES, Data

PROJECT_NAME_RE: Final = re.compile(PROJECT_NAME_PATTERN)
SERVICE_NAME_RE: Final = re.compile(SERVICE_NAME_PATTERN)
TOP_KEYS: Final = wire_keys(Descriptor)
SERVICE_KEYS: Final = wire_keys(ServiceConfig)
BUILD_KEYS: Final = wire_keys(BuildConfig)
RUN_KEYS: Final = wire_keys(RunConfig)
READINESS_KEYS: Final = wire_keys(ReadinessConfig)

_RULE_OF_PATTERN: Final = {
    PROJECT_NAME_PATTERN: PROJECT_NAME_RULE,
    SERVICE_NAME_PATTERN: SERVICE_NAME_RULE,
    VARIABLE_NAME_PATTERN: VARIABLE_NAME_RULE,
    PACKAGE_NAME_PATTERN: PACKAGE_NAME_RULE,
    RESOURCE_OUTPUT_NAME_PATTERN: RESOURCE_OUTPUT_NAME_RULE,
}
_NAME_OF_MAP: Final = {
    "services": "service name",
    "resources": "resource name",
    "connections": "resource name",
    "env": "variable name",
    "outputs": "output name",
}
# Required in the file although the model gives a default (the platform's rule).
_ALSO_REQUIRED: Final[dict[type, tuple[str, ...]]] = {ReadinessConfig: ("type",)}


def _name_problem(pattern: str | None, value: str) -> str | None:
    """Why ``value`` is not a valid name of ``pattern``; None when it is."""
    if pattern is None:
        return None
    if not re.fullmatch(pattern, value) or (
        pattern == VARIABLE_NAME_PATTERN and value.startswith(RESERVED_VARIABLE_PREFIX)
    ):
        return _RULE_OF_PATTERN.get(pattern, f"must match {pattern}")
    return None


class DescriptorChecker(NodeReader):
    """Checks a compartment.yml node tree against the models; builds the Descriptor's data."""

    # -- the document --

    def document(self, root: Node) -> Data | None:
        self.check_tags(root)
        at = _At(root, _line(root), ())
        if id(root) not in self._bad_tags and not isinstance(root, MappingNode):
            self.report(
                at, f"the file must be a mapping with name and services, not {self.describe(at)}"
            )
            return None
        data = self.struct(at, Descriptor)
        if data is not None and not self._document_rules(at, data):
            return None
        return data

    def _document_rules(self, at: _At, data: Data) -> bool:
        """Rules across services and resources: connections name declared resources."""
        ok = True
        services = data["services"]
        resources = data.get("resources", {})
        assert isinstance(services, dict)
        assert isinstance(resources, dict)
        for name in resources:
            if name in services:
                self.report(
                    self.locate(at, "resources", name), "must not have the name of a service"
                )
                ok = False
        for service_name, service in services.items():
            connections = service.get("connections", {}) if isinstance(service, dict) else {}
            claimed: dict[str, str] = {}
            for resource, connection in connections.items():
                where = self.locate(at, "services", service_name, "connections", resource)
                if resource not in resources:
                    self.report(where, "names no resource declared under resources")
                    ok = False
                for key in connection["env"]:
                    if key in claimed:
                        self.report(
                            self.locate(where, "env", key),
                            f"is also set by the connection to {claimed[key]}",
                        )
                        ok = False
                    claimed.setdefault(key, resource)
        return ok

    # -- walking the models' types --

    def struct(self, at: _At, cls: type[msgspec.Struct]) -> Data | None:
        info = mi.type_info(cls)
        assert isinstance(info, mi.StructType)
        handlers = {field.encode_name: self._handler(cls, field) for field in info.fields}
        required = tuple(f.encode_name for f in info.fields if f.required)
        data = self.strict_mapping(
            at,
            wire_keys(cls),
            (*required, *_ALSO_REQUIRED.get(cls, ())),
            handlers,
        )
        rule = RULES.get(cls)
        if data is not None and rule is not None and not rule(self, at, data):
            return None
        return data

    def _handler(self, cls: type, field: mi.Field) -> Callable[[_At], object]:
        override = _OVERRIDES.get((cls, field.encode_name))
        if override is not None:
            return lambda at: override(self, at)
        return lambda at: self.typed(at, field.type)

    def typed(self, at: _At, t: mi.Type) -> object:
        """The value at ``at`` checked against ``t``; None when a problem was reported."""
        if isinstance(t, mi.UnionType):
            (t,) = (option for option in t.types if not isinstance(option, mi.NoneType))
        if isinstance(t, mi.StructType):
            return self.struct(at, t.cls)
        if isinstance(t, mi.LiteralType):
            return self.choice(at, [str(value) for value in t.values])
        if isinstance(t, mi.StrType):
            return self.text(at, t)
        if isinstance(t, mi.IntType):
            return self.integer(at, t)
        if isinstance(t, mi.BoolType):
            return self.boolean(at)
        if isinstance(t, mi.ListType):
            return self.items(at, t)
        if isinstance(t, mi.DictType) and isinstance(t.value_type, mi.AnyType):
            return None if self.mapping(at) is None else self._complete(self.plain(at))
        if isinstance(t, mi.DictType):
            return self.entries(at, t)
        if isinstance(t, mi.AnyType):
            return self._complete(self.plain(at))
        raise TypeError(f"compartment.yml has no rule for {t!r}")  # a model grew a new type

    def text(self, at: _At, t: mi.StrType) -> str | None:
        value = self.string(at)
        if value is None:
            return None
        if t.min_length and len(value) < t.min_length:
            self.report(at, "must not be empty")
            return None
        problem = _name_problem(t.pattern, value)
        if problem:
            self.report(at, f"{_quote(value)} is not valid: {problem}")
            return None
        return value

    def integer(self, at: _At, t: mi.IntType) -> int | None:
        if id(at.node) in self._bad_tags:
            return None
        value = self.scalar(at) if isinstance(at.node, ScalarNode) else None
        if value is _INVALID:
            return None
        if not isinstance(value, int) or isinstance(value, bool):
            self.report(at, f"must be a whole number, not {self.describe(at)}")
            return None
        for words, bound, ok in (
            ("greater than", t.gt, t.gt is None or value > t.gt),
            ("at least", t.ge, t.ge is None or value >= t.ge),
            ("at most", t.le, t.le is None or value <= t.le),
        ):
            if not ok:
                self.report(at, f"must be {words} {bound}, not {value}")
                return None
        return value

    def boolean(self, at: _At) -> bool | None:
        value = self.scalar(at) if isinstance(at.node, ScalarNode) else None
        if isinstance(value, bool):
            return value
        if value is not _INVALID and id(at.node) not in self._bad_tags:
            self.report(at, f"must be true or false, not {self.describe(at)}")
        return None

    def items(self, at: _At, t: mi.ListType) -> list[object] | None:
        items = self.sequence(at)
        if items is None:
            return None
        values = [self.typed(item, t.item_type) for item in items]
        if None in values:
            return None
        if t.min_length and len(values) < t.min_length:
            self.report(at, "must not be empty")
            return None
        return values

    def entries(self, at: _At, t: mi.DictType) -> Data | None:
        pattern = t.key_type.pattern if isinstance(t.key_type, mi.StrType) else None
        return self.named_entries(at, pattern, lambda a: self.typed(a, t.value_type))

    def named_entries(
        self, at: _At, pattern: str | None, value_of: Callable[[_At], object]
    ) -> Data | None:
        """A mapping whose keys are names of ``pattern``, each value checked by ``value_of``."""
        entries = self.mapping(at)
        if entries is None:
            return None
        noun = _NAME_OF_MAP.get(str(at.path[-1]) if at.path else "", "name")
        out: Data = {}
        ok = True
        for name, entry in entries.items():
            problem = _name_problem(pattern, name)
            if problem:
                self.report(at.child(entry.key, name), f"is not a valid {noun}: {problem}")
                ok = False
            value = value_of(at.child(entry.value, name, _line(entry.key)))
            if value is None:
                ok = False
            else:
                out[name] = value
        return out if ok else None

    def _complete(self, value: object) -> object:
        """``value``, or None when any part of it was reported invalid."""
        return None if _contains_invalid(value) else value

    # -- fields worded by hand --

    def project_name(self, at: _At) -> str | None:
        name = self.string(at)
        if name is None:
            return None
        if not PROJECT_NAME_RE.fullmatch(name):
            self.report(at, f"{_quote(name)} is not a project slug: {PROJECT_NAME_RULE}")
            return None
        if name in RESERVED_PROJECT_NAMES:
            self.report(at, f"{_quote(name)} is reserved; choose another name")
            return None
        return name

    def services(self, at: _At) -> Data | None:
        if isinstance(at.node, MappingNode) and not at.node.value:
            self.report(at, "must have at least one service")
            return None
        return self.named_entries(at, SERVICE_NAME_PATTERN, self.service)

    def service(self, at: _At) -> object:
        node = at.node
        if isinstance(node, ScalarNode) and node.tag not in _NON_TEXT_TAGS:
            path = self.service_path(at)
            return None if path is None else {"path": path}
        if isinstance(node, MappingNode) or id(node) in self._bad_tags:
            return self.struct(at, ServiceConfig)
        self.report(at, f"must be a path string or a mapping, not {self.describe(at)}")
        return None

    def service_path(self, at: _At) -> str | None:
        path = self.string(at, "a path string")
        if path == "":
            self.report(at, "must not be empty (use . for the repository root)")
            return None
        return path

    def include(self, at: _At) -> list[str] | None:
        paths = self.strings(at)
        if paths is None:
            return None
        ok = True
        for index, path in enumerate(paths):
            where = self.locate_item(at, index)
            if not path:
                self.report(where, "must not be empty")
                ok = False
            elif path.startswith(("/", "\\")) or re.match(r"[A-Za-z]:[/\\]", path):
                self.report(where, f"{_quote(path)} must be relative to compartment.yml's folder")
                ok = False
            elif any(c in path for c in INCLUDE_GLOB_CHARACTERS):
                self.report(where, f"{_quote(path)} must be a literal path, not a pattern")
                ok = False
        return paths if ok else None

    def output_directory(self, at: _At) -> str | None:
        path = self.string(at)
        if path is None:
            return None
        depth = 0
        for part in path.replace("\\", "/").split("/"):
            if part == "..":
                depth -= 1
                if depth < 0:
                    break
            elif part not in ("", "."):
                depth += 1
        if depth <= 0 or path.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", path):
            self.report(
                at,
                f"{_quote(path)} must be a relative path inside the service directory, "
                "not the service directory itself",
            )
            return None
        return path


_OVERRIDES: Final[dict[tuple[type, str], Callable[[DescriptorChecker, _At], object]]] = {
    (Descriptor, "name"): DescriptorChecker.project_name,
    (Descriptor, "services"): DescriptorChecker.services,
    (ServiceConfig, "path"): DescriptorChecker.service_path,
    (BuildConfig, "include"): DescriptorChecker.include,
    (BuildConfig, "outputDirectory"): DescriptorChecker.output_directory,
}
