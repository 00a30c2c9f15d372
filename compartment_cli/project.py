"""Finding, loading and validating ``compartment.yml`` (CONTRACT.md section 2).

``load_project_file`` reports every problem of the file at once, each with its
line and its key path as written (camelCase), and raises ``ProjectFileError``
for anything wrong: unreadable, too large, not UTF-8, YAML syntax, duplicate
keys, refused tags, schema violations. No other exception leaves this module
for a bad file.

How the YAML is read, and why not a loader
------------------------------------------
ruamel.yaml's safe loader builds no arbitrary objects, but it still turns
``!!timestamp``, ``!!binary``, ``!!set`` and ``!!omap`` into datetimes, bytes
and sets, stops at the first duplicate key, and drops line numbers; the
round-trip loader keeps lines (``.lc``) but wraps unknown tags into tagged
objects and also stops at the first duplicate. So this module only *composes*
the document (scanner, parser and composer: a tree of ``Node`` objects, each
with its tag and start mark) and turns the tree into values itself:

- every node's tag is checked first; only the YAML core tags (``str``,
  ``int``, ``float``, ``bool``, ``null``, ``seq``, ``map``, and ``<<`` merge
  keys) are accepted, so a tag such as ``!!python/object:os.system`` or
  ``!custom`` is a problem at its line, never a constructed object;
- plain scalars that YAML 1.1 would read as a date (``2024-01-01``) stay
  strings: they are just text here;
- duplicate keys are all reported, each with the line of the first one;
- aliases are followed with a budget and a cycle check, so an alias bomb or
  a self-referencing anchor is a problem, not a hang.
"""

from __future__ import annotations

import codecs
import difflib
import json
import math
import os
import re
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import msgspec
from ruamel.yaml import YAML
from ruamel.yaml.composer import ComposerError, MaxDepthExceededError
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.reader import ReaderError

from compartment_cli.errors import UsageError
from compartment_cli.models.descriptor import MAX_READINESS_TIMEOUT_MS, Descriptor

PROJECT_FILE: Final = "compartment.yml"
NOT_FOUND_MESSAGE: Final = (
    "compartment.yml was not found in the current directory. "
    "Pass --project <slug> or run inside a compartment repo."
)
MAX_FILE_BYTES: Final = 1024 * 1024
MAX_DEPTH: Final = 64
MAX_ALIAS_EXPANSION: Final = 100_000
MAX_PROBLEM_LINES: Final = 100

PROJECT_NAME_RE: Final = re.compile(r"[a-z][a-z0-9-]{0,62}")
SERVICE_NAME_RE: Final = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
RESERVED_PROJECT_NAMES: Final = frozenset({"create"})
SERVICE_KINDS: Final = ("web", "api", "static", "worker", "job", "cron")
BUILD_STRATEGIES: Final = ("auto", "dockerfile", "railpack")

_TOP_KEYS: Final = ("name", "services", "resources")
_SERVICE_KEYS: Final = (
    "path",
    "kind",
    "accessMode",
    "build",
    "run",
    "release",
    "readiness",
    "connections",
)
_BUILD_KEYS: Final = ("command", "env", "include", "outputDirectory", "packages", "strategy")
_RUN_KEYS: Final = ("command",)
_READINESS_KEYS: Final = ("type", "path", "timeoutMs")

_CORE: Final = "tag:yaml.org,2002:"
_STR, _INT, _FLOAT = _CORE + "str", _CORE + "int", _CORE + "float"
_BOOL, _NULL, _MERGE = _CORE + "bool", _CORE + "null", _CORE + "merge"
_SEQ, _MAP = _CORE + "seq", _CORE + "map"
_SCALAR_TAGS: Final = frozenset({_STR, _INT, _FLOAT, _BOOL, _NULL})
# Resolved implicitly from plain text by YAML 1.1 rules; kept as that text.
_TEXT_TAGS: Final = frozenset({_CORE + "timestamp", _CORE + "value"})
_NON_TEXT_TAGS: Final = frozenset({_INT, _FLOAT, _BOOL, _NULL})
_TRUE: Final = frozenset({"true", "yes", "on", "y"})
_FALSE: Final = frozenset({"false", "no", "off", "n"})
_SIMPLE_KEY_RE: Final = re.compile(r"[A-Za-z0-9_-]+")

