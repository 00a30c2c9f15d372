"""``python -m benchmarks [--smoke] [--json PATH] [--keep]``: every figure, one table."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from benchmarks import completion, fanout, routes, startup, throughput
from benchmarks.harness import COMPARTMENT, PYTHON, REPO, Plane, median, percentile
from benchmarks.table import Row, render

STARTUP_VERSION = 3.0  # compartment --version: at most this × python -c pass
STARTUP_HELP_GH = 1.5  # compartment promote --help: at most this × gh help
STARTUP_HELP_PYTHON = 6.0  # ... or, without gh, this × python -c pass
LATENCY_MEDIAN_MS = 20.0
LATENCY_VS_POLLING = 25.0  # at least this many times faster than polling
CLI_SHARE_S = 0.35
THROUGHPUT_VS_BARE = 0.5
PEAK_RSS_MB = 60.0
RSS_FLAT = 1.10  # "flat": the large flood's peak at most this × the small one's
FANOUT_P99_MS = 100.0
ROUTE_P99_ADDED_MS = 1.0
ROUTE_VS_DIRECT = 0.5
ROUTE_PROMOTION_S = 1.0
FIRST_ANSWER_MS = 10.0  # the candidate's first 2xx → the first request it answers
INSTANT_OVER_APP_MS = 25.0  # an instant promotion on the server: at most the app's own + this


@dataclass(frozen=True)
class Settings:
    startup_runs: int
    startup_warmup: int
    promotions: int
    flood_small: int
    flood_large: int
    followers: int
    fanout_runs: int
    route_requests: int = 5000  # one keep-alive client, one request after the other
    route_seconds: float = 5.0  # of throughput, 8 keep-alive connections
    route_promotions: int = 5  # under load
    instant_promotions: int = 10
    use_hyperfine: bool = True  # where installed

    @property
    def timer(self) -> str:
        return "hyperfine" if self.use_hyperfine and startup.hyperfine() else "its own loop"


FULL = Settings(30, 3, 30, 10_000, 100_000, 200, 5)
SMOKE = Settings(
    3,
    1,
    2,
    200,
    2_000,
    5,
    1,
    route_requests=200,
    route_seconds=0.5,
    route_promotions=1,
    instant_promotions=2,
)


def _log(message: str) -> None:
    sys.stderr.write(f"[bench {time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


def _count(n: int) -> str:
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


# --- figures -------------------------------------------------------------------------------


def startup_rows(settings: Settings) -> list[Row]:
    gh = shutil.which("gh")
    commands = [
        [PYTHON, "-c", "pass"],
        [COMPARTMENT, "--version"],
        [COMPARTMENT, "promote", "--help"],
    ]
    if gh is not None:
        commands.append([gh, "help"])
    _log(f"start-up: {settings.startup_runs} runs of each command ({settings.timer})")
    times = startup.medians(
        commands,
        runs=settings.startup_runs,
        warmup=settings.startup_warmup,
        use_hyperfine=settings.use_hyperfine,
    )
    python, version, help_ = (t * 1000 for t in times[:3])
    rows = [
        Row(
            figure="start-up: compartment --version",
            value=version,
            unit="ms",
            reference="python -c pass",
            reference_value=python,
            ratio=version / python,
            target=f"≤ {STARTUP_VERSION:g}×",
            met=version / python <= STARTUP_VERSION,
        )
    ]
    if gh is not None:
        gh_help = times[3] * 1000
        rows.append(
            Row(
                figure="start-up: compartment promote --help",
                value=help_,
                unit="ms",
                reference="gh help",
                reference_value=gh_help,
                ratio=help_ / gh_help,
                target=f"≤ {STARTUP_HELP_GH:g}×",
                met=help_ / gh_help <= STARTUP_HELP_GH,
            )
        )
    else:
        rows.append(
            Row(
                figure="start-up: compartment promote --help",
                value=help_,
                unit="ms",
                reference="python -c pass (no gh here)",
                reference_value=python,
                ratio=help_ / python,
                target=f"≤ {STARTUP_HELP_PYTHON:g}×",
                met=help_ / python <= STARTUP_HELP_PYTHON,
            )
        )
    return rows


def completion_rows(events: Plane, polling: Plane, settings: Settings, scratch: Path) -> list[Row]:
    n = settings.promotions
    _log(f"completion and end to end: {n} promotions with events, {n} polling, alternating")
    ev, po = completion.measure(events, polling, n, scratch)
    ev_median, po_median = median(ev.latency) * 1000, median(po.latency) * 1000
    ev_p95, po_p95 = percentile(ev.latency, 95) * 1000, percentile(po.latency, 95) * 1000
    share = median(ev.share)
    return [
        Row(
            figure=f"completion latency, median of {n} (run.completed → exit)",
            value=ev_median,
            unit="ms",
            reference="polling fallback",
            reference_value=po_median,
            ratio=po_median / ev_median,
            ratio_text="× faster",
            target=f"≤ {LATENCY_MEDIAN_MS:g} ms, ≥ {LATENCY_VS_POLLING:g}× faster",
            met=ev_median <= LATENCY_MEDIAN_MS and po_median / ev_median >= LATENCY_VS_POLLING,
        ),
        Row(
            figure=f"completion latency, p95 of {n}",
            value=ev_p95,
            unit="ms",
            reference="polling fallback",
            reference_value=po_p95,
            ratio=po_p95 / ev_p95,
            ratio_text="× faster",
        ),
        Row(
            figure=f"promote wall time, median of {n}",
            value=median(ev.wall),
            unit="s",
            reference="polling fallback",
            reference_value=median(po.wall),
            ratio=median(po.wall) / median(ev.wall),
            ratio_text="× faster",
        ),
        Row(
            figure="promote: the CLI's own share (wall − run on server)",
            value=share,
            unit="s",
            reference="the run on the server",
            reference_value=median(ev.server),
            target=f"≤ {CLI_SHARE_S:g} s",
            met=share <= CLI_SHARE_S,
        ),
        Row(
            figure="promote: the CLI's own share, polling fallback",
            value=median(po.share),
            unit="s",
            reference="the run on the server",
            reference_value=median(po.server),
        ),
    ]


def fanout_rows(events: Plane, settings: Settings) -> list[Row]:
    n, runs = settings.followers, settings.fanout_runs
    _log(f"fan-out: 1 follower, then {n}, {runs} promotions each")
    one = fanout.measure(events, 1, runs)
    many = fanout.measure(events, n, runs)
    return [
        Row(
            figure=f"fan-out: commit → delivery p99, {n} followers",
            value=many.p99_ms,
            unit="ms",
            reference="1 follower",
            reference_value=one.p99_ms,
            ratio=many.p99_ms / one.p99_ms if one.p99_ms > 0 else None,
            target=f"≤ {FANOUT_P99_MS:g} ms",
            met=many.p99_ms <= FANOUT_P99_MS,
        ),
        Row(
            figure=f"fan-out: commit → delivery p50, {n} followers",
            value=many.p50_ms,
            unit="ms",
            reference="1 follower",
            reference_value=one.p50_ms,
        ),
        Row(
            figure="fan-out: control plane memory per follower",
            value=many.kib_per_follower,
            unit="KiB",
            reference="control plane RSS without followers",
            reference_value=many.rss_before_kib / 1024,
            reference_unit="MB",
        ),
    ]


FLOOD_SERVER = REPO / "benchmarks" / "flood_server.py"


def _flood_plane(root: Path, events: int) -> Plane:
    """A control plane whose promotions each start with ``events`` progress events."""
    # The event log keeps every event of the flooded runs: their first event's
    # commit time is where the rate is measured from.
    return Plane(
        root,
        command=[PYTHON, str(FLOOD_SERVER), "--bench-flood", str(events)],
        extra_args=["--event-retention", str(4 * events + 10_000)],
    )


def throughput_rows(root: Path, settings: Settings) -> list[Row]:
    small, large = settings.flood_small, settings.flood_large
    scratch = root / "throughput"
    _log(f"throughput: deployment watch --verbose of {_count(small)} events")
    with _flood_plane(root / "flood-small", small) as plane:
        plane.deploy_example()
        cli_small = throughput.with_cli(plane, small, scratch)
    _log(f"throughput: {_count(large)} events, deployment watch --verbose then bare httpx-sse")
    with _flood_plane(root / "flood-large", large) as plane:
        plane.deploy_example()
        cli = throughput.with_cli(plane, large, scratch)
        bare = throughput.with_bare_sse(plane, large, scratch)
    rss_small, rss_large = cli_small.max_rss_kib / 1024, cli.max_rss_kib / 1024
    return [
        Row(
            figure=f"throughput: deployment watch --verbose, {_count(large)} events",
            value=cli.rate,
            unit="events/s",
            reference="bare httpx-sse",
            reference_value=bare.rate,
            ratio=cli.rate / bare.rate,
            target=f"≥ {THROUGHPUT_VS_BARE:g}×",
            met=cli.rate / bare.rate >= THROUGHPUT_VS_BARE,
        ),
        Row(
            figure="throughput: CPU per event of the follower (start-up included)",
            value=cli.cpu / large * 1e6,
            unit="µs",
            reference="bare httpx-sse",
            reference_value=bare.cpu / large * 1e6,
            ratio=cli.cpu / bare.cpu,
        ),
        Row(
            figure=f"CLI peak RSS, {_count(large)} events",
            value=rss_large,
            unit="MB",
            reference=f"{_count(small)} events",
            reference_value=rss_small,
            ratio=rss_large / rss_small,
            target=f"< {PEAK_RSS_MB:g} MB, flat (≤ {RSS_FLAT:g}×)",
            met=rss_large < PEAK_RSS_MB and rss_large / rss_small <= RSS_FLAT,
        ),
    ]


def route_rows(root: Path, settings: Settings) -> list[Row]:
    n, promotions = settings.route_requests, settings.route_promotions
    _log(f"routes: {n} requests through the route and straight, then throughput, then load")
    with Plane(root / "routes") as plane:
        directory = routes.write_project(root / "routebench")
        for environment in ("staging", "production"):
            plane.deploy_example(directory, environment)
        route_port, direct_port = routes.ports(plane)
        latency = {
            port: routes.load(port, "--sequential", str(n)) for port in (direct_port, route_port)
        }
        rate = {
            port: routes.load(
                port, "--connections", "8", "--seconds", f"{settings.route_seconds:g}"
            )
            for port in (direct_port, route_port)
        }
        loaded = routes.promotions_under_load(plane, promotions, clients=8)
        instant = routes.instant_promotions(plane, settings.instant_promotions)
    if loaded.failures:
        _log(f"routes: failed requests, e.g. {loaded.failures}")
    via, direct = latency[route_port].latencies, latency[direct_port].latencies
    p50, direct_p50 = median(via) * 1000, median(direct) * 1000
    p99, direct_p99 = percentile(via, 99) * 1000, percentile(direct, 99) * 1000
    via_rate, direct_rate = rate[route_port].rate, rate[direct_port].rate
    straight = "straight to the deployment"
    first = [seconds * 1000 for seconds in instant.to_first_answer]
    server, app = median(instant.server), median(instant.app)
    m = settings.instant_promotions
    return [
        Row(
            figure="route: requests/s, 8 keep-alive connections, fast app",
            value=via_rate,
            unit="requests/s",
            reference=straight,
            reference_value=direct_rate,
            ratio=via_rate / direct_rate,
            target=f"≥ {ROUTE_VS_DIRECT:g}×",
            met=via_rate / direct_rate >= ROUTE_VS_DIRECT,
        ),
        Row(
            figure=f"route: latency p50 of {n}, one keep-alive client",
            value=p50,
            unit="ms",
            reference=straight,
            reference_value=direct_p50,
            ratio=p50 / direct_p50,
        ),
        Row(
            figure=f"route: latency p99 of {n}, one keep-alive client",
            value=p99,
            unit="ms",
            reference=straight,
            reference_value=direct_p99,
            ratio=p99 / direct_p99,
            target=f"≤ +{ROUTE_P99_ADDED_MS:g} ms",
            met=p99 - direct_p99 <= ROUTE_P99_ADDED_MS,
        ),
        Row(
            figure=f"route: failed requests, {promotions} promotions under load",
            value=float(loaded.failed),
            unit="requests",
            reference="requests answered",
            reference_value=float(loaded.answered),
            target="0",
            met=loaded.failed == 0,
        ),
        Row(
            figure=f"route: slowest of {promotions} promotions under load",
            value=loaded.slowest,
            unit="s",
            reference="the drain bound",
            reference_value=10.0,
            target=f"< {ROUTE_PROMOTION_S:g} s",
            met=loaded.slowest < ROUTE_PROMOTION_S,
        ),
        Row(
            figure=f"route: candidate's first 2xx → first request it answers, median of {m}",
            value=median(first),
            unit="ms",
            reference="slowest",
            reference_value=max(first),
            target=f"≤ {FIRST_ANSWER_MS:g} ms",
            met=median(first) <= FIRST_ANSWER_MS,
        ),
        Row(
            figure=f"instant promotion: run on the server, median of {m}",
            value=server,
            unit="s",
            reference="the app's own start → ready",
            reference_value=app,
            target=f"≤ app + {INSTANT_OVER_APP_MS:g} ms",
            met=(server - app) * 1000 <= INSTANT_OVER_APP_MS,
        ),
    ]


# --- the run ---------------------------------------------------------------------------------


def machine(settings: Settings) -> str:
    cpus = os.cpu_count()
    return (
        f"{platform.system()} {platform.machine()}, {cpus} CPU(s), "
        f"Python {platform.python_version()} ({sys.executable}), "
        f"start-up timed with {settings.timer}"
    )


def run(settings: Settings, root: Path) -> list[Row]:
    rows = startup_rows(settings)
    _log("starting two control planes (events, --no-events) with examples/hello in staging")
    with (
        Plane(root / "events") as events,
        Plane(root / "polling", extra_args=["--no-events"]) as polling,
    ):
        events.deploy_example()
        polling.deploy_example()
        rows += completion_rows(events, polling, settings, root / "scratch")
        polling.stop()
        rows += fanout_rows(events, settings)
    rows += throughput_rows(root, settings)
    rows += route_rows(root, settings)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny counts: checks it all runs")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON to this file")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    parser.add_argument(
        "--no-hyperfine", action="store_true", help="time start-up with its own loop"
    )
    parser.add_argument(
        "--scratch", type=Path, help="where the control planes live (default: a new temp dir)"
    )
    args = parser.parse_args(argv)
    settings = SMOKE if args.smoke else FULL
    if args.no_hyperfine:
        settings = replace(settings, use_hyperfine=False)
    if args.scratch is not None:
        args.scratch.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="compartment-bench-", dir=args.scratch))
    started = time.monotonic()
    try:
        rows = run(settings, root)
    finally:
        if args.keep:
            _log(f"scratch kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    header = f"compartment-cli benchmarks{' (smoke: tiny counts)' if args.smoke else ''}"
    print(f"{header}\n{machine(settings)}\n")
    print(render(rows), flush=True)
    _log(f"done in {time.monotonic() - started:.0f} s")
    if args.json is not None:
        document = {
            "machine": machine(settings),
            "smoke": args.smoke,
            "rows": [r.as_dict() for r in rows],
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 0
