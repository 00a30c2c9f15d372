"""One row per figure: its value, the reference measured in the same run, the target."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True, kw_only=True)
class Row:
    figure: str
    value: float
    unit: str
    reference: str  # what the value is compared with
    reference_value: float | None = None
    reference_unit: str | None = None  # None: the value's unit
    ratio: float | None = None  # value ÷ reference, unless ``ratio_text`` says otherwise
    ratio_text: str = "×"
    target: str = ""  # "" when the figure has none
    met: bool | None = None  # None when the figure has no target

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_PRECISION = {
    "ms": 1,
    "s": 3,
    "MB": 1,
    "KiB": 1,
    "events/s": 0,
    "requests/s": 0,
    "requests": 0,
    "µs": 1,
}


def number(value: float | None, unit: str) -> str:
    if value is None or math.isnan(value):
        return "-"
    digits = _PRECISION.get(unit, 2)
    text = f"{value:,.{digits}f}" if unit.endswith("/s") else f"{value:.{digits}f}"
    return f"{text} {unit}"


def render(rows: Sequence[Row]) -> str:
    """The rows as a Markdown table (also readable as plain text)."""
    header = ["figure", "value", "reference (same run)", "ratio", "target", "met?"]
    lines = [header]
    for row in rows:
        reference = row.reference
        if row.reference_value is not None:
            unit = row.reference_unit or row.unit
            reference = f"{reference}: {number(row.reference_value, unit)}"
        ratio = "-" if row.ratio is None else f"{row.ratio:.2f}{row.ratio_text}"
        met = "-" if row.met is None else ("yes" if row.met else "NO")
        lines.append(
            [row.figure, number(row.value, row.unit), reference, ratio, row.target or "-", met]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]

    def format_line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    out = [format_line(lines[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out.extend(format_line(line) for line in lines[1:])
    return "\n".join(out)
