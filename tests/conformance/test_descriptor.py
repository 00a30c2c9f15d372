# ruff: noqa: E501  (a table of one-line documents reads better unwrapped)
"""compartment.yml: accepted exactly when the platform's descriptor schema accepts it.

Each document below is one fact of the platform's contract files
(``compartment-descriptor.contract.ts``, ``service-build.contract.ts``,
``service-run.contract.ts``, ``service-readiness.contract.ts``,
``service-static.contract.ts``, ``compartment-resource.contract.ts``,
``compartment-service-connections.contract.ts``, ``variable-key.contract.ts``,
``access.contract.ts``; versions in platform.schema.json), with the reason.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from compartment_cli.project import PROJECT_FILE, ProjectFileError, load_project_file

HEAD = "name: shop\nservices:\n  web:\n    path: .\n"

ACCEPTED = [
    ("the shorthand: a service is its path", "name: shop\nservices:\n  web: .\n"),
    ("build.env is a list of variable names", HEAD + "    build: {env: [NODE_ENV, _X1]}\n"),
    ("build.packages is {build, runtime}", HEAD + "    build: {packages: {runtime: [curl]}}\n"),
    ("package names may carry versions", HEAD + "    build: {packages: {build: [nodejs=20.1]}}\n"),
    (
        "build.include lists literal relative paths",
        HEAD + "    build: {include: [shared, a/b.txt]}\n",
    ),
    (
        "run.restart is accepted (deprecated)",
        HEAD + "    run: {restart: {policy: unless-stopped}}\n",
    ),
    (
        "restart.maxRetries with on-failure",
        HEAD + "    run: {restart: {policy: on-failure, maxRetries: 2}}\n",
    ),
    ("ports: unique ports", HEAD + "    ports: [3000, 9090]\n"),
    ("readiness.path needs no leading /", HEAD + "    readiness: {type: http, path: healthz}\n"),
    ("accessMode authenticated", HEAD + "    accessMode: authenticated\n"),
    ("accessMode public", HEAD + "    accessMode: public\n"),
    ("release.command", HEAD + "    release: {command: ./migrate}\n"),
    (
        "kind: static with build.outputDirectory",
        "name: shop\nservices:\n  site:\n    path: .\n    kind: static\n    build: {outputDirectory: dist}\n",
    ),
    (
        "dockerfile without command, packages, outputDirectory",
        HEAD + "    build: {strategy: dockerfile}\n",
    ),
    (
        "a resource from an image",
        "name: shop\nservices: {web: .}\nresources:\n  cache: {image: redis:7, ports: [6379]}\n",
    ),
    (
        "a resource from a preset",
        "name: shop\nservices: {web: .}\nresources:\n  db: {preset: postgres}\n",
    ),
    (
        "resource readiness on a declared port",
        "name: shop\nservices: {web: .}\nresources:\n  db:\n    image: pg\n    ports: [5432]\n"
        "    readiness: {type: tcp, port: 5432, timeoutMs: 1000}\n",
    ),
    (
        "a connection to a declared resource",
        HEAD
        + "    connections:\n      db: {env: {DATABASE_URL: url}}\nresources:\n  db: {preset: postgres}\n",
    ),
    (
        "every kind",
        "name: shop\nservices:\n  a: {path: ., kind: api}\n  b: {path: ., kind: worker}\n"
        "  c: {path: ., kind: job}\n  d: {path: ., kind: cron}\n",
    ),
]

REFUSED = [
    (
        "build.env is not a mapping",
        HEAD + "    build: {env: {A: b}}\n",
        "services.web.build.env",
        "must be a list",
    ),
    (
        "variable names are letters, digits, _",
        HEAD + "    build: {env: [1X]}\n",
        "services.web.build.env[0]",
        "is not valid",
    ),
    (
        "COMPARTMENT_ variables are reserved",
        HEAD + "    build: {env: [COMPARTMENT_X]}\n",
        "services.web.build.env[0]",
        "reserved",
    ),
    (
        "build.packages is not a list",
        HEAD + "    build: {packages: [curl]}\n",
        "services.web.build.packages",
        "must be a mapping",
    ),
    (
        "build.packages needs a package",
        HEAD + "    build: {packages: {build: []}}\n",
        "services.web.build.packages",
        "at least one",
    ),
    (
        "package names are refused with spaces",
        HEAD + "    build: {packages: {build: ['a b']}}\n",
        "services.web.build.packages.build[0]",
        "is not valid",
    ),
    (
        "build.include is no glob",
        HEAD + "    build: {include: ['*.txt']}\n",
        "services.web.build.include[0]",
        "literal path",
    ),
    (
        "build.include is relative",
        HEAD + "    build: {include: [/etc]}\n",
        "services.web.build.include[0]",
        "relative",
    ),
    (
        "dockerfile takes no build.command",
        HEAD + "    build: {strategy: dockerfile, command: make}\n",
        "services.web.build.command",
        "railpack",
    ),
    (
        "dockerfile takes no run.command",
        HEAD + "    build: {strategy: dockerfile}\n    run: {command: x}\n",
        "services.web.run.command",
        "railpack",
    ),
    (
        "outputDirectory is for static only",
        HEAD + "    build: {outputDirectory: dist}\n",
        "services.web.build.outputDirectory",
        "kind: static",
    ),
    (
        "static needs outputDirectory",
        "name: shop\nservices:\n  s: {path: ., kind: static}\n",
        "services.s.build",
        "outputDirectory",
    ),
    (
        "static takes no run",
        "name: shop\nservices:\n  s:\n    path: .\n    kind: static\n    build: {outputDirectory: d}\n    run: {command: x}\n",
        "services.s.run",
        "kind: static",
    ),
    (
        "outputDirectory is not the service root",
        "name: shop\nservices:\n  s:\n    path: .\n    kind: static\n    build: {outputDirectory: a/..}\n",
        "services.s.build.outputDirectory",
        "inside the service",
    ),
    (
        "run needs command or restart",
        HEAD + "    run: {}\n",
        "services.web.run",
        "at least one key",
    ),
    (
        "restart policy is one of three",
        HEAD + "    run: {restart: {policy: always}}\n",
        "services.web.run.restart.policy",
        "one of",
    ),
    (
        "maxRetries only with on-failure",
        HEAD + "    run: {restart: {policy: 'no', maxRetries: 2}}\n",
        "services.web.run.restart.maxRetries",
        "on-failure",
    ),
    ("ports are 1 to 65535", HEAD + "    ports: [0]\n", "services.web.ports[0]", "at least 1"),
    ("ports are unique", HEAD + "    ports: [80, 80]\n", "services.web.ports[1]", "twice"),
    ("ports is not empty", HEAD + "    ports: []\n", "services.web.ports", "must not be empty"),
    (
        "readiness.path is not empty",
        HEAD + "    readiness: {type: http, path: ''}\n",
        "services.web.readiness.path",
        "must not be empty",
    ),
    (
        "readiness.type is required",
        HEAD + "    readiness: {path: /}\n",
        "services.web.readiness.type",
        "is required",
    ),
    (
        "accessMode is authenticated or public",
        HEAD + "    accessMode: private\n",
        "services.web.accessMode",
        "authenticated, public",
    ),
    (
        "release needs a command",
        HEAD + "    release: {}\n",
        "services.web.release.command",
        "is required",
    ),
    (
        "a resource needs image or preset",
        "name: shop\nservices: {web: .}\nresources:\n  db: {ports: [1]}\n",
        "resources.db",
        "image or preset",
    ),
    (
        "preset is postgres",
        "name: shop\nservices: {web: .}\nresources:\n  db: {preset: mysql}\n",
        "resources.db.preset",
        "one of",
    ),
    (
        "resource keys are strict",
        "name: shop\nservices: {web: .}\nresources:\n  db: {image: pg, imag: x}\n",
        "resources.db.imag",
        "did you mean image?",
    ),
    (
        "resource readiness port is declared",
        "name: shop\nservices: {web: .}\nresources:\n  db:\n    image: pg\n    readiness: {type: tcp, port: 1}\n",
        "resources.db.readiness.port",
        "ports",
    ),
    (
        "backup-artifacts is reserved",
        "name: shop\nservices: {web: .}\nresources:\n  db:\n    image: pg\n    volumes: {backup-artifacts: /b}\n",
        "resources.db.volumes.backup-artifacts",
        "reserved",
    ),
    (
        "resource and service names differ",
        "name: shop\nservices: {web: .}\nresources:\n  web: {image: pg}\n",
        "resources.web",
        "name of a service",
    ),
    (
        "connections name declared resources",
        HEAD + "    connections:\n      db: {env: {URL: url}}\n",
        "services.web.connections.db",
        "no resource",
    ),
    (
        "connections is a mapping",
        HEAD + "    connections: [db]\n",
        "services.web.connections",
        "must be a mapping",
    ),
    (
        "connection env is not empty",
        HEAD + "    connections:\n      db: {env: {}}\nresources:\n  db: {preset: postgres}\n",
        "services.web.connections.db.env",
        "must not be empty",
    ),
    (
        "unknown service key, with a hint",
        HEAD + "    port: 80\n",
        "services.web.port",
        "did you mean ports?",
    ),
]


def load(tmp_path: Path, text: str) -> object:
    path = tmp_path / PROJECT_FILE
    path.write_text(text)
    return load_project_file(path)


@pytest.mark.parametrize(("reason", "text"), ACCEPTED, ids=[a[0] for a in ACCEPTED])
def test_accepted(tmp_path: Path, reason: str, text: str) -> None:
    load(tmp_path, text)


@pytest.mark.parametrize(
    ("reason", "text", "key_path", "message"), REFUSED, ids=[r[0] for r in REFUSED]
)
def test_refused(tmp_path: Path, reason: str, text: str, key_path: str, message: str) -> None:
    with pytest.raises(ProjectFileError) as info:
        load(tmp_path, text)
    found = [(p.key_path, p.message) for p in info.value.problems]
    assert any(path == key_path and message in text for path, text in found), found
    assert all(p.line is not None for p in info.value.problems), found
