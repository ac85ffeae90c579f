"""What users see around a blue-green switch, request by request: where its latency spike is from.

Runs its own embedded stack (as `bench/zero_downtime.py` does: Temporal dev server, Envoy, a
worker on the local runtime, real app processes) in a temporary ZDP_HOME on a free port range.
pharma-manufacturing is deployed blue-green `--rounds` times under an open-loop load through its
Envoy listener (`GET /api/batches/B-1001`, `--rate` per second, 64 keep-alive connections, 2 s
timeout) sent by a child process that records every request: when it was sent, how long it
took, whether it succeeded. The moment of the switch is Envoy's own: the new colour's weight read
back at 100 from its `/config_dump` (polled every 5 ms). For each round:

- the requests in time buckets around the switch (before, the first 50/100/200/500 ms, 1 s, 2 s,
  5 s after): count, failed, p50, p99, max;
- Envoy's counters for the new colour's cluster before and after the deployment (connections
  opened, connect failures, retries, requests): a switch sends every user to a process Envoy
  holds no connection to;
- the new colour's own request log (`duration_ms` of each `/api/batches` request it served):
  time spent inside the app, the first requests' against all of them (a cold process).

One JSON object with `--json`. Every process it starts is stopped by its pid; loopback only;
the load is bounded in time.

    .venv/bin/python bench/switch_timeline.py [--rate 200] [--rounds 3] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

APP = "pharma-manufacturing"
TARGET = "/api/batches/B-1001"
BUCKETS = [(-5.0, -1.0), (-1.0, 0.0), (0.0, 0.05), (0.05, 0.1), (0.1, 0.2), (0.2, 0.5),
           (0.5, 1.0), (1.0, 2.0), (2.0, 5.0)]  # fmt: skip
COUNTERS = ("upstream_cx_total", "upstream_cx_connect_fail", "upstream_cx_connect_timeout",
            "upstream_rq_retry", "upstream_rq_total", "upstream_rq_5xx")  # fmt: skip

# The recording load: a child process, so that its timing is not the orchestrator's.
LOADER = r"""
import asyncio, json, sys, time
from zdp.rawhttp import KeepAlivePool
url, rate, seconds, out = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
async def main():
    pool = KeepAlivePool(url, 64, retry_stale=False)
    rows, pending = [], set()
    async def one():
        sent, began = time.time(), time.perf_counter()
        try:
            ok = await asyncio.wait_for(pool.get(), 2.0) < 400
        except Exception:
            ok = False
        rows.append((sent, (time.perf_counter() - began) * 1000, ok))
    start, n = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        task = asyncio.create_task(one())
        pending.add(task)
        task.add_done_callback(pending.discard)
        n += 1
        delay = start + n / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
    await asyncio.gather(*pending)
    with open(out, "w") as f:
        json.dump(rows, f)
