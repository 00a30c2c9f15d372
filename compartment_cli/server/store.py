"""The control plane's state in SQLite (WAL): projects, environments, artifacts,
runs, deployments, routes and the event log.

One connection, used only from the event loop's thread: every statement is
short and local, so nothing here awaits. sqlite3's own same-thread check stays
on (the server creates the store on the thread that then runs the loop), so a
use from a worker thread fails loudly instead of racing. Rows come back as
small dataclasses; ``summaries.py`` turns them into the API's wire shapes.
"""

from __future__ import annotations

import secrets
import sqlite3
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import astuple, dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path

import msgspec

from compartment_cli.models.api import (
    DeploymentStatus,
    EnvironmentSummary,
    Health,
    ProjectSummary,
    PromotionStage,
    RunStatus,
)
from compartment_cli.models.descriptor import ServiceConfig
from compartment_cli.server.tables import SCHEMA

LOCAL_ORGANIZATION_ID = "org_local"


def now() -> str:
    """ISO-8601 in UTC with milliseconds, as every timestamp on the wire."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(10)}"


@dataclass(frozen=True)
class Project:
    id: str
    name: str
    created_at: str
    updated_at: str

    def summary(self) -> ProjectSummary:
        return ProjectSummary(
            id=self.id,
            name=self.name,
            organization_id=LOCAL_ORGANIZATION_ID,
            archived_at=None,
            created_at=self.created_at,
            updated_at=self.updated_at,
        )


@dataclass(frozen=True)
class Environment:
    id: str
    project_id: str
    name: str
    created_at: str
    updated_at: str

    def summary(self) -> EnvironmentSummary:
        return EnvironmentSummary(
            id=self.id,
            name=self.name,
            project_id=self.project_id,
            created_at=self.created_at,
            updated_at=self.updated_at,
        )


@dataclass(frozen=True)
class Run:
    id: str
    type: str
    project_id: str
    environment_id: str
    source_environment_id: str | None
    move_key: str
    status: RunStatus
    created_at: str
    completed_at: str | None


@dataclass(frozen=True)
class Deployment:
    id: str
    run_id: str
    environment_id: str
    service_name: str
    artifact_digest: str
    config: str
    status: DeploymentStatus
    promotion_stage: PromotionStage
    health: Health
    is_active: int
    failure_message: str | None
    created_at: str
    completed_at: str | None
    previous_id: str | None
    """The deployment this one replaces when it becomes active."""

    @cached_property
    def service(self) -> ServiceConfig:
        """``config`` decoded, once per row read."""
        return msgspec.json.decode(self.config, type=ServiceConfig)


@dataclass(frozen=True)
class Change:
    """What ``Store.update_deployment`` changes in a deployment's row; None keeps a column."""

    status: DeploymentStatus | None = None
    stage: PromotionStage | None = None
    health: Health | None = None
    is_active: bool | None = None
    failure_message: str | None = None
    completed: bool = False  # completed_at becomes now