KeyPath = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the file."""

    line: int | None
    """1-based line in the file; None for the file as a whole (unreadable, empty)."""
    key_path: str
    """Where, as written in the file: ``services.api.readiness.timeoutMs``; "" for the document."""
    message: str

    def render(self, file_name: str) -> str:
        where = file_name if self.line is None else f"{file_name}:{self.line}"
        if self.key_path:
            return f"{where}: {self.key_path}: {self.message}"
        return f"{where}: {self.message}"


class ProjectFileError(UsageError):
    """compartment.yml cannot be used; the message has one line per problem."""

    default_code = "invalid_project_file"

    def __init__(self, path: Path, problems: Sequence[Problem]) -> None:
        self.path = path
        self.problems = sorted(problems, key=lambda p: 0 if p.line is None else p.line)
        name = display_name(path)
        lines = [p.render(name) for p in self.problems[:MAX_PROBLEM_LINES]]
        if len(self.problems) > MAX_PROBLEM_LINES:
            lines.append(f"{name}: ... and {len(self.problems) - MAX_PROBLEM_LINES} more problems")
        super().__init__("\n".join(lines))


def display_name(path: Path) -> str:
    """``path`` relative to the current directory when it is inside it, else as given."""
    try:
        return str(path.absolute().relative_to(Path.cwd()))
    except (ValueError, OSError):
        return str(path)


def find_project_file(start: Path) -> Path | None:
    """The nearest ``compartment.yml`` in ``start`` or above it.

    Stops at the git root (a directory holding ``.git``, file or directory),
    after looking there, or at ``/`` outside git.
    """
    for directory in (start.absolute(), *start.absolute().parents):
        candidate = directory / PROJECT_FILE
        # os.path.lexists: a dangling link or a directory named compartment.yml
        # is found and then reported by load_project_file, not silently skipped.
        if os.path.lexists(candidate):
            return candidate
        if os.path.lexists(directory / ".git"):
            return None
    return None


def load_project_file(path: Path) -> Descriptor:
    """Read, parse and validate ``path``; raise ``ProjectFileError`` listing every problem."""
    text = _read_text(path)
    root = _compose(path, text)
    if root is None or (isinstance(root, ScalarNode) and root.tag == _NULL and not root.value):
        raise ProjectFileError(
            path, [Problem(None, "", "the file is empty; it needs name and services")]
        )
    checker = _Checker()
    try:
        data = checker.document(root)
    except _TooManyNodes as exc:
        checker.problems.append(
            Problem(
                _line(exc.node),
                "",
                f"aliases expand to more than {MAX_ALIAS_EXPANSION} values; write them out",
            )
        )
        data = None
    if checker.problems or data is None:
        raise ProjectFileError(path, checker.problems)
    try:
        return msgspec.convert(data, Descriptor)
    except msgspec.ValidationError as exc:  # the checks above and the models disagree
        raise ProjectFileError(path, [Problem(None, "", f"rejected by the model: {exc}")]) from None


# --- reading and composing ------------------------------------------------


def _file_problem(path: Path, message: str, line: int | None = None) -> ProjectFileError:
    return ProjectFileError(path, [Problem(line, "", message)])


def _read_text(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise _file_problem(path, f"cannot be read: {exc.strerror or type(exc).__name__}") from None
    if len(data) > MAX_FILE_BYTES:
        raise _file_problem(path, f"is larger than {MAX_FILE_BYTES // 1024} KiB")
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise _file_problem(
            path, f"is not valid UTF-8 (byte 0x{data[exc.start]:02x})", line
        ) from None


def _compose(path: Path, text: str) -> Node | None:
    """The document's node tree, or None for an empty document. Constructs nothing."""
    yaml = YAML(typ="safe", pure=True)
    yaml.max_depth = MAX_DEPTH
    try:
        with warnings.catch_warnings():
            # A reused anchor name is legal YAML (the later one wins); ruamel warns.
            warnings.simplefilter("ignore")
            node: Node | None = yaml.compose(text)
    except MaxDepthExceededError as exc:
        depth_line = int(exc.problem_mark.line) + 1
        raise _file_problem(
            path, f"is nested more than {MAX_DEPTH} levels deep", depth_line
        ) from None
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = None if mark is None else int(mark.line) + 1
        detail = str(exc.problem or type(exc).__name__).removeprefix("but ")
        if exc.context:
            detail += f" ({exc.context})"
        kind = "YAML error" if isinstance(exc, ComposerError) else "YAML syntax error"
        raise _file_problem(path, f"{kind}: {detail}", line) from None
    except ReaderError as exc:
        position = exc.position if isinstance(exc.position, int) else 0
        line = text.count("\n", 0, position) + 1
        character = f" (#x{exc.character:04x})" if isinstance(exc.character, int) else ""
        raise _file_problem(
            path, f"contains a character YAML does not allow{character}", line
        ) from None
    except YAMLError as exc:
        raise _file_problem(path, f"YAML error: {exc}") from None
    except RecursionError:
        raise _file_problem(path, "is nested too deeply") from None
    return node


