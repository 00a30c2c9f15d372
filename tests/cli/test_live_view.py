"""The live view, as a person sees it: the real command under a pseudo-terminal, a real
promotion on the real control plane, the screen read at moments the run's events choose."""

from __future__ import annotations

import contextlib
import json
import queue
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from tests.support import ControlPlane
from tests.terminal import Terminal

Event = tuple[str, dict[str, Any]]


@contextmanager
def events_of(plane: ControlPlane, project: str, environment: str) -> Iterator[queue.Queue[Event]]:
    """Every event of an environment from now on, as the control plane sends them."""
    found: queue.Queue[Event] = queue.Queue()
    subscribed = threading.Event()
    stop = threading.Event()

    def follow() -> None:
        params = {"projectName": project, "environmentName": environment}
        headers = {"Accept": "text/event-stream", "Authorization": f"Bearer {plane.token}"}
        with (
            httpx.Client(base_url=plane.api_url, timeout=None) as client,
            client.stream("GET", "/v1/events", params=params, headers=headers) as response,
            contextlib.suppress(httpx.HTTPError),  # the control plane stops at the end
        ):
            subscribed.set()
            kind = ""
            for line in response.iter_lines():
                if stop.is_set():
                    return
                if line.startswith("event: "):
                    kind = line[len("event: ") :]
                elif line.startswith("data: "):
                    found.put((kind, json.loads(line[len("data: ") :])))

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    assert subscribed.wait(10)
    try:
        yield found
    finally:
        stop.set()


def wait_event(events: queue.Queue[Event], kind: str, **fields: str) -> dict[str, Any]:
    while True:
        got_kind, data = events.get(timeout=60)
        if got_kind == kind and all(data.get(k) == v for k, v in fields.items()):
            return data


def elapsed(row: str) -> float:
    match = re.search(r"\s(\d+\.\d)s(\s|$)", row)
    assert match, row
    return float(match[1])


def test_live_view_shows_each_service_as_it_goes(control_plane: ControlPlane, project: Any) -> None:
    directory = project("2.0.0", web={}, api={"ready_after": 5})
    assert control_plane.deploy_and_wait(directory, "staging")["status"] == "succeeded"

    with events_of(control_plane, "shop", "production") as events:
        term = Terminal(
            ["promote", "--from", "staging", "--to", "production"],
            env=control_plane.env,
            cwd=directory,
        )
        wait_event(
            events,
            "deployment.step",
            serviceName="web",
            step="checking_readiness",
            status="succeeded",
        )
        # Within a frame or two of web's readiness (a frame is 0.1 s), while api still waits.
        screen = term.wait_for(
            lambda lines: any(re.match(r"\s*web\s+ready\b", line) for line in lines), timeout=2
        )
        header = screen[0]
        assert "shop" in header
        assert "staging → production" in header
        assert "run run_" in header
        api = term.row("api")
        assert re.match(r"\s*api\s+waiting for readiness\s", api), api
        # Readiness is probed from the first milliseconds: api may still refuse
        # connections when web is ready; its 503 shows within a frame or two.
        assert term.wait_for(lambda _: "GET /healthz answered 503" in term.row("api"), timeout=3)
        first = elapsed(term.row("api"))
        wait_event(
            events,
            "deployment.step",
            serviceName="api",
            step="checking_readiness",
            status="running",
        )
        api_later = term.wait_for(lambda _: elapsed(term.row("api")) >= first + 1.0, timeout=5)
        assert api_later
        assert "attempt " in term.row("api")
        code = term.wait()

    assert code == 0
    final = term.lines()
    # The view is gone; the result stays: its header, the column headers, one row per service.
    assert not any("waiting for readiness" in line for line in final), final
    (header_at,) = [i for i, line in enumerate(final) if "staging → production" in line]
    assert "succeeded" in final[header_at]
    assert final[header_at + 1].split() == ["SERVICE", "DEPLOYMENT", "STATUS", "ROUTE", "DURATION"]
    assert [line.split()[0] for line in final[header_at + 2 :]] == ["api", "web"]
    assert all("http://127.0.0.1:" in line for line in final[header_at + 2 :])


def test_a_verbose_run_on_a_terminal_ends_with_its_timeline(
    control_plane: ControlPlane, project: Any
) -> None:
    directory = project("2.0.0", web={}, api={"ready_after": 1})
    assert control_plane.deploy_and_wait(directory, "staging")["status"] == "succeeded"

    term = Terminal(
        ["promote", "--from", "staging", "--to", "production", "--verbose"],
        env=control_plane.env,
        cwd=directory,
        rows=60,
    )

    assert term.wait() == 0
    screen = term.lines()
    (title,) = [i for i, line in enumerate(screen) if line.startswith("Timeline (")]
    assert screen[title + 1].startswith("api  ")
    assert "█" in screen[title + 1]
    assert screen[title + 2].startswith("web  ")
    assert "·" in screen[title + 2]
    assert any("checking_readiness succeeded" in line for line in screen[:title])
    header = next(i for i, line in enumerate(screen) if line.startswith("shop  staging → "))
    assert header > title  # the result comes last
