"""Command-line values without pydantic: typer's coercion, minus its start-up cost.

typer 0.2x coerces every value through a pydantic ``TypeAdapter``: the first
value a command coerces imports pydantic (about 60 ms here) and every
parameter builds its own adapter. Even ``compartment promote --help`` paid
for it, because the group's own ``--help`` flag is coerced from None.

Our parameters are ``str``, ``bool``, ``int`` and ``float`` (with bounds), a
choice ``Enum`` and a ``Path``. ``DirectGroup`` and ``DirectCommand`` coerce
those directly, with the messages typer gives for them, and leave any other
kind of parameter to typer. They hook into typer's private per-parameter
coercion (``_TyperParameter._runtime_param``), and every use of typer's
internals is guarded: a typer without them (at import), or whose internals
no longer fit (a changed signature or attribute, found while parsing), gets
typer's own coercion for that parameter. Nothing changes but the speed, and
tests/test_import_graph.py notices that. Only public typer names are imported
unguarded, so importing the CLI never depends on typer's vendored click.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperCommand, TyperGroup

try:
    from typer._coercion import RuntimeParam, TypeDescriptor
    from typer._param_types import coerce_cli_choice, coerce_cli_path
except ImportError:  # pragma: no cover - a typer without per-parameter coercion
    RuntimeParam = None  # type: ignore[assignment,misc]

if TYPE_CHECKING:
    from typer._click import Command, Context, Parameter
else:
    Command = object

__all__ = ["DirectCommand", "DirectGroup"]

_PLAIN = (str, bool, int, float)
# What typer's internals raise when they no longer fit what this module expects.
_MISMATCH = (TypeError, AttributeError)


def _handled(descriptor: Any) -> bool:
    annotation = descriptor.annotation
    info = descriptor.parameter_info
    if descriptor.file_annotation is not None or info.parser is not None:
        return False
    if annotation is Path:
        return info.path_type is None
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return True
    return annotation in _PLAIN and not (annotation in (int, float) and info.clamp)


def _number(value: Any, annotation: type[Any], minimum: Any, maximum: Any) -> Any:
    """An int or float as typer (through pydantic) parses it, with its messages."""
    kind = "integer" if annotation is int else "number"
    try:
        number = annotation(str(value).strip())
    except ValueError:
        raise ValueError(
            f"Input should be a valid {kind}, unable to parse string as an {kind}"
            if kind == "integer"
            else f"Input should be a valid {kind}, unable to parse string as a {kind}"
        ) from None
    if minimum is not None and number < minimum:
        raise ValueError(f"Input should be greater than or equal to {minimum}")
    if maximum is not None and number > maximum:
        raise ValueError(f"Input should be less than or equal to {maximum}")
    return number


def _direct(value: Any, annotation: Any, info: Any, param: Any, ctx: Context) -> Any:
    """``value`` coerced here; ``NotImplemented`` for what is left to typer."""
    if annotation is str:
        return value if isinstance(value, str) else str(value)
    if annotation in (int, float):
        return _number(value, annotation, info.min, info.max)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return coerce_cli_choice(
            value, choices=list(annotation), case_sensitive=info.case_sensitive, ctx=ctx
        )
    if annotation is Path and isinstance(value, str | Path):
        # A Path, not text: typer's own checks, without its pydantic step.
        return coerce_cli_path(Path(value), info, path_type=Path, param=param, ctx=ctx)
    return NotImplemented  # a bool given as text (not a flag), or a Path given as something odd


def _typers_own(value: Any, param: Any, ctx: Context) -> Any:
    """Coerce with typer's own machinery, for this value and every later one of ``param``."""
    param._runtime_param = None
    return param.get_runtime_param().coerce(value, param=param, ctx=ctx)


if RuntimeParam is not None:

    class _DirectParam(RuntimeParam):
        def _coerce_value(self, value: Any, param: Any, ctx: Context) -> Any:
            try:
                coerced = _direct(value, self.annotation, self.parameter_info, param, ctx)
            except ValueError as exc:
                raise typer.BadParameter(str(exc), ctx=ctx, param=param) from None
            except _MISMATCH:
                coerced = NotImplemented
            if coerced is NotImplemented:
                return _typers_own(value, param, ctx)
            return coerced


def _install(param: Parameter) -> None:
    """Coerce ``param`` directly from now on, when it is a kind handled here and typer's
    internals look as expected; otherwise leave it to typer."""
    if RuntimeParam is None or getattr(param, "_runtime_param", False) is not None:
        return  # not a typer parameter, or its coercion is already decided
    descriptor = getattr(param, "type_descriptor", None)
    if not callable(getattr(param, "get_runtime_param", None)):
        return
    try:
        if isinstance(descriptor, TypeDescriptor) and _handled(descriptor):
            direct = _DirectParam(
                parameter_info=descriptor.parameter_info, annotation=descriptor.annotation
            )
            param._runtime_param = direct  # type: ignore[attr-defined]
    except _MISMATCH:
        return


class _DirectParams(Command):
    """``get_params`` that installs the direct coercion (a mixin of the two below)."""

    def get_params(self, ctx: Context) -> list[Parameter]:
        params = super().get_params(ctx)
        for param in params:
            _install(param)
        return params


class DirectCommand(_DirectParams, TyperCommand):
    """A typer command whose parameters are coerced without pydantic."""

    def collect_usage_pieces(self, ctx: Context) -> list[str]:
        """The usage line names a required argument ``RUN_ID``, not typer's ``{RUN_ID}``."""
        return [
            piece[1:-1] if piece.startswith("{") and piece.endswith("}") else piece
            for piece in super().collect_usage_pieces(ctx)
        ]


class DirectGroup(_DirectParams, TyperGroup):
    """A typer group (and its own options) coerced without pydantic."""
