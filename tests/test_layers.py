"""The layering of compartment_cli/, read from the source (an AST walk, no import).

::

    cli ──→ workflows ──→ client ──→ models ──→ (the standard library, msgspec)
     │           │            └────→ errors
     ├─→ render, view (pure: results and events to text; never the network)
     ├─→ project (compartment.yml)
     └─→ server (`compartment server` only) ──→ models, errors

Every import counts, also those inside functions (the lazy ones of the CLI);
only those under ``if TYPE_CHECKING:`` do not, as they never run. A module may
always import its own package and the root package ``compartment_cli``
(the version). No circle of imports inside compartment_cli/.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "compartment_cli"
ROOT = "compartment_cli"

# What each part of compartment_cli may import of compartment_cli, besides itself.
ALLOWED: dict[str, set[str]] = {
    "cli": {"workflows", "client", "models", "errors", "render", "view", "project", "server"},
    "workflows": {"client", "models", "errors", "project"},
    "client": {"models", "errors"},
    "models": set(),
    "errors": set(),
    "render": {"models", "errors"},
    "view": {"models", "errors", "render"},
    "project": {"models", "errors"},
    "server": {"models", "errors"},
}
# What each may import from outside the standard library (None: anything installed).
THIRD_PARTY: dict[str, set[str] | None] = {
    "cli": None,
    "workflows": {"anyio", "httpx", "msgspec", "pathspec"},
    "client": {"anyio", "httpx", "httpx_sse", "msgspec"},
    "models": {"msgspec"},
    "errors": set(),
    "render": {"msgspec"},
    "view": set(),
    "project": {"msgspec", "ruamel"},
    "server": {"anyio", "h11", "msgspec", "starlette", "sse_starlette", "uvicorn"},
}
# The standard library's ways onto the network, closed to the pure parts.
NETWORK = {"socket", "ssl", "http", "urllib", "asyncio", "selectors", "ftplib", "smtplib"}
PURE = {"models", "render", "view", "errors"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(module: str, source: str | None = None, *, is_package: bool = False) -> set[str]:
    """Every module ``module`` imports when it runs (a ``from a import b`` of a module ``b``
    is an import of ``a.b``)."""
    if source is None:
        path = MODULES[module]
        source, is_package = path.read_text(), path.name == "__init__.py"
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            for alias in node.names:
                child = f"{source}.{alias.name}"
                found.add(child if child in MODULES else source)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(source, module))
    return found


def part_of(module: str) -> str:
    """``cli`` of ``compartment_cli.cli.app``; ``errors`` of ``compartment_cli.errors``."""
    return module.split(".")[1] if module.count(".") else ""


GRAPH = {module: imports_of(module) for module in MODULES}


def violations(module: str, imported: set[str]) -> list[str]:
    """What of ``imported`` the layer of ``module`` may not import, and why."""
    part = part_of(module)
    wrong = []
    for name in sorted(imported):
        top = name.split(".")[0]
        if top == ROOT:
            other = part_of(name)
            if other and other != part and other not in ALLOWED[part]:
                wrong.append(f"{name} (the {part} layer may import {sorted(ALLOWED[part])})")
        elif top in sys.stdlib_module_names or top == "__future__":
            if part in PURE and top in NETWORK:
                wrong.append(f"{name} (the network, in a pure module)")
        else:
            allowed = THIRD_PARTY[part]
            if allowed is not None and top not in allowed:
                wrong.append(f"{name} (outside the standard library and {sorted(allowed)})")
    return wrong


@pytest.mark.parametrize("module", sorted(m for m in MODULES if part_of(m)))
def test_each_module_imports_only_what_its_layer_may(module: str) -> None:
    assert part_of(module) in ALLOWED, f"{module}: a new part of compartment_cli; add its rules"
    assert violations(module, GRAPH[module]) == [], module


def test_no_circle_of_imports() -> None:
    internal = {
        module: {m for m in imported if m in MODULES and m != module}
        for module, imported in GRAPH.items()
    }
    circles = [c for c in _strongly_connected(internal) if len(c) > 1]
    assert circles == [], f"import circles: {circles}"


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm: the strongly connected components of ``graph``."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return components


def test_the_check_sees_each_kind_of_violation_and_a_circle() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "import socket\n"
        "from . import api\n"
        "from compartment_cli.errors import UsageError\n"
        "if TYPE_CHECKING:\n"
        "    from compartment_cli.cli.app import run\n"
        "def lazy():\n"
        "    import httpx\n"
        "    from ..client import api\n"
    )
    imported = imports_of("compartment_cli.models.probe", source)
    assert imported == {
        "typing", "socket", "compartment_cli.models.api", "compartment_cli.errors",
        "httpx", "compartment_cli.client.api",
    }  # fmt: skip
    assert [v.split()[0] for v in violations("compartment_cli.models.probe", imported)] == [
        "compartment_cli.client.api",
        "compartment_cli.errors",
        "httpx",
        "socket",
    ]
    assert violations("compartment_cli.cli.probe", imported) == []
    assert _strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [
        ["a", "b", "c"],
        ["d"],
    ]
