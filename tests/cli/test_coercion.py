"""Option values coerced without pydantic (compartment_cli/cli/coercion.py): same values,
same messages as typer's own coercion."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Annotated

import pytest
import typer
from typer.testing import CliRunner

from compartment_cli.cli import coercion
from compartment_cli.cli.app import OutputFormat
from compartment_cli.cli.coercion import DirectCommand, DirectGroup
from tests.support import cli_json

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


# --- when typer's internals change -----------------------------------------------------------


def _wrong_signature(*args: object) -> object:
    raise TypeError("takes 1 positional argument but 2 were given")


@pytest.mark.parametrize("private", ["coerce_cli_choice", "coerce_cli_path"])
def test_a_changed_private_signature_falls_back_to_typers_own_parsing(
    monkeypatch: pytest.MonkeyPatch, private: str
) -> None:
    monkeypatch.setattr(coercion, private, _wrong_signature)
    app, seen = probe_app()
    result = runner.invoke(app, ["probe", "x", "--output", "JSON", "--where", "d", "--count", "7"])
    assert result.exit_code == 0, result.output
    assert (seen["output"], seen["where"], seen["count"]) == (OutputFormat.json, Path("d"), 7)
    bad = runner.invoke(app, ["probe", "x", "--output", "yaml"])
    assert bad.exit_code == 2
    assert "'yaml' is not one of 'text', 'json'." in bad.output


def test_a_typer_whose_hook_looks_different_keeps_its_own_coercion(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Renamed:
        pass

    monkeypatch.setattr(coercion, "TypeDescriptor", Renamed)
    installed: list[object] = []
    app, seen = probe_app()
    monkeypatch.setattr(coercion, "_DirectParam", lambda **kw: installed.append(kw))
    result = runner.invoke(app, ["probe", "x", "--output", "json", "--count", "5"])
    assert result.exit_code == 0, result.output
    assert (seen["output"], seen["count"]) == (OutputFormat.json, 5)
    assert installed == []


def test_the_cli_imports_and_parses_without_typers_private_modules() -> None:
    # As if typer had renamed its vendored click and its coercion modules: they are
    # loaded for typer itself, then hidden while the CLI is imported (typer, not the
    # CLI, loads parts of them lazily while parsing); the CLI then parses without
    # its direct coercion, through typer's own.
    probe = (
        "import sys, json, typer, typer.core, typer.main\n"
        "hidden = {n: m for n, m in sys.modules.items() if n.startswith(('typer._click',"
        " 'typer._coercion', 'typer._param_types'))}\n"
        "sys.modules.update(dict.fromkeys(hidden))\n"
        "from compartment_cli.cli.app import run\n"
        "from compartment_cli.cli import coercion\n"
        "assert coercion.RuntimeParam is None\n"
        "sys.modules.update(hidden)\n"
        "code = run(['promote', '--from', 'a', '--to', 'a', '--project', 'shop', '-o', 'JSON'])\n"
        "assert code == 2, code\n"
        "code = run(['promote', '--from', 'a', '-o', 'json'])\n"
        "assert code == 2, code\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    first, second = (cli_json(line)["error"] for line in done.stdout.splitlines())
    assert first["code"] == "same_environment"
    assert "--to" in second["message"]