# --- checking ---------------------------------------------------------------


def _quote(text: str) -> str:
    """``text`` in double quotes, control characters escaped."""
    return json.dumps(text, ensure_ascii=False)


def _line(node: Node) -> int:
    return int(node.start_mark.line) + 1


def _implicit(node: ScalarNode) -> bool:
    """Whether the node's tag was resolved from its plain text, not written."""
    return node.ctag.handle is None and node.style is None


def _render_path(path: KeyPath) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            text = part if _SIMPLE_KEY_RE.fullmatch(part) else json.dumps(part)
            out += f".{text}" if out else text
    return out


def _show_tag(tag: str) -> str:
    return "!!" + tag[len(_CORE) :] if tag.startswith(_CORE) else tag


class _Invalid:
    """A value whose problem is already reported."""


_INVALID: Final = _Invalid()


class _TooManyNodes(Exception):
    def __init__(self, node: Node) -> None:
        self.node = node


@dataclass(frozen=True)
class _At:
    """A value in the file: its node, the line to report it at, its key path."""

    node: Node
    line: int
    path: KeyPath

    def child(self, node: Node, key: str | int, line: int | None = None) -> _At:
        return _At(node, _line(node) if line is None else line, (*self.path, key))


@dataclass(frozen=True)
class _Entry:
    key: ScalarNode
    value: Node


