"""Every module of compartment_cli stays small enough to hold in mind: at most 500 lines,
or a reason at the top."""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "compartment_cli"
LIMIT = 500


def test_no_module_is_over_500_lines_without_a_reason_at_its_top() -> None:
    too_long = []
    for module in sorted(PACKAGE.rglob("*.py")):
        lines = module.read_text().splitlines()
        reason = any("over 500 lines" in line.lower() for line in lines[:3])
        if len(lines) > LIMIT and not reason:
            too_long.append(f"{module.relative_to(PACKAGE.parent)}: {len(lines)} lines")
    assert not too_long, "over 500 lines without a reason in its first lines: " + ", ".join(
        too_long
    )
