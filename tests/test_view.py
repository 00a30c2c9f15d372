"""The live view's model, from event sequences: what each service's row says, and when."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec

from compartment_cli.models.events import StepEvent
from compartment_cli.view.state import RunView, frame
from tests.test_render import summary

T0 = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def step(service: str, name: str, status: str, message: str = "", when: float = 0) -> StepEvent:
    return StepEvent(
        deployment_run_id="run_1",
        deployment_id=f"dep_{service}",
        service_name=service,
        step=name,  # type: ignore[arg-type]
        status=status,  # type: ignore[arg-type]
        message=message,
        at=at(when).isoformat(),
    )


def view() -> RunView:
    return RunView.begin(
        project="shop",
        target="production",
        source="staging",
        run_id="run_1",
        services={"dep_web": "web", "dep_api": "api"},
        started=T0,
    )


def text(v: RunView, now: float) -> list[str]:
    return ["  ".join(cell for cell, _ in line).rstrip() for line in frame(v, at(now))]


def row(v: RunView, service: str, now: float) -> list[str]:
    for line in frame(v, at(now))[1:]:
        if line[0][0].strip() == service:
            return [cell.strip() for cell, _ in line[1:]]
    raise AssertionError(service)


PROMOTION = [
    step("web", "queued", "succeeded", "queued", 0.0),
    step("api", "queued", "succeeded", "queued", 0.0),
    step("web", "starting_candidate", "running", "$ python service.py", 0.1),
    step("api", "starting_candidate", "running", "$ python service.py", 0.1),
    step("web", "starting_candidate", "succeeded", "started pid 1 on port 2", 0.2),
    step("api", "starting_candidate", "succeeded", "started pid 3 on port 4", 0.2),
    step("web", "checking_readiness", "running", "GET /healthz until it answers 2xx", 0.2),
    step("api", "checking_readiness", "running", "GET /healthz until it answers 2xx", 0.2),
    step(
        "api",
        "checking_readiness",
        "running",
        "GET /healthz answered 503 (attempt 1), retrying",
        0.3,
    ),
    step("web", "checking_readiness", "succeeded", "GET /healthz answered 200 after 1.5 s", 1.7),
    step(
        "api",
        "checking_readiness",
        "running",
        "GET /healthz answered 503 (attempt 9), retrying",
        2.3,
    ),
    step("api", "checking_readiness", "succeeded", "GET /healthz answered 200 after 4 s", 4.2),
    step("web", "switching_route", "succeeded", "http://x/ now serves dep_web", 4.3),
    step("api", "switching_route", "succeeded", "http://y/ now serves dep_api", 4.3),
    step("web", "draining_previous", "running", "dep_old: 0 open connection(s)", 4.3),
    step("web", "draining_previous", "succeeded", "dep_old drained", 4.4),
    step("api", "draining_previous", "skipped", "nothing was serving before", 4.3),
    step("web", "completed", "succeeded", "active after 4.5 s", 4.5),
    step("api", "completed", "succeeded", "active after 4.5 s", 4.5),
]


def play(v: RunView, events: list[StepEvent]) -> None:
    for event in events:
        v.step(event, at(99))


def test_each_service_in_words_with_its_own_state() -> None:
    v = view()
    play(v, PROMOTION[:10])  # web is ready; api still waits
    assert row(v, "web", 2.0)[:2] == ["ready", "2.0s"]
    assert row(v, "web", 2.0)[2] == "GET /healthz answered 200 after 1.5 s"
    assert row(v, "api", 2.0) == [
        "waiting for readiness",
        "2.0s",
        "attempt 1 · GET /healthz answered 503",
    ]
    play(v, PROMOTION[10:11])
    assert row(v, "api", 2.5)[2] == "attempt 9 · GET /healthz answered 503"
    assert text(v, 2.5)[0] == "shop  staging → production  run run_1  2.5s"


def test_the_steps_after_readiness_and_the_end() -> None:
    v = view()
    play(v, PROMOTION[:14])
    assert row(v, "web", 4.3)[0] == "switching"
    play(v, PROMOTION[14:15])
    assert row(v, "web", 4.35)[0] == "draining"
    play(v, PROMOTION[15:])
    v.finish("succeeded", at(4.6))
    assert row(v, "web", 9.0)[:2] == ["active", "4.5s"]  # its time stops at its end
    assert row(v, "api", 9.0)[:2] == ["active", "4.5s"]
    assert text(v, 9.0)[0].endswith("succeeded  4.6s")


def test_a_failure_names_its_cause_once() -> None:
    v = view()
    play(v, PROMOTION[:9])
    crash = "api: process exited with code 3 before it was ready; last log lines:\n  boom"
    play(
        v,
        [
            step("api", "checking_readiness", "failed", crash[5:], 1.0),
            step("api", "completed", "failed", crash, 1.1),
            step(
                "web", "completed", "failed", "web: not promoted, because api: process exited", 1.1
            ),
        ],
    )
    assert row(v, "api", 3.0) == [
        "failed",
        "1.0s",
        "process exited with code 3 before it was ready",
    ]
    assert row(v, "web", 3.0) == ["not promoted", "1.1s", "api failed"]


def test_a_reconnect_replays_events_without_moving_back() -> None:
    v = view()
    play(v, PROMOTION[:12])
    # After a reconnect with Last-Event-ID the stream may repeat what was already seen.
    play(v, PROMOTION[2:12])
    assert row(v, "web", 4.2)[0] == "ready"
    assert row(v, "api", 4.2)[0] == "ready"
    play(v, PROMOTION[12:])
    play(v, PROMOTION[:3])
    assert row(v, "web", 5.0)[0] == "active"


def test_polling_without_steps() -> None:
    v = view()
    running = summary(
        "api",
        status="running",
        promotion_stage="awaiting_readiness",
        health="pending",
        is_active=False,
        completed_at=None,
        created_at=at(0).isoformat(),
    )
    v.deployment(running, at(1.0))
    assert row(v, "api", 1.0)[:2] == ["waiting for readiness", "1.0s"]
    v.deployment(msgspec.structs.replace(running, health="healthy"), at(2.0))
    assert row(v, "api", 2.0)[0] == "ready"
    v.deployment(msgspec.structs.replace(running, promotion_stage="activating"), at(2.5))
    assert row(v, "api", 2.5)[0] == "switching"
    done = summary("api", created_at=at(0).isoformat(), completed_at=at(3.0).isoformat())
    v.deployment(done, at(3.5))
    assert row(v, "api", 10.0)[:2] == ["active", "3.0s"]
    # A late poll of an older state does not undo the end.
    v.deployment(running, at(11.0))
    assert row(v, "api", 11.0)[0] == "active"
    failed = summary(
        "web",
        status="failed",
        promotion_stage="stopped",
        is_active=False,
        failure_message="web: not promoted, because api: boom",
        created_at=at(0).isoformat(),
        completed_at=at(3.0).isoformat(),
    )
    v.deployment(failed, at(3.5))
    assert row(v, "web", 4.0)[0] == "not promoted"


def test_rows_fit_the_terminal() -> None:
    v = RunView.begin(
        project="big",
        target="prod",
        source="staging",
        run_id="run_9",
        services={f"dep_s{i:02d}": f"s{i:02d}" for i in range(30)},
        started=T0,
    )
    v.step(step("s03", "completed", "succeeded", "", 1.0), at(1))
    lines = frame(v, at(2), width=60, height=10)
    assert len(lines) == 10
    assert lines[-1][0][0].strip() == "… and 22 more (1 finished)"
    assert all(sum(len(c) + 2 for c, _ in line) <= 62 for line in lines[1:])


def test_bake_steps_in_words() -> None:
    v = view()
    play(v, PROMOTION[:14])
    play(v, [step("web", "baking", "running", "watching dep_web for 3 s", 4.4)])
    assert row(v, "web", 4.5)[0] == "baking"
    play(v, [step("web", "switching_back", "running", "api: readiness answered 503", 5.0)])
    assert row(v, "web", 5.1)[0] == "switching back"
    play(v, [step("web", "baking", "running", "a late replay", 4.4)])
    assert row(v, "web", 5.2)[0] == "switching back"  # never moves back
