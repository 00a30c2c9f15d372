"""Runs last (conftest sorts it there): nothing the suite started may outlive it.

Every control plane the tests started has been stopped by now; none of its
deployment processes, listening ports or temporary files may remain.
"""

from __future__ import annotations

import socket

import pytest

from tests.support import REGISTRY, deployment_processes


@pytest.fixture(autouse=True)
def _only_after_control_planes() -> None:
    """With no control plane in this session (a subset was selected), nothing to check."""
    if not REGISTRY["planes"]:
        pytest.skip("no control plane ran in this session")


def test_no_control_plane_is_still_running() -> None:
    running = [plane.root for plane in REGISTRY["planes"] if plane.process is not None]
    assert running == []


def test_no_deployment_process_is_left_behind() -> None:
    left = {
        str(data_dir): processes
        for data_dir in REGISTRY["data_dirs"]
        if (processes := deployment_processes(data_dir))
    }
    assert left == {}


def test_no_port_of_the_suite_is_still_listening() -> None:
    listening = []
    for port in sorted(REGISTRY["ports"]):
        with socket.socket() as probe:
            probe.settimeout(1)
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                listening.append(port)
    assert listening == []


def test_no_temporary_file_is_left_behind() -> None:
    left = []
    for plane in REGISTRY["planes"]:
        left += [str(p) for p in (plane.data_dir / "tmp").glob("*")]
        left += [str(p) for p in plane.config_dir.glob(".config-*")]
    assert left == []