class _Checker:
    """Walks the node tree once, collecting problems and building plain data."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self._bad_tags: set[int] = set()
        self._maps: dict[int, dict[str, _Entry]] = {}
        self._merging: set[int] = set()
        self._active: set[int] = set()
        self._first_paths: dict[int, KeyPath] = {}
        self._expanded = 0

    def report(self, at: _At, message: str, *, line: int | None = None) -> None:
        self.problems.append(
            Problem(at.line if line is None else line, _render_path(at.path), message)
        )

    def _charge(self, at: _At, size: int) -> None:
        """Count the values of a node reached again through an alias, under another path.

        Without aliases every node has one path and costs nothing here; an
        alias bomb reaches the same nodes under ever more paths and stops at
        ``MAX_ALIAS_EXPANSION``.
        """
        first = self._first_paths.setdefault(id(at.node), at.path)
        if first != at.path:
            self._expanded += size
            if self._expanded > MAX_ALIAS_EXPANSION:
                raise _TooManyNodes(at.node)

    # -- tags --

    def check_tags(self, root: Node) -> None:
        """Report every node whose tag is not a core tag of its kind, once per node."""
        seen: set[int] = set()
        stack: list[tuple[Node, KeyPath]] = [(root, ())]
        while stack:
            node, path = stack.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            tag = node.tag or ""
            if isinstance(node, ScalarNode):
                ok = tag in _SCALAR_TAGS or tag == _MERGE or (tag in _TEXT_TAGS and _implicit(node))
            elif isinstance(node, SequenceNode):
                ok = tag == _SEQ
            else:
                ok = tag == _MAP
            if not ok:
                self._bad_tags.add(id(node))
                self.report(
                    _At(node, _line(node), path),
                    f"the tag {_show_tag(tag)} is not allowed here "
                    "(only plain strings, numbers, booleans, null, lists and mappings)",
                )
                continue
            children: list[tuple[Node, KeyPath]] = []
            if isinstance(node, SequenceNode):
                children = [(item, (*path, i)) for i, item in enumerate(node.value)]
            elif isinstance(node, MappingNode):
                for key, value in node.value:
                    name = key.value if isinstance(key, ScalarNode) else "?"
                    children += [(key, path), (value, (*path, name))]
            stack.extend(reversed(children))

    # -- generic values --

    def scalar(self, at: _At) -> object:
        """The value of a scalar node; ``_INVALID`` when already reported."""
        node = at.node
        if id(node) in self._bad_tags:
            return _INVALID
        tag, text = node.tag, str(node.value)
        if tag == _NULL:
            return None
        if tag == _BOOL:
            if text.lower() in _TRUE:
                return True
            if text.lower() in _FALSE:
                return False
            self.report(at, f"{_quote(text)} is not a boolean")
            return _INVALID
        if tag == _INT:
            number = _parse_int(text)
            if number is None:
                self.report(at, f"{_quote(text)} is not an integer")
                return _INVALID
            return number
        if tag == _FLOAT:
            real = _parse_float(text)
            if real is None:
                self.report(at, f"{_quote(text)} is not a number")
                return _INVALID
            return real
        return text

    def mapping(self, at: _At) -> dict[str, _Entry] | None:
        """The entries of a mapping node, merges applied, duplicates reported.

        None (reported) when the node is not a mapping.
        """
        node = at.node
        if id(node) in self._bad_tags:
            return None
        if not isinstance(node, MappingNode):
            self.report(at, f"must be a mapping, not {self.describe(at)}")
            return None
        self._charge(at, len(node.value))
        cached = self._maps.get(id(node))
        if cached is not None:
            return cached
        if id(node) in self._merging:
            self.report(at, "merges itself through an alias")
            return {}
        self._merging.add(id(node))
        try:
            own: dict[str, _Entry] = {}
            merged: dict[str, _Entry] = {}
            for key, value in node.value:
                if isinstance(key, ScalarNode) and key.tag == _MERGE:
                    for source in self._merge_sources(at.child(value, "<<", _line(key))):
                        for name, entry in source.items():
                            merged.setdefault(name, entry)
                    continue
                if not isinstance(key, ScalarNode):
                    kind = "a list" if isinstance(key, SequenceNode) else "a mapping"
                    self.report(at, f"a key must be a string, not {kind}", line=_line(key))
                    continue
                if id(key) in self._bad_tags:
                    continue
                name = str(key.value)
                first = own.get(name)
                if first is not None:
                    self.report(
                        at.child(key, name),
                        f"duplicate key (first at line {_line(first.key)})",
                    )
                    continue
                own[name] = _Entry(key, value)
            for name, entry in merged.items():
                own.setdefault(name, entry)
        finally:
            self._merging.discard(id(node))
        self._maps[id(node)] = own
        return own

    def _merge_sources(self, at: _At) -> Iterator[dict[str, _Entry]]:
        node = at.node
        sources = node.value if isinstance(node, SequenceNode) else [node]
        for source in sources:
            if not isinstance(source, MappingNode):
                self.report(at, "<< must merge a mapping or a list of mappings")
                continue
            entries = self.mapping(_At(source, _line(source), at.path[:-1]))
            if entries is not None:
                yield entries

    def sequence(self, at: _At) -> list[_At] | None:
        node = at.node
        if id(node) in self._bad_tags:
            return None
        if not isinstance(node, SequenceNode):
            self.report(at, f"must be a list, not {self.describe(at)}")
            return None
        self._charge(at, len(node.value))
        return [at.child(item, i) for i, item in enumerate(node.value)]

    def plain(self, at: _At) -> object:
        """Any value, as JSON-like Python data (for resources, connections, release)."""
        node = at.node
        if id(node) in self._active:
            self.report(at, "refers to itself through an alias")
            return _INVALID
        if isinstance(node, ScalarNode):
            self._charge(at, 1)
            return self.scalar(at)
        self._active.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                items = self.sequence(at)
                return _INVALID if items is None else [self.plain(item) for item in items]
            entries = self.mapping(at)
            if entries is None:
                return _INVALID
            return {
                name: self.plain(at.child(e.value, name, _line(e.key)))
                for name, e in entries.items()
            }
        finally:
            self._active.discard(id(node))

    def describe(self, at: _At) -> str:
        node = at.node
        if isinstance(node, MappingNode):
            return "a mapping"
        if isinstance(node, SequenceNode):
            return "a list"
        return {
            _NULL: "empty (null)",
            _BOOL: f"a boolean ({node.value})",
            _INT: f"a number ({node.value})",
            _FLOAT: f"a number ({node.value})",
        }.get(node.tag or "", "a string")

    def string(self, at: _At, what: str = "a string") -> str | None:
        if id(at.node) in self._bad_tags:
            return None
        value = self.scalar(at) if isinstance(at.node, ScalarNode) else None
        if isinstance(value, str):
            return value
        if value is not _INVALID:
            hint = ""
            if isinstance(at.node, ScalarNode) and at.node.tag in (_INT, _FLOAT, _BOOL):
                hint = f'; quote it ("{at.node.value}") to mean the text'
            self.report(at, f"must be {what}, not {self.describe(at)}{hint}")
        return None

    def choice(self, at: _At, options: Sequence[str]) -> str | None:
        value = self.string(at, "one of " + ", ".join(options))
        if value is None:
            return None
        if value not in options:
            self.report(at, f"must be one of {', '.join(options)}, not {_quote(value)}")
            return None
        return value

    def strings(self, at: _At) -> list[str] | None:
        items = self.sequence(at)
        if items is None:
            return None
        values = [self.string(item) for item in items]
        return [v for v in values if v is not None] if None not in values else None

    def strict_mapping(
        self,
        at: _At,
        known: Sequence[str],
        required: Sequence[str],
        fields: dict[str, Callable[[_At], object]],
    ) -> dict[str, object] | None:
        """A strict mapping: unknown keys and missing required keys are problems.

        A missing key is reported at ``at.line``: the line of the key that holds
        this mapping (``api:``), or the document's first line for the top level.
        """
        entries = self.mapping(at)
        if entries is None:
            return None
        out: dict[str, object] = {}
        ok = True
        for name, entry in entries.items():
            child = at.child(entry.value, name, _line(entry.key))
            if name not in known:
                close = difflib.get_close_matches(name, known, n=1)
                hint = f"; did you mean {close[0]}?" if close else ""
                self.report(
                    at.child(entry.key, name),
                    f"is not a known key (known: {', '.join(known)}){hint}",
                )
                ok = False
                continue
            # No field of compartment.yml takes null: None means "reported".
            value = fields[name](child)
            if value is None:
                ok = False
            else:
                out[name] = value
        for name in required:
            if name not in entries:
                self.report(_At(at.node, at.line, (*at.path, name)), "is required")
                ok = False
        return out if ok else None

    # -- the schema --

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
            _TOP_KEYS,
            ("name", "services"),
            {"name": self.project_name, "services": self.services, "resources": self.resources},
        )

    def project_name(self, at: _At) -> str | None:
        name = self.string(at)
        if name is None:
            return None
        if not PROJECT_NAME_RE.fullmatch(name):
            self.report(
                at,
                f"{_quote(name)} is not a project slug: lowercase letters, digits and '-', "
                "starting with a letter, at most 63 characters",
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
                    "is not a valid service name: lowercase letters, digits, '-' and '_', "
                    "starting with a letter or digit, at most 63 characters",
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
                _SERVICE_KEYS,
                ("path",),
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
            _BUILD_KEYS,
            (),
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
        run = self.strict_mapping(at, _RUN_KEYS, (), {"command": self.string})
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
            _READINESS_KEYS,
            ("type",),
            {
                "type": lambda a: self.choice(a, ("http",)),
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


def _contains_invalid(value: object) -> bool:
    if value is _INVALID:
        return True
    if isinstance(value, list):
        return any(_contains_invalid(v) for v in value)
    if isinstance(value, dict):
        return any(_contains_invalid(v) for v in value.values())
    return False


def _parse_int(text: str) -> int | None:
    """A YAML integer (1.2 core, plus 1.1 sexagesimal), or None."""
    digits = text.replace("_", "")
    sign = -1 if digits.startswith("-") else 1
    digits = digits[1:] if digits[:1] in ("-", "+") else digits
    try:
        if ":" in digits:
            value = 0
            for part in digits.split(":"):
                value = value * 60 + int(part, 10)
            return sign * value
        prefix = digits[:2].lower()
        if prefix in ("0x", "0o", "0b"):
            return sign * int(digits[2:], {"0x": 16, "0o": 8, "0b": 2}[prefix])
        return sign * int(digits, 10)
    except ValueError:  # also: more digits than int() converts
        return None


def _parse_float(text: str) -> float | None:
    """A YAML float (1.2 core, plus 1.1 sexagesimal), or None."""
    digits = text.replace("_", "")
    lowered = digits.lower()
    if lowered in (".inf", "+.inf"):
        return math.inf
    if lowered == "-.inf":
        return -math.inf
    if lowered == ".nan":
        return math.nan
    try:
        if ":" in digits:
            sign = -1.0 if digits.startswith("-") else 1.0
            value = 0.0
            for part in (digits[1:] if digits[:1] in ("-", "+") else digits).split(":"):
                value = value * 60 + float(part)
            return sign * value
        if not digits or digits.strip() != digits or lowered in ("inf", "nan", "infinity"):
            return None
        return float(digits)
    except ValueError:
        return None
