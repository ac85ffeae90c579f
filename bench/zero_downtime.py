"""What users see during a deployment: engine-driven rollouts against a naive stop-and-start.

Runs its own embedded stack (Temporal dev server, Envoy, a worker on the local runtime, real
app processes) in a temporary ZDP_HOME, puts a steady open-loop load through Envoy, and for
each repetition measures, side by side under the same load:

- canary:     finance-trading to a healthy version, 1 → 5 → 25 → 100 %, then promote;
- rollback:   finance-trading to a version whose API answers 503, caught and rolled back;
- blue-green: pharma-manufacturing switched to a new colour;
- naive:      finance-trading's stable process stopped and the new version started on the
              same port, the way a plain redeploy does it.

For each: requests sent, requests failed, client p50/p99 latency, and for the rollback the
time from the canary's first failed response to its weight back at 0. Prints medians and
min-max over the repetitions; `--json` prints one JSON object. Every load loop is bounded
in time and count and targets loopback only.

    .venv/bin/python bench/zero_downtime.py --rate 500 --repeat 3 [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from zdp.cli.demo import DEMO_CONFIG, TARGETS, ContainmentClock, Demo  # noqa: E402
from zdp.loadgen import LoadProcess  # noqa: E402
from zdp.models import ReleaseManifest, Strategy  # noqa: E402
from zdp.platforms.envoy.router import EnvoyRouter  # noqa: E402
from zdp.platforms.layout import LOCAL_APPS  # noqa: E402
from zdp.platforms.local.runtime import LocalRuntime  # noqa: E402
from zdp.stack import Stack  # noqa: E402
from zdp.temporal import connect  # noqa: E402


def _url(app: str) -> str:
    return f"http://127.0.0.1:{LOCAL_APPS[app].listener_port()}{TARGETS[app]}"


async def _under_load(rate: float, app: str, work: Any) -> tuple[dict[str, float], Any]:
    load = LoadProcess(_url(app), rate=rate, max_seconds=300)
    await load.start()
    await asyncio.sleep(1.0)
    try:
        outcome = await work
    finally:
        await asyncio.sleep(0.5)
        report = await load.stop()
    report.pop("failure_kinds", None)
    return report, outcome


async def _naive_redeploy(demo: Demo, version: str) -> str:
    """Stop stable, start the new version in its place: what a plain redeploy does."""
    runtime = LocalRuntime(demo.home)
    envelope_manifest = ReleaseManifest(
        app="finance-trading", version=version, artifact=demo.artifacts["finance-trading"]
    )
    await runtime.retire("finance-trading", "stable")
    await runtime.provision(envelope_manifest, "stable")
    return "redeployed"


async def bench(rate: float, repeat: int) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="zdp-bench-"))
    os.environ["ZDP_HOME"] = str(home)
    os.environ.setdefault("ZDP_PORT_BASE", "29000")  # below the ephemeral ports
    os.environ.setdefault("ZDP_TEMPORAL_PORT", "29400")
    demo = Demo(home, quiet=True)
    stack = Stack(home=home, config=DEMO_CONFIG)
    await asyncio.to_thread(demo.prepare)
    client = await connect(target_host=stack.temporal_address)
    results: dict[str, list[dict[str, float]]] = {
        k: [] for k in ("canary", "rollback", "blue_green", "naive")
    }
    try:
        await demo.deploy(client, "finance-trading", "1.0.0", Strategy.canary, load=False)
        await demo.deploy(client, "pharma-manufacturing", "1.0.0", Strategy.blue_green, load=False)
        for i in range(repeat):
            good, bad = f"2.{i}.0", f"9.{i}.0"
            load, s = await _under_load(
                rate, "finance-trading",
                demo.deploy(client, "finance-trading", good, Strategy.canary, load=False),
            )  # fmt: skip
            results["canary"].append({**load, "promoted": float(s.outcome == "promoted")})

            router = EnvoyRouter(home)
            clock = ContainmentClock(router, "finance-trading", "canary")
            clock.start()
            load, s = await _under_load(
                rate, "finance-trading",
                demo.deploy(
                    client, "finance-trading", bad, Strategy.canary, load=False,
                    FAULT_ERROR_RATE="1.0",
                ),
            )  # fmt: skip
            containment = await clock.stop()
            await router.aclose()
            results["rollback"].append(
                {
                    **load,
                    "rolled_back": float(s.outcome == "rolled_back"),
                    "containment_ms": containment if containment is not None else -1.0,
                }
            )

            load, s = await _under_load(
                rate, "pharma-manufacturing",
                demo.deploy(
                    client, "pharma-manufacturing", f"2.{i}.0", Strategy.blue_green, load=False
                ),
            )  # fmt: skip
            results["blue_green"].append({**load, "promoted": float(s.outcome == "promoted")})

            load, _ = await _under_load(
                rate, "finance-trading", _naive_redeploy(demo, f"3.{i}.0")
            )  # fmt: skip
            results["naive"].append(load)
            # Put the engine back in charge of a healthy stable for the next round.
            await demo.deploy(client, "finance-trading", f"4.{i}.0", Strategy.canary, load=False)
    finally:
        await asyncio.to_thread(stack.down)
    return {
        "benchmark": "zero_downtime",
        "rate_per_s": rate,
        "repeat": repeat,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "scenarios": {name: _stats(runs) for name, runs in results.items()},
    }


def _stats(runs: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for key in runs[0]:
        values = [r[key] for r in runs]
        out[key] = {
            "median": statistics.median(values),
            "min": min(values),
            "max": max(values),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=500.0, help="requests per second")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    started = time.monotonic()
    result = asyncio.run(bench(args.rate, args.repeat))
    result["wall_s"] = round(time.monotonic() - started, 1)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for name, metrics in result["scenarios"].items():
        print(f"{name}:")
        for key, stats in metrics.items():
            low, high = stats["min"], stats["max"]
            print(f"  {key:<16} median {stats['median']:>9.2f}  [{low:.2f} to {high:.2f}]")


if __name__ == "__main__":
    main()
