"""Fixtures: a fresh control plane per test (and a fault proxy before it), test projects,
the --run-slow flag."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.faults import FaultProxy
from tests.support import REGISTRY, ControlPlane, write_project


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="run the long soak tests too")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The leftovers check looks at what every other test left behind: it runs last.
    items.sort(key=lambda item: item.nodeid.startswith("tests/test_zz_leftovers.py"))
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="a long soak: run with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def session_root() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="compartment-tests-"))
    REGISTRY["root"] = root
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def control_plane(tmp_path: Path, session_root: Path) -> Iterator[ControlPlane]:
    """A fresh control plane for one test."""
    root = Path(tempfile.mkdtemp(prefix="cp-", dir=session_root))
    plane = ControlPlane(root)
    plane.start()
    yield plane
    plane.stop()


@pytest.fixture
def fault_proxy(control_plane: ControlPlane) -> Iterator[FaultProxy]:
    """A fault proxy (tests/faults.py) in front of this test's control plane, in PASS mode."""
    with FaultProxy(control_plane.port) as proxy:
        yield proxy


@pytest.fixture
def project(tmp_path: Path) -> Any:
    """``project(version, **services)`` writes a fresh project dir (see write_project)."""
    counter = iter(range(1_000_000))

    def make(version: str = "1.0.0", **services: dict[str, Any]) -> Path:
        return write_project(tmp_path / f"project-{next(counter)}", version, **services)

    return make
