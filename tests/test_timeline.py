"""The run timeline: a golden file over a recorded run, and what a failure looks like."""

from __future__ import annotations

from pathlib import Path

import msgspec

from compartment_cli.models.events import StepEvent
from compartment_cli.view.timeline import timeline_lines

FIXTURES = Path(__file__).parent / "fixtures"
# The step events of a real promotion (web ready after 0.5 s, api after 2.5 s), as the
# control plane's event stream sent them.
RECORDED = msgspec.json.decode((FIXTURES / "timeline_run.json").read_bytes(), type=list[StepEvent])


def test_timeline_of_a_recorded_run_matches_the_golden_file() -> None:
    lines = timeline_lines(RECORDED, width=80)
    assert "\n".join(lines) + "\n" == (FIXTURES / "timeline_run.txt").read_text()


def test_the_service_that_held_the_run_up_is_seen_at_a_glance() -> None:
    lines = timeline_lines(RECORDED, width=80)
    api, web = lines[1], lines[2]
    # web waited for api; both switched at the same moment, in the same column.
    assert web.count("·") > 20
    assert "·" not in api
    assert api.index("█") == web.index("█")


def test_scaled_to_the_width_and_every_step_keeps_a_column() -> None:
    for width in (40, 60, 120, 200):
        lines = timeline_lines(RECORDED, width=width)
        assert all(len(line) <= width for line in lines[:-1]), width
        for row in lines[1:3]:
            assert all(mark in row for mark in "▓░█▒"), (width, row)


def test_a_failed_step_ends_with_a_cross_and_no_switch() -> None:
    failed = [
        msgspec.structs.replace(e, status="failed", message="boom")
        if e.service_name == "api" and e.step == "checking_readiness" and e.status == "succeeded"
        else e
        for e in RECORDED
        if e.step not in ("switching_route", "draining_previous", "completed")
    ]
    api = timeline_lines(failed, width=80)[1]
    assert api.rstrip().rsplit(maxsplit=1)[0].endswith("✗")
    assert "█" not in api


def test_no_steps_no_timeline() -> None:
    assert timeline_lines([]) == []


def test_a_bake_that_switched_back() -> None:
    """After the switch: baking, then every route back at one moment; no drain."""
    promoted = [e for e in RECORDED if e.step not in ("draining_previous", "completed")]
    end = max(e.at for e in promoted)

    def later(event: StepEvent, step: str, status: str, seconds: float) -> StepEvent:
        when = f"{end[:17]}{float(end[17:-1]) + seconds:06.3f}Z"
        return msgspec.structs.replace(event, step=step, status=status, at=when)

    last = {e.service_name: e for e in promoted}
    baked = [
        *promoted,
        *(later(e, "baking", "running", 0.1) for e in last.values()),
        later(last["web"], "baking", "failed", 1.5),
        *(later(e, "switching_back", "succeeded", 1.6) for e in last.values()),
        *(later(e, "completed", "failed", 1.7) for e in last.values()),
    ]
    lines = timeline_lines(baked, width=80)
    api, web = lines[1], lines[2]
    assert "≈" in api
    assert web.index("≈") < web.index("✗") < web.index("◀")  # baked, failed, switched back
    assert api.index("◀") == web.index("◀")  # both routes moved back at once
    assert "▒" not in api
    assert "≈ bake  ◀ switch back" in lines[-1]
    assert "bake" not in timeline_lines(RECORDED, width=80)[-1]
