"""Reading compartment.yml's node tree into plain data, every problem with its line.

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

The compartment.yml schema itself is in ``schema.py``; this module knows YAML,
not compartment.yml.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final

from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

MAX_ALIAS_EXPANSION: Final = 100_000

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


class NodeReader:
    """Walks the node tree once, collecting problems and building plain data.

    The generic part: tags, scalars, mappings (merges, duplicates), lists, strings,
    choices and strict mappings. ``schema.DescriptorChecker`` adds compartment.yml.
    """

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
        if tag in (_INT, _FLOAT):
            parse, what = (_parse_int, "an integer") if tag == _INT else (_parse_float, "a number")
            number = parse(text)
            if number is None:
                self.report(at, f"{_quote(text)} is not {what}")
                return _INVALID
            return number
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

    def locate(self, at: _At, *keys: str) -> _At:
        """The place of ``keys`` below ``at`` (the line of the last key)."""
        for key in keys:
            entries = self.mapping(at) or {}
            entry = entries.get(key)
            if entry is None:
                return _At(at.node, at.line, (*at.path, key))
            at = at.child(entry.value, key, _line(entry.key))
        return at

    def locate_item(self, at: _At, index: int) -> _At:
        items = self.sequence(at) or []
        return items[index] if index < len(items) else at

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