asyncio.run(main())
"""


def percentile(values: list[float], q: float) -> float | None:
    ordered = sorted(values)
    return round(ordered[max(0, math.ceil(q * len(ordered)) - 1)], 2) if ordered else None


def summary(inside: list[list[Any]]) -> dict[str, Any]:
    answered = [r[1] for r in inside if r[2]]
    return {
        "requests": len(inside),
        "failed": sum(1 for r in inside if not r[2]),
        "p50_ms": percentile(answered, 0.5),
        "p99_ms": percentile(answered, 0.99),
        "max_ms": round(max(answered), 2) if answered else None,
    }


def around(rows: list[list[Any]], switch: float) -> list[dict[str, Any]]:
    """The requests sent in each bucket of time around the switch (seconds, relative)."""
    return [
        {"from_s": low, "to_s": high, **summary([r for r in rows if low <= r[0] - switch < high])}
        for low, high in BUCKETS
    ]


def counters(text: str, cluster: str) -> dict[str, int]:
    found: dict[str, int] = {}
    for line in text.splitlines():
        name, _, value = line.partition(": ")
        short = name.removeprefix(f"cluster.{cluster}.")
        if short in COUNTERS and value.strip().isdigit():
            found[short] = int(value)
    return found


def app_durations(log: Path, since: int) -> list[float]:
    """`duration_ms` of each /api/batches request in the slot's log after byte `since`."""
    found = []
    with open(log, "rb") as f:
        f.seek(since)
        for line in f.read().decode(errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("msg") == "request" and str(entry.get("path", "")).startswith(TARGET):
                found.append(float(entry.get("duration_ms", 0.0)))
    return found


async def bench(rate: float, rounds: int) -> dict[str, Any]:
    import httpx
    from zero_downtime import free_port_base

    home = Path(tempfile.mkdtemp(prefix="zdp-switch-"))
    os.environ["ZDP_HOME"] = str(home)
    if "ZDP_PORT_BASE" not in os.environ:
        base, temporal = free_port_base(24000)
        os.environ["ZDP_PORT_BASE"], os.environ["ZDP_TEMPORAL_PORT"] = str(base), str(temporal)

    from zdp.cli.demo import DEMO_CONFIG, Demo
    from zdp.models import Strategy
    from zdp.platforms.envoy.router import EnvoyRouter
    from zdp.platforms.layout import LOCAL_APPS
    from zdp.stack import Stack
    from zdp.temporal import connect

    demo = Demo(home, quiet=True)
    stack = Stack(home=home, config=DEMO_CONFIG)
    await asyncio.to_thread(demo.prepare)
    url = f"http://127.0.0.1:{LOCAL_APPS[APP].listener_port()}{TARGET}"
    admin = stack.record()["envoy"]["admin"]
    results = []
    try:
        client = await connect(target_host=stack.temporal_address)
        await demo.deploy(client, APP, "1.0.0", Strategy.blue_green, load=False)
        for number in range(rounds):
            router = EnvoyRouter(home)
            weights = await router.get_weights(APP)
            old = max(weights, key=lambda slot: weights[slot])
            new = "green" if old == "blue" else "blue"
            cluster = f"{APP}|{new}"
            log = home / "runtime" / APP / f"{new}.log"
            log_from = log.stat().st_size if log.exists() else 0
            rows_file = home / f"requests-{number}.json"
            env = {**os.environ, "PYTHONPATH": str(REPO)}
            loader = subprocess.Popen(
                [sys.executable, "-c", LOADER, url, str(rate), "90", str(rows_file)],
                env=env, start_new_session=True,
            )  # fmt: skip
            switch: float | None = None

            async def watch(router: EnvoyRouter = router, new: str = new) -> None:
                nonlocal switch
                while switch is None:
                    if (await router.get_weights(APP)).get(new, 0) == 100:
                        switch = time.time()
                    await asyncio.sleep(0.005)

            async with httpx.AsyncClient(trust_env=False, timeout=5.0) as http:
                await asyncio.sleep(1.0)
                before = counters((await http.get(f"{admin}/stats")).text, cluster)
                watcher = asyncio.create_task(watch())
                started = time.time()
                deployed = await demo.deploy(
                    client, APP, f"{number + 2}.0.0", Strategy.blue_green, load=False
                )
                ended = time.time()
                watcher.cancel()
                after = counters((await http.get(f"{admin}/stats")).text, cluster)
            await router.aclose()
            try:
                loader.wait(timeout=150)
            except subprocess.TimeoutExpired:
                loader.kill()
                loader.wait(timeout=5)
            rows = json.loads(rows_file.read_text()) if rows_file.exists() else []
            inside = app_durations(log, log_from) if log.exists() else []
            answered = [r[1] for r in rows if r[2]]
            results.append(
                {
                    "round": number,
                    "switch": f"{old} -> {new}",
                    "outcome": deployed.outcome,
                    "deployment_s": round(ended - started, 2),
                    "switch_after_s": round(switch - started, 2) if switch else None,
                    "requests": len(rows),
                    "failed": sum(1 for r in rows if not r[2]),
                    "p50_ms": percentile(answered, 0.5),
                    "p99_ms": percentile(answered, 0.99),
                    # The same load with nothing being deployed: the second before the
                    # deployment began, and from 1 s after it ended to the load's end.
                    "before_deployment": summary([r for r in rows if r[0] < started]),
                    "after_deployment": summary([r for r in rows if r[0] > ended + 1.0]),
                    "around_switch": around(rows, switch) if switch else [],
                    "envoy_new_colour": {k: after.get(k, 0) - before.get(k, 0) for k in COUNTERS},
                    "app_new_colour": {
                        "requests": len(inside),
                        "first_20_ms": [round(d, 2) for d in inside[:20]],
                        "p50_ms": percentile(inside, 0.5),
                        "p99_ms": percentile(inside, 0.99),
                    },
                }
            )
    finally:
        await asyncio.to_thread(stack.down)
    return {"rounds": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not 0 < args.rate <= 1000 or not 1 <= args.rounds <= 20:
        parser.error("--rate must be 0..1000 and --rounds 1..20")
    load_before = [round(x, 2) for x in os.getloadavg()]
    started = time.monotonic()
    result = {
        "bench": "switch_timeline",
        "rate_per_s": args.rate,
        **asyncio.run(bench(args.rate, args.rounds)),
        "load_average_before": load_before,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "wall_s": round(time.monotonic() - started, 1),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "command": " ".join(["python", "bench/switch_timeline.py", *sys.argv[1:]]),
    }
    if args.json:
        print(json.dumps(result))
        return
    for r in result["rounds"]:
        print(
            f"round {r['round']} {r['switch']}: {r['outcome']}, {r['requests']} requests, "
            f"{r['failed']} failed, p99 {r['p99_ms']} ms; switch after {r['switch_after_s']} s"
        )
        for name in ("before_deployment", "after_deployment"):
            b = r[name]
            print(
                f"  {name:<20} {b['requests']:5d} req {b['failed']:4d} failed  "
                f"p50 {b['p50_ms']}  p99 {b['p99_ms']}"
            )
        for b in r["around_switch"]:
            print(
                f"  [{b['from_s']:+.2f}, {b['to_s']:+.2f}) s  {b['requests']:5d} req "
                f"{b['failed']:4d} failed  p50 {b['p50_ms']}  p99 {b['p99_ms']}  max {b['max_ms']}"
            )
        print(f"  Envoy, new colour: {r['envoy_new_colour']}")
        print(f"  app, new colour: {r['app_new_colour']}")


if __name__ == "__main__":
    main()