class Store:
    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(SCHEMA)
        rows = self._db.execute("SELECT digest FROM cleaned_artifacts")
        self._cleaned: set[str] = {row[0] for row in rows}  # this store is their only writer

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Everything inside commits together or not at all."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # --- projects and environments ------------------------------------------

    def project(self, name: str) -> Project | None:
        row = self._db.execute(
            "SELECT id, name, created_at, updated_at FROM projects WHERE name = ?", (name,)
        ).fetchone()
        return Project(*row) if row else None

    def project_by_id(self, project_id: str) -> Project:
        row = self._db.execute(
            "SELECT id, name, created_at, updated_at FROM projects WHERE id = ?", (project_id,)
        ).fetchone()
        return Project(*row)

    def ensure_project(self, name: str) -> Project:
        existing = self.project(name)
        if existing:
            return existing
        stamp = now()
        self._db.execute(
            "INSERT INTO projects VALUES (?, ?, ?, ?)", (new_id("prj"), name, stamp, stamp)
        )
        project = self.project(name)
        assert project is not None
        return project

    _ENV_COLUMNS = "id, project_id, name, created_at, updated_at"

    def environment(self, project_id: str, name: str) -> Environment | None:
        row = self._db.execute(
            f"SELECT {self._ENV_COLUMNS} FROM environments WHERE project_id = ? AND name = ?",  # noqa: S608
            (project_id, name),
        ).fetchone()
        return Environment(*row) if row else None

    def environments(self, project_id: str) -> list[Environment]:
        rows = self._db.execute(
            f"SELECT {self._ENV_COLUMNS} FROM environments WHERE project_id = ? ORDER BY name",  # noqa: S608
            (project_id,),
        ).fetchall()
        return [Environment(*row) for row in rows]

    def environment_by_id(self, environment_id: str) -> Environment:
        row = self._db.execute(
            f"SELECT {self._ENV_COLUMNS} FROM environments WHERE id = ?",  # noqa: S608
            (environment_id,),
        ).fetchone()
        return Environment(*row)

    def ensure_environment(self, project_id: str, name: str) -> Environment:
        existing = self.environment(project_id, name)
        if existing:
            return existing
        stamp = now()
        self._db.execute(
            "INSERT INTO environments VALUES (?, ?, ?, ?, ?)",
            (new_id("env"), project_id, name, stamp, stamp),
        )
        environment = self.environment(project_id, name)
        assert environment is not None
        return environment

    def service_names(self, project_id: str) -> set[str]:
        rows = self._db.execute(
            "SELECT DISTINCT d.service_name FROM deployments d"
            " JOIN environments e ON e.id = d.environment_id WHERE e.project_id = ?",
            (project_id,),
        )
        return {row[0] for row in rows}

    # --- artifacts ----------------------------------------------------------

    def record_artifact(self, digest: str) -> None:
        self._db.execute("INSERT OR IGNORE INTO artifacts VALUES (?, ?)", (digest, now()))

    def mark_cleaned(self, digest: str) -> None:
        """Retention removed this artifact (``reusableImageState`` says ``cleaned``)."""
        self._db.execute("INSERT OR IGNORE INTO cleaned_artifacts VALUES (?, ?)", (digest, now()))
        self._cleaned.add(digest)

    def cleaned_artifacts(self) -> set[str]:
        return self._cleaned

    # --- runs and deployments -----------------------------------------------

    _RUN_COLUMNS = (
        "id, type, project_id, environment_id, source_environment_id, move_key, status,"
        " created_at, completed_at"
    )
    _DEPLOYMENT_COLUMNS = (
        "id, run_id, environment_id, service_name, artifact_digest, config, status,"
        " promotion_stage, health, is_active, failure_message, created_at, completed_at,"
        " previous_id"
    )

    def insert_run(self, run: Run) -> None:
        self._db.execute("INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", astuple(run))

    def insert_deployment(self, deployment: Deployment) -> None:
        self._db.execute(
            "INSERT INTO deployments VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            astuple(deployment),
        )

    def run(self, run_id: str) -> Run | None:
        row = self._db.execute(
            f"SELECT {self._RUN_COLUMNS} FROM runs WHERE id = ?",  # noqa: S608
            (run_id,),
        ).fetchone()
        return Run(*row) if row else None

    def runs_by_id(self, run_ids: Collection[str]) -> dict[str, Run]:
        marks = ", ".join("?" * len(run_ids))
        rows = self._db.execute(
            f"SELECT {self._RUN_COLUMNS} FROM runs WHERE id IN ({marks})",  # noqa: S608
            tuple(run_ids),
        )
        return {row[0]: Run(*row) for row in rows}

    def unfinished_runs(self) -> list[Run]:
        rows = self._db.execute(
            f"SELECT {self._RUN_COLUMNS} FROM runs"  # noqa: S608
            " WHERE status IN ('queued', 'running') ORDER BY created_at"
        )
        return [Run(*row) for row in rows]

    def finish_run(self, run_id: str, status: RunStatus) -> None:
        self._db.execute(
            "UPDATE runs SET status = ?, completed_at = ? WHERE id = ?", (status, now(), run_id)
        )

    def set_run_status(self, run_id: str, status: RunStatus) -> None:
        self._db.execute("UPDATE runs SET status = ? WHERE id = ?", (status, run_id))

    def deployment(self, deployment_id: str) -> Deployment | None:
        row = self._db.execute(
            f"SELECT {self._DEPLOYMENT_COLUMNS} FROM deployments WHERE id = ?",  # noqa: S608
            (deployment_id,),
        ).fetchone()
        return Deployment(*row) if row else None

    def run_deployments(self, run_id: str) -> list[Deployment]:
        rows = self._db.execute(
            f"SELECT {self._DEPLOYMENT_COLUMNS} FROM deployments"  # noqa: S608
            " WHERE run_id = ? ORDER BY service_name",
            (run_id,),
        )
        return [Deployment(*row) for row in rows]

    def environment_deployments(
        self, environment_id: str, *, service: str | None = None, limit: int = 100
    ) -> list[Deployment]:
        """Newest first."""
        sql = f"SELECT {self._DEPLOYMENT_COLUMNS} FROM deployments WHERE environment_id = ?"  # noqa: S608
        params: list[object] = [environment_id]
        if service is not None:
            sql += " AND service_name = ?"
            params.append(service)
        sql += " ORDER BY created_at DESC, rowid DESC LIMIT ?"
        params.append(limit)
        return [Deployment(*row) for row in self._db.execute(sql, params)]

    def active_deployments(
        self, environment_id: str, *, service: str | None = None
    ) -> list[Deployment]:
        sql = (
            f"SELECT {self._DEPLOYMENT_COLUMNS} FROM deployments"  # noqa: S608
            " WHERE environment_id = ? AND is_active = 1"
        )
        params: list[object] = [environment_id]
        if service is not None:
            sql += " AND service_name = ?"
            params.append(service)
        sql += " ORDER BY service_name"
        return [Deployment(*row) for row in self._db.execute(sql, params)]

    def all_deployments(self) -> list[Deployment]:  # newest first per (environment, service)
        rows = self._db.execute(
            f"SELECT {self._DEPLOYMENT_COLUMNS} FROM deployments"  # noqa: S608
            " ORDER BY environment_id, service_name, created_at DESC, rowid DESC"
        )
        return [Deployment(*row) for row in rows]

    def all_active_deployments(self) -> list[Deployment]:
        rows = self._db.execute(
            f"SELECT {self._DEPLOYMENT_COLUMNS} FROM deployments"  # noqa: S608
            " WHERE is_active = 1 ORDER BY environment_id, service_name"
        )
        return [Deployment(*row) for row in rows]

    def update_deployment(self, deployment_id: str, change: Change) -> None:
        sets: list[str] = []
        params: list[object] = []
        for column, value in (
            ("status", change.status),
            ("promotion_stage", change.stage),
            ("health", change.health),
            ("failure_message", change.failure_message),
        ):
            if value is not None:
                sets.append(f"{column} = ?")
                params.append(value)
        if change.is_active is not None:
            sets.append("is_active = ?")
            params.append(int(change.is_active))
        if change.completed:
            sets.append("completed_at = ?")
            params.append(now())
        if not sets:
            return
        params.append(deployment_id)
        self._db.execute(f"UPDATE deployments SET {', '.join(sets)} WHERE id = ?", params)  # noqa: S608

    # --- routes ---------------------------------------------------------------

    def route_port(self, environment_id: str, service_name: str) -> int | None:
        row = self._db.execute(
            "SELECT port FROM routes WHERE environment_id = ? AND service_name = ?",
            (environment_id, service_name),
        ).fetchone()
        return int(row[0]) if row else None

    def routes_of(self, environment_ids: Collection[str]) -> dict[tuple[str, str], int]:
        """The route ports of these environments, by (environment id, service name)."""
        marks = ", ".join("?" * len(environment_ids))
        rows = self._db.execute(
            "SELECT environment_id, service_name, port FROM routes"  # noqa: S608
            f" WHERE environment_id IN ({marks})",
            tuple(environment_ids),
        )
        return {(row[0], row[1]): int(row[2]) for row in rows}

    def save_route(self, environment_id: str, service_name: str, port: int) -> None:
        # An upsert on the route's key, not INSERT OR REPLACE: that would silently
        # delete another route whose port this one collides with.
        self._db.execute(
            "INSERT INTO routes VALUES (?, ?, ?)"
            " ON CONFLICT (environment_id, service_name) DO UPDATE SET port = excluded.port",
            (environment_id, service_name, port),
        )

    def route_ports(self) -> set[int]:
        return {int(row[0]) for row in self._db.execute("SELECT port FROM routes")}

    def routes(self) -> list[tuple[str, str, int]]:
        rows = self._db.execute("SELECT environment_id, service_name, port FROM routes")
        return [(row[0], row[1], int(row[2])) for row in rows]

    # --- events ---------------------------------------------------------------

    def append_event(self, project: str, environment: str, event_type: str, data: bytes) -> int:
        cursor = self._db.execute(
            "INSERT INTO events (project_name, environment_name, type, data) VALUES (?, ?, ?, ?)",
            (project, environment, event_type, data),
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def events_after(
        self, project: str, environment: str, after: int, *, limit: int = 1000
    ) -> list[tuple[int, str, bytes]]:
        rows = self._db.execute(
            "SELECT id, type, data FROM events"
            " WHERE project_name = ? AND environment_name = ? AND id > ? ORDER BY id LIMIT ?",
            (project, environment, after, limit),
        )
        return [(int(row[0]), str(row[1]), bytes(row[2])) for row in rows]

    def prune_events(self, *, keep: int) -> int:
        """Delete all but the newest ``keep`` events; ids are never reused (AUTOINCREMENT)."""
        cursor = self._db.execute(
            "DELETE FROM events WHERE id <= (SELECT max(id) FROM events) - ?", (keep,)
        )
        return cursor.rowcount

    def last_event_id(self) -> int:
        row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
        return int(row[0]) if row else 0
