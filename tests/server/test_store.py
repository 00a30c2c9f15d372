"""The store's own rules, on a real SQLite file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from compartment_cli.server import runtime
from compartment_cli.server.store import Store


def test_a_route_port_given_twice_is_refused_and_the_first_route_keeps_it(tmp_path: Path) -> None:
    # Two routes admitted in one run were once handed the same free port; the
    # second save silently deleted the first route and the run died at its switch.
    store = Store(tmp_path / "state.db")
    try:
        environment = store.ensure_environment(store.ensure_project("shop").id, "production")
        store.save_route(environment.id, "api", 20001)
        with pytest.raises(sqlite3.IntegrityError):
            store.save_route(environment.id, "web", 20001)
        assert store.route_port(environment.id, "api") == 20001
        assert store.route_port(environment.id, "web") is None
        store.save_route(environment.id, "api", 20002)  # moving a route keeps one row
        assert store.routes() == [(environment.id, "api", 20002)]
    finally:
        store.close()


def test_free_port_never_hands_out_a_port_promised_elsewhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    drawn = iter([20001, 20001, 20002])
    monkeypatch.setattr(runtime.random, "randint", lambda _a, _b: next(drawn))
    assert runtime.free_port(taken={20001}) == 20002
