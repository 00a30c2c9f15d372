"""The bases of every wire shape, and the names the API and compartment.yml share.

Each name rule is written once, here: its pattern (for msgspec, the OpenAPI
document and the compartment.yml validator) and the words that explain it (for
the CLI's messages).
"""

from __future__ import annotations

from typing import Annotated, Final

import msgspec

PROJECT_NAME_PATTERN: Final = "^[a-z][a-z0-9-]{0,62}$"
SERVICE_NAME_PATTERN: Final = "^[a-z0-9][a-z0-9_-]{0,62}$"
ENVIRONMENT_NAME_MAX_LENGTH: Final = 63
RESERVED_PROJECT_NAMES: Final = frozenset({"create"})

PROJECT_NAME_RULE: Final = (
    "lowercase letters, digits and '-', starting with a letter, at most 63 characters"
)
SERVICE_NAME_RULE: Final = (
    "lowercase letters, digits, '-' and '_', starting with a letter or digit, at most 63 characters"
)
ENVIRONMENT_NAME_RULE: Final = f"1 to {ENVIRONMENT_NAME_MAX_LENGTH} characters"

ProjectName = Annotated[str, msgspec.Meta(pattern=PROJECT_NAME_PATTERN)]
ServiceName = Annotated[str, msgspec.Meta(pattern=SERVICE_NAME_PATTERN)]
EnvironmentName = Annotated[str, msgspec.Meta(min_length=1, max_length=ENVIRONMENT_NAME_MAX_LENGTH)]

MAX_BAKE_MS: Final = 3_600_000
BakeMs = Annotated[int, msgspec.Meta(gt=0, le=MAX_BAKE_MS)]
"""(ours) ``bakeMs`` of promote, rollback and deploy: after the switch, watch the new
deployments this long with the previous ones still running; a failure switches back."""


class Wire(msgspec.Struct, rename="camel", kw_only=True):
    """Base of every response shape: camelCase on the wire, unknown keys ignored."""


class Request(
    msgspec.Struct, rename="camel", kw_only=True, forbid_unknown_fields=True, omit_defaults=True
):
    """Base of every request shape: camelCase on the wire, unknown keys refused."""


def wire_keys(struct: type[msgspec.Struct]) -> tuple[str, ...]:
    """The keys of ``struct`` as written on the wire and in compartment.yml, in field order."""
    return tuple(field.encode_name for field in msgspec.structs.fields(struct))
