"""Command-line values without pydantic: typer's coercion, minus its start-up cost.

typer 0.2x coerces every value through a pydantic ``TypeAdapter``: the first
value a command coerces imports pydantic (about 60 ms here) and every
parameter builds its own adapter. Even ``compartment promote --help`` paid
for it, because the group's own ``--help`` flag is coerced from None.

Our parameters are ``str``, ``bool``, ``int`` and ``float`` (with bounds), a
choice ``Enum`` and a ``Path``. ``DirectGroup`` and ``DirectCommand`` coerce
those directly, with the messages typer gives for them, and leave any other
kind of parameter to typer. They hook into typer's private per-parameter
coercion (``_TyperParameter._runtime_param``); with a typer that has none,
nothing changes but the speed, and tests/test_import_graph.py notices.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Any

from typer._click import Context, Parameter
from typer._click.exceptions import BadParameter
from typer.core import TyperCommand, TyperGroup

try:
    from typer._coercion import RuntimeParam, TypeDescriptor, build_runtime_param
    from typer._param_types import coerce_cli_choice, coerce_cli_path
except ImportError:  # pragma: no cover - a typer without per-parameter coercion
    RuntimeParam = None  # type: ignore[assignment,misc]

__all__ = ["DirectCommand", "DirectGroup"]

_PLAIN = (str, bool, int, float)


def _handled(descriptor: TypeDescriptor) -> bool:
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


if RuntimeParam is not None:

    class _DirectParam(RuntimeParam):
        def _coerce_value(self, value: Any, param: Any, ctx: Context) -> Any:
            annotation = self.annotation
            info = self.parameter_info
            try:
                if annotation is str:
                    return value if isinstance(value, str) else str(value)
                if annotation in (int, float):
                    return _number(value, annotation, info.min, info.max)
                if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
                    return coerce_cli_choice(
                        value,
                        choices=list(annotation),
                        case_sensitive=info.case_sensitive,
                        ctx=ctx,
                    )
                if annotation is Path and isinstance(value, str | Path):
                    # A Path, not text: typer's own checks, without its pydantic step.
                    return coerce_cli_path(Path(value), info, path_type=Path, param=param, ctx=ctx)
            except ValueError as exc:
                raise BadParameter(str(exc), ctx=ctx, param=param) from None
            # A bool given as text (not a flag), or a Path given as something odd.
            fallback = build_runtime_param(param.type_descriptor)
            return fallback._coerce_value(value, param=param, ctx=ctx)


def _install(param: Parameter) -> None:
    """Coerce ``param`` directly from now on, when it is a kind handled here."""
    if RuntimeParam is None or getattr(param, "_runtime_param", False) is not None:
        return  # not a typer parameter, or its coercion is already decided
    descriptor = getattr(param, "type_descriptor", None)
    if isinstance(descriptor, TypeDescriptor) and _handled(descriptor):
        param._runtime_param = _DirectParam(  # type: ignore[attr-defined]
            parameter_info=descriptor.parameter_info, annotation=descriptor.annotation
        )


class DirectCommand(TyperCommand):
    """A typer command whose parameters are coerced without pydantic."""

    def get_params(self, ctx: Context) -> list[Parameter]:
        params = super().get_params(ctx)
        for param in params:
            _install(param)
        return params

    def collect_usage_pieces(self, ctx: Context) -> list[str]:
        """The usage line names a required argument ``RUN_ID``, not typer's ``{RUN_ID}``."""
        return [
            piece[1:-1] if piece.startswith("{") and piece.endswith("}") else piece
            for piece in super().collect_usage_pieces(ctx)
        ]


class DirectGroup(TyperGroup):
    """A typer group (and its own options) coerced without pydantic."""

    def get_params(self, ctx: Context) -> list[Parameter]:
        params = super().get_params(ctx)
        for param in params:
            _install(param)
        return params
