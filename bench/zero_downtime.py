"""What users see during a deployment: engine-driven rollouts against a naive stop-and-start.

Runs its own embedded stack (Temporal dev server, Envoy, a worker on the local runtime, real
app processes) in a temporary ZDP_HOME, puts a steady open-loop load through Envoy, and for
each repetition measures, side by side under the same load:

- canary:     finance-trading to a healthy version, 1 → 5 → 25 → 100 %, then promote;
- rollback:   finance-trading to a version whose API answers 503, caught and rolled back;
- blue-green: pharma-manufacturing switched to a new colour;
- naive:      finance-trading's stable process stopped and the new version started on the
              same port, the way a plain redeploy does it;
- steady:     the same load with no deployment, on each app's listener, as long as that
              repetition's canary (finance-trading) and blue-green (pharma-manufacturing) runs:
              what users see when nothing happens, the baseline of every other scenario.

For each: requests sent, requests failed, client p50/p99 latency, each scenario's p99 over its
app's steady p99 of the same repetition (`p99_vs_steady`), and for the rollback the time from
the canary's first failed response to its weight back at 0. Prints medians and min-max over the
repetitions; `--json` prints one JSON object. Every load loop is bounded in time and count and
targets loopback only.

    .venv/bin/python bench/zero_downtime.py --rate 500 --repeat 3 [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from zdp.cli.demo import DEMO_CONFIG, TARGETS, ContainmentClock, Demo  # noqa: E402
from zdp.errors import PlatformError  # noqa: E402
from zdp.loadgen import LoadProcess  # noqa: E402
from zdp.models import ReleaseManifest, Strategy  # noqa: E402
from zdp.platforms.envoy.router import EnvoyRouter  # noqa: E402
from zdp.platforms.layout import LOCAL_APPS  # noqa: E402
from zdp.platforms.local.runtime import LocalRuntime  # noqa: E402
from zdp.stack import Stack  # noqa: E402
from zdp.temporal import connect  # noqa: E402


def free_port_base(first: int, last: int = 31200) -> tuple[int, int]:
    """(port base, Temporal port): the first base from `first` (steps of 300) whose stack ports
    (base to base + 299), Temporal's port (base + 290) and its UI's (+ 1000) nobody listens on
    now: other benchmarks and test stacks share this machine. Below Linux's ephemeral ports."""
    for base in range(first, last + 1, 300):
        ports = [*range(base, base + 300), base + 1290]
        if ports[-1] < 32768 and all(_bindable(p) for p in ports):
            return base, base + 290
    raise SystemExit(f"no free port range between {first} and {last + 300}: set ZDP_PORT_BASE")


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


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


def _naive_manifest(demo: Demo, version: str) -> ReleaseManifest:
    return ReleaseManifest(
        app="finance-trading", version=version, artifact=demo.artifacts["finance-trading"]
    )


async def _naive_redeploy(demo: Demo, version: str) -> bool:
    """Stop stable, start the new version in its place: what a plain redeploy does. Whether it
    was ready within the runtime's deadline (20 s): under load, and on a busy machine, the new
    process's readiness check can wait behind the burst of connections Envoy opens to it."""
    runtime = LocalRuntime(demo.home)
    await runtime.retire("finance-trading", "stable")
    try:
        await runtime.provision(_naive_manifest(demo, version), "stable")
    except PlatformError:
        return False
    return True


async def bench(rate: float, repeat: int) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="zdp-bench-"))
    os.environ["ZDP_HOME"] = str(home)
    if "ZDP_PORT_BASE" not in os.environ:  # a free range, from 29000 on
        base, temporal = free_port_base(29000)
        os.environ["ZDP_PORT_BASE"], os.environ["ZDP_TEMPORAL_PORT"] = str(base), str(temporal)
    demo = Demo(home, quiet=True)
    stack = Stack(home=home, config=DEMO_CONFIG)
    await asyncio.to_thread(demo.prepare)
    client = await connect(target_host=stack.temporal_address)
    deployments: list[dict[str, str | None]] = []  # each engine deployment's outcome and cause
    results: dict[str, list[dict[str, float]]] = {
        k: [] for k in ("canary", "rollback", "blue_green", "naive", "steady", "steady_pharma")
    }
    try:
        await demo.deploy(client, "finance-trading", "1.0.0", Strategy.canary, load=False)
        await demo.deploy(client, "pharma-manufacturing", "1.0.0", Strategy.blue_green, load=False)
        for i in range(repeat):
            # Every version newer than the last one deployed: the engine refuses a downgrade.
            # finance-trading: good, bad (rolled back), naive, then the engine's own again.
            good, bad, naive, again = (f"{4 * i + n}.0.0" for n in (2, 3, 4, 5))
            load, s = await _under_load(
                rate, "finance-trading",
                demo.deploy(client, "finance-trading", good, Strategy.canary, load=False),
            )  # fmt: skip
            results["canary"].append({**load, "promoted": float(s.outcome == "promoted")})
            deployments.append({"scenario": "canary", "outcome": s.outcome, "cause": s.cause})
            # Steady state: the same load for as long, nothing deployed.
            load, _ = await _under_load(
                rate, "finance-trading", asyncio.sleep(_deployment_seconds(load, rate))
            )
            results["steady"].append(load)

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
            deployments.append({"scenario": "rollback", "outcome": s.outcome, "cause": s.cause})
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
                    client, "pharma-manufacturing", f"{i + 2}.0.0", Strategy.blue_green, load=False
                ),
            )  # fmt: skip
            results["blue_green"].append({**load, "promoted": float(s.outcome == "promoted")})
            deployments.append({"scenario": "blue_green", "outcome": s.outcome, "cause": s.cause})
            load, _ = await _under_load(
                rate, "pharma-manufacturing", asyncio.sleep(_deployment_seconds(load, rate))
            )
            results["steady_pharma"].append(load)

            load, ready = await _under_load(
                rate, "finance-trading", _naive_redeploy(demo, naive)
            )  # fmt: skip
            results["naive"].append({**load, "ready_in_time": float(ready)})
            if not ready:  # start it again without load, for the next round
                await LocalRuntime(demo.home).provision(_naive_manifest(demo, naive), "stable")
            # Put the engine back in charge of a healthy stable for the next round.
            await demo.deploy(client, "finance-trading", again, Strategy.canary, load=False)
    finally:
        await asyncio.to_thread(stack.down)
    # Each scenario's p99 over the steady p99 of its own app in the same repetition.
    for name, steady in STEADY_OF.items():
        for run, base in zip(results[name], results[steady], strict=True):
            run["p99_vs_steady"] = run["p99_ms"] / base["p99_ms"] if base["p99_ms"] else -1.0
    return {
        "benchmark": "zero_downtime",
        "rate_per_s": rate,
        "repeat": repeat,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "scenarios": {name: _stats(runs) for name, runs in results.items()},
        "deployments": deployments,
    }


# The steady run each scenario is compared with: the same app's listener, the same repetition.
STEADY_OF = {
    "canary": "steady",
    "rollback": "steady",
    "naive": "steady",
    "blue_green": "steady_pharma",
}


def _deployment_seconds(load: dict[str, float], rate: float) -> float:
    """How long a scenario's deployment ran: its load's span (sent / rate) less the 1 s before
    and 0.5 s after it that `_under_load` adds."""
    return max(1.0, load["requests_sent"] / rate - 1.5)


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
    load_before = [round(x, 2) for x in os.getloadavg()]
    result = asyncio.run(bench(args.rate, args.repeat))
    result["load_average_before"] = load_before
    result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
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
