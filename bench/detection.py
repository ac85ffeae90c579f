"""Detection to containment: a fault injected into a canary at 25% under load, until weight 0.

Runs its own embedded stack in a temporary ZDP_HOME. finance-trading gets a healthy stable
version; then, for each trial, a new version is deployed by canary with steps [25, 100] and a
long bake, under a steady load through Envoy. Once the canary holds 25%, a fault is switched
on in the running canary process (its drill endpoint): an error burst (every API call answers
503) or a latency-only fault (+200 ms, no errors). The clock runs from the first 5xx the canary
process served (its own /metrics, sampled every 10 ms) or, for latency, from the moment the
first slowed response completes (injection + 200 ms), to the canary's weight read back at 0
from Envoy. Prints medians, p99 and spread; `--json` prints one JSON object.

    .venv/bin/python bench/detection.py --trials 20 --rate 500 [--json]
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

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from zdp import deployments  # noqa: E402
from zdp.cli.demo import TARGETS, ContainmentClock, Demo  # noqa: E402
from zdp.loadgen import LoadProcess  # noqa: E402
from zdp.models import DeploymentRequest, Phase, Strategy  # noqa: E402
from zdp.platforms.envoy.router import EnvoyRouter  # noqa: E402
from zdp.platforms.layout import LOCAL_APPS  # noqa: E402
from zdp.stack import Stack  # noqa: E402
from zdp.temporal import connect  # noqa: E402

APP = "finance-trading"
# finance-trading runs with APP_ENV=local here; its POST /drill/faults takes only a drill key,
# and this is the public demo one of apps/finance-trading/config/local.yaml.
DRILL_KEY = {"X-API-Key": "ft-demo-drill-key"}
FAULTS: dict[str, dict[str, float]] = {
    "error_burst": {"error_rate": 1.0},
    "latency_200ms": {"latency_ms": 200},
}


async def _trial(demo: Demo, client: Any, version: str, fault: dict[str, float]) -> dict[str, Any]:
    router = EnvoyRouter(demo.home)
    request = DeploymentRequest(
        app=APP,
        environment="staging",
        release=demo.release(APP, version, DRILL_ENDPOINT="1"),
        strategy=Strategy.canary,
        steps=[25, 100],
        bake_seconds=30,
        initiator="ci-bot",
    )
    handle = await deployments.start_deployment(client, request)
    await demo.approve_when_asked(client, handle.id, ("bob", "carol", "alice"))
    for _ in range(600):
        status = await deployments.status(client, handle.id)
        if status.phase is Phase.shift and status.weights.get("canary") == 25:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(1.0)  # the gate has a baseline of healthy traffic
    clock = ContainmentClock(router, APP, "canary", require_error="error_rate" in fault)
    clock.start()
    url = f"http://127.0.0.1:{LOCAL_APPS[APP].slot_port('canary')}/drill/faults"
    async with httpx.AsyncClient(trust_env=False) as http:
        injected = time.monotonic()
        await http.post(url, json=fault, headers=DRILL_KEY)
    deadline = time.monotonic() + 60
    while clock.restored is None and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    await clock.stop()
    first_failure, contained = clock.first_error, clock.restored
    result = await deployments.wait_result(client, handle.id)
    await router.aclose()
    start = first_failure if "error_rate" in fault else injected + fault["latency_ms"] / 1000
    return {
        "outcome": result.outcome.value,
        "cause": result.cause,
        # What the scheduler's readings of both slots' processes showed at the failing gate (the
        # gate's cpu_* evidence, where the runtime can read them; see zdp/health/cpu_wait.py).
        "gate_cpu": [
            {
                k.removeprefix("slowness.sampled requests."): v
                for k, v in e.data.get("evidence", {}).items()
                if k.startswith(("slowness.sampled requests.cpu_", "cpu_wait."))
            }
            for e in result.timeline
            if e.kind == "gate_verdict" and e.data.get("result") != "passed"
        ],
        "detection_to_containment_ms": round((contained - start) * 1000, 1)
        if contained is not None and start is not None
        else None,
        "injection_to_containment_ms": round((contained - injected) * 1000, 1)
        if contained is not None
        else None,
    }


async def bench(trials: int, rate: float) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="zdp-detect-"))
    os.environ["ZDP_HOME"] = str(home)
    os.environ.setdefault("ZDP_PORT_BASE", "25000")  # below the ephemeral ports
    os.environ.setdefault("ZDP_TEMPORAL_PORT", "25400")
    demo = Demo(home, quiet=True)
    stack = Stack(home=home, config=REPO / "bench" / "detection-policy.yaml")
    await asyncio.to_thread(demo.prepare)
    await asyncio.to_thread(stack.up)  # the same stack, its worker on the bench policy
    client = await connect(target_host=stack.temporal_address)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in FAULTS}
    url = f"http://127.0.0.1:{LOCAL_APPS[APP].listener_port()}{TARGETS[APP]}"
    try:
        await demo.deploy(client, APP, "1.0.0", Strategy.canary, load=False)
        load = LoadProcess(url, rate=rate, max_seconds=3600)
        await load.start()
        try:
            for i in range(trials):
                for name, fault in FAULTS.items():
                    runs[name].append(await _trial(demo, client, f"9.{i}.{len(runs[name])}", fault))
        finally:
            report = await load.stop()
    finally:
        await asyncio.to_thread(stack.down)
    return {
        "benchmark": "detection",
        "trials": trials,
        "rate_per_s": rate,
        "canary_weight": 25,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "load": report,
        "faults": {name: _summary(r) for name, r in runs.items()},
    }


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    times = sorted(
        r["detection_to_containment_ms"] for r in runs if r["detection_to_containment_ms"]
    )
    out: dict[str, Any] = {
        "rolled_back": sum(1 for r in runs if r["outcome"] == "rolled_back"),
        "trials": len(runs),
        "causes": sorted({(r["cause"] or "")[:80] for r in runs}),
        "runs": runs,
    }
    if times:
        out.update(
            median_ms=statistics.median(times),
            p99_ms=times[min(len(times) - 1, int(0.99 * len(times)))],
            min_ms=times[0],
            max_ms=times[-1],
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    started = time.monotonic()
    result = asyncio.run(bench(args.trials, args.rate))
    result["wall_s"] = round(time.monotonic() - started, 1)
    print(json.dumps(result, indent=2) if args.json else json.dumps(result["faults"], indent=2))


if __name__ == "__main__":
    main()
