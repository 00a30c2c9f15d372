"""The JSON Schemas of what ``--output json`` prints, generated from the msgspec Structs.

``result`` (a run's final state: promote, deploy, ``deployment watch``; or,
for ``promote --only-changed``, that nothing needed promoting), ``error``
(every other outcome), ``list`` (``deployment list``) and ``plan``
(``promote --dry-run``). They ship
in the package as ``compartment_cli/schemas/<kind>.json`` and
``compartment schema <kind>`` prints them without importing msgspec; a test
fails when the shipped files and the Structs drift apart. Regenerate with
``python -m compartment_cli.cli.schemas``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["KINDS", "SCHEMA_DIR", "generate", "shipped", "write_all"]

KINDS = ("result", "error", "list", "plan")
SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"
_TITLES = {
    "result": "compartment --output json: the final state of a run (exit 0 or 1)",
    "error": "compartment --output json: any other outcome (exit 2, 3, 4, 5, 70, 124, 130)",
    "list": "compartment deployment list --output json",
    "plan": "compartment promote --dry-run --output json: a promotion plan",
}


def generate(kind: str) -> str:
    """The schema of ``kind``, from the Structs the CLI encodes its JSON with."""
    import msgspec

    from compartment_cli.models.api import ListResponse
    from compartment_cli.models.plan import NothingToPromote, PromotionPlan
    from compartment_cli.models.result import ErrorDocument, RunResult

    structs: Any = {
        "result": (RunResult, NothingToPromote),
        "error": (ErrorDocument,),
        "list": (ListResponse,),
        "plan": (PromotionPlan,),
    }[kind]
    refs, defs = msgspec.json.schema_components(structs, ref_template="#/$defs/{name}")
    schema = {**(refs[0] if len(refs) == 1 else {"anyOf": list(refs)}), "$defs": defs}
    document = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": _TITLES[kind],
        **schema,
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def shipped(kind: str) -> str:
    """The schema of ``kind`` as the package ships it."""
    return (SCHEMA_DIR / f"{kind}.json").read_text(encoding="utf-8")


def write_all() -> None:
    for kind in KINDS:
        (SCHEMA_DIR / f"{kind}.json").write_text(generate(kind), encoding="utf-8")


if __name__ == "__main__":
    write_all()
