"""Finding, loading and validating ``compartment.yml`` (CONTRACT.md section 2).

``load_project_file`` reports every problem of the file at once, each with its
line and its key path as written (camelCase), and raises ``ProjectFileError``
for anything wrong: unreadable, too large, not UTF-8, YAML syntax, duplicate
keys, refused tags, schema violations. No other exception leaves this module
for a bad file.

"""

from __future__ import annotations

import codecs
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import msgspec
from ruamel.yaml import YAML
from ruamel.yaml.composer import ComposerError, MaxDepthExceededError
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode
from ruamel.yaml.reader import ReaderError

from compartment_cli.errors import UsageError
from compartment_cli.models.descriptor import Descriptor
from compartment_cli.project.nodes import _NULL, MAX_ALIAS_EXPANSION, Problem, _line, _TooManyNodes
from compartment_cli.project.schema import DescriptorChecker

PROJECT_FILE: Final = "compartment.yml"
NOT_FOUND_MESSAGE: Final = (
    "compartment.yml was not found in the current directory. "
    "Pass --project <slug> or run inside a compartment repo."
)
MAX_FILE_BYTES: Final = 1024 * 1024
MAX_DEPTH: Final = 64
MAX_PROBLEM_LINES: Final = 100


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
    checker = DescriptorChecker()
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
    # The checker takes its keys, enums, patterns and limits from the models, so
    # what it accepts converts (tests/test_schema_drift.py holds them together).
    return msgspec.convert(data, Descriptor)


def line_of(path: Path, *keys: str) -> int | None:
    """The line of the key ``keys`` (``"services", "web", "path"``) in the file at ``path``.

    None when the file cannot be read or composed, or has no such key: a
    message can do without it.
    """
    try:
        node: Node | None = _compose(path, _read_text(path))
    except ProjectFileError:
        return None
    line = None
    for key in keys:
        if not isinstance(node, MappingNode):
            return None
        found = [(k, v) for k, v in node.value if isinstance(k, ScalarNode) and k.value == key]
        if not found:
            return None
        key_node, node = found[0]
        line = _line(key_node)
    return line


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
        line, detail = _plain_words(exc)
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


def _mark_line(mark: object) -> int | None:
    line = getattr(mark, "line", None)
    return None if line is None else int(line) + 1


def _plain_words(exc: MarkedYAMLError) -> tuple[int | None, str]:
    """The line to fix and what is wrong there, in words rather than the parser's terms."""
    problem = str(exc.problem or type(exc).__name__)
    context = str(exc.context or "")
    line = _mark_line(exc.problem_mark) or _mark_line(exc.context_mark)
    opened = _mark_line(exc.context_mark)
    if "flow mapping" in context or "flow sequence" in context:
        bracket = "{" if "mapping" in context else "["
        return opened or line, (
            f"the '{bracket}' here is never closed, or an entry in it lacks a ','"
        )
    if "quoted scalar" in context and "end of stream" in problem:
        return opened or line, "the quote opened here is never closed"
    if "unknown escape character" in problem:
        return line, (
            f"{problem.removeprefix('found ')} in a double-quoted string; "
            "use single quotes, or write \\\\ for a backslash"
        )
    if "'\\t'" in problem:
        return line, "a tab character; indent with spaces"
    if "mapping values are not allowed" in problem:
        return line, (
            "a ':' where no key may start: check this line's indentation against the line "
            "above, or quote a value that contains ': '"
        )
    if problem.startswith("expected <block end>"):
        found = problem.rsplit("found ", 1)[-1]
        found = {"'?'": "a key", "'-'": "a list item"}.get(found, found)
        return line, (
            f"this line does not fit the indentation of the block above it (it starts with {found})"
        )
    if "could not find expected ':'" in problem:
        return line, "a key without ':' after it"
    detail = problem.removeprefix("but ")
    return line, f"{detail} ({context})" if context else detail
