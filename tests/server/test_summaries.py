"""Wire shapes from rows: right values, and a listing's queries do not grow with its rows."""

from __future__ import annotations

from pathlib import Path

import msgspec

from compartment_cli.models.descriptor import ServiceConfig
from compartment_cli.server.store import Deployment, Run, Store, new_id, now
from compartment_cli.server.summaries import Summaries


def config(**service: object) -> str:
    """A service's config as the store keeps it (the JSON of a ServiceConfig)."""
    return msgspec.json.encode(msgspec.convert(service, type=ServiceConfig)).decode()


WEB = config(path="web", run={"command": "serve"})
WORKER = config(path="w", kind="worker", run={"command": "work"})


def fill(store: Store, runs: int) -> list[Deployment]:
    """``runs`` deploy runs of a web service and a worker in one environment."""
    project = store.ensure_project("shop")
    environment = store.ensure_environment(project.id, "staging")
    store.record_artifact("a" * 64)
    store.save_route(environment.id, "web", 41234)
    made: list[Deployment] = []
    for number in range(runs):
        run = Run(
            new_id("run"),
            "deploy",
            project.id,
            environment.id,
            None,
            f"k{number}",
            "succeeded",
            now(),
            now(),
        )
        store.insert_run(run)
        for service, config in (("web", WEB), ("worker", WORKER)):
            deployment = Deployment(
                new_id("dep"),
                run.id,
                environment.id,
                service,
                "a" * 64,
                config,
                "succeeded",
                "active",
                "healthy",
                1,
                None,
                now(),
                now(),
                None,
            )
            store.insert_deployment(deployment)
            made.append(deployment)
    return made


def queries_of(store: Store, deployments: list[Deployment]) -> int:
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)  # the private connection: counting, not using
    try:
        Summaries(store, "127.0.0.1").read(deployments)
    finally:
        store._db.set_trace_callback(None)
    return len(statements)


def test_summaries_carry_the_route_and_the_run(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    web, worker = fill(store, 1)
    summaries = Summaries(store, "127.0.0.1")

    read_web, read_worker = summaries.read([web, worker])
    full_web = summaries.deployments([web])[0]

    assert read_web.route_url == "http://127.0.0.1:41234/"
    assert read_worker.route_url is None  # a worker has no route
    assert read_web.operation.type == "deploy"
    assert read_web.deployment_run_id == web.run_id
    assert full_web.route_url == read_web.route_url
    assert full_web.run.command == "serve"
    assert summaries.read([]) == []


def test_a_listing_costs_the_same_queries_for_2_rows_as_for_200(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    deployments = fill(store, 100)

    assert queries_of(store, deployments[:2]) == queries_of(store, deployments) == 2
