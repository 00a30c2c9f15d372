"""Option values coerced without pydantic (compartment_cli/cli/coercion.py): same values,
same messages as typer's own coercion."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pytest
import typer
from typer.testing import CliRunner

from compartment_cli.cli.app import OutputFormat
from compartment_cli.cli.coercion import DirectCommand, DirectGroup

runner = CliRunner()


def probe_app() -> tuple[typer.Typer, dict[str, object]]:
    seen: dict[str, object] = {}
    app = typer.Typer(cls=DirectGroup, rich_markup_mode=None)

    @app.command(cls=DirectCommand)
    def probe(
        name: str,
        count: Annotated[int, typer.Option("--count", min=1, max=100)] = 3,
        ratio: Annotated[float, typer.Option("--ratio")] = 1.5,
        output: Annotated[OutputFormat, typer.Option(case_sensitive=False)] = OutputFormat.text,
        where: Annotated[Path | None, typer.Option("--where")] = None,
        loud: Annotated[bool, typer.Option("--loud")] = False,
    ) -> None:
        seen.update(name=name, count=count, ratio=ratio, output=output, where=where, loud=loud)

    @app.command(cls=DirectCommand)
    def other() -> None:
        pass

    return app, seen


def test_values_arrive_typed() -> None:
    app, seen = probe_app()
    args = ["x", "--count", " 7", "--ratio", "2", "--output", "JSON", "--where", "d", "--loud"]
    result = runner.invoke(app, ["probe", *args])
    assert result.exit_code == 0, result.output
    assert seen == {
        "name": "x",
        "count": 7,
        "ratio": 2.0,
        "output": OutputFormat.json,
        "where": Path("d"),
        "loud": True,
    }


def test_defaults_arrive_typed() -> None:
    app, seen = probe_app()
    result = runner.invoke(app, ["probe", "x"])
    assert result.exit_code == 0, result.output
    assert (seen["count"], seen["output"], seen["where"]) == (3, OutputFormat.text, None)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--count", "x"], "Input should be a valid integer, unable to parse string as an integer"),
        (["--count", "0"], "Input should be greater than or equal to 1"),
        (["--count", "101"], "Input should be less than or equal to 100"),
        (["--ratio", "x"], "Input should be a valid number, unable to parse string as a number"),
        (["--output", "yaml"], "'yaml' is not one of 'text', 'json'."),
    ],
)
def test_bad_values_are_usage_errors_with_typers_messages(args: list[str], message: str) -> None:
    app, _ = probe_app()
    result = runner.invoke(app, ["probe", "x", *args])
    assert result.exit_code == 2
    assert message in result.output
