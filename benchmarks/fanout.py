"""Fan-out: N followers of one environment; delivery delay and memory per follower.

On the control plane with the event stream, ``benchmarks.followers`` opens N
streams of production; once all are subscribed, RUNS promotions run one
after the other. Delay: from an event's ``at`` (the control plane's clock
when it committed it) to its arrival at a follower, over every follower and
every event with an ``at``. Memory: the control plane's RSS with the
followers subscribed minus before, per follower.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from benchmarks.harness import PYTHON, REPO, Plane, percentile, rss_kib, spawn


@dataclass(frozen=True)
class FanOut:
    followers: int
    deliveries: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    rss_before_kib: int
    rss_with_followers_kib: int

    @property
    def kib_per_follower(self) -> float:
        return (self.rss_with_followers_kib - self.rss_before_kib) / self.followers


def measure(plane: Plane, followers: int, runs: int) -> FanOut:
    plane.wait_run(plane.post_promote())  # warm: every code path of a run has been taken
    time.sleep(0.5)
    before = rss_kib(plane.pid)
    running = spawn(
        [
            PYTHON,
            "-m",
            "benchmarks.followers",
            plane.api_url,
            plane.token,
            "hello",
            "production",
            str(followers),
            str(runs),
        ],
        cwd=REPO,
        env=plane.env,
        capture=True,
    )
    running.expect_subscribed("benchmarks.followers")
    time.sleep(0.5)  # each stream subscribes to the bus just after its first block
    with_followers = rss_kib(plane.pid)
    for _ in range(runs):
        plane.wait_run(plane.post_promote())
    done = running.wait(timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"benchmarks.followers exited {done.returncode}")
    delays = json.loads(done.stdout)["delays_ms"]
    return FanOut(
        followers=followers,
        deliveries=len(delays),
        p50_ms=percentile(delays, 50),
        p99_ms=percentile(delays, 99),
        max_ms=max(delays),
        rss_before_kib=before,
        rss_with_followers_kib=with_followers,
    )
