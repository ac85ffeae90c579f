"""How fast finance-trading accepts an order: client-side latency of POST /api/orders, open loop.

Starts the app as a real process (`python -m finance_trading`, PYTHONPATH=apps/finance-trading/src,
APP_ENV=local, a free loopback port, its JSON logs to a temporary file as the engine keeps them),
with APP_DATA_DIR a fresh temporary folder, as the engine gives one, so that every submit claims
its key in the shared SQLite idempotency ledger (`--no-ledger` leaves it unset: the in-memory
record only). Then it sends order submits at a fixed rate, open loop: request i is started at
t0 + i/rate whether or not earlier ones have been answered, over one keep-alive pool
(httpx.AsyncClient). Each order has a fresh client order id and the demo key and is within the
local limits; buys and sells alternate at one price, so every other submit matches in the book
and moves two positions.

Side by side, in the same run and at the same rate, a baseline of public quote reads
(GET /api/quote/AAPL): the same app, middleware and connection pool with no order logic, which
shows what the submit path itself costs. Warm-up requests (not counted) open the pool first.

Reports count, errors (any answer but 201/200, or a transport error), p50/p90/p99/max latency in
ms, the rate achieved and the largest lag of a send behind its schedule (a large lag means the
client, not the app, was the bottleneck), and p50/p99 of the time spent inside the app, from the
`duration_ms` of its request log lines. The client runs on uvloop when installed, as the app
does. Bounded by `--requests` and `--seconds`, loopback only; the app is stopped by its pid.

    .venv/bin/python bench/finance_latency.py [--rate 200] [--seconds 10] [--requests 2000]
        [--no-ledger] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

try:
    import uvloop
except ImportError:  # pragma: no cover - uvicorn[standard] installs it
    uvloop = None  # type: ignore[assignment]

REPO = Path(__file__).resolve().parents[1]
APP_SRC = REPO / "apps" / "finance-trading" / "src"
DEMO_KEY = "ft-demo-local-key"  # the documented key of apps/finance-trading/config/local.yaml
WARMUP = 100

Request = Callable[[httpx.AsyncClient, int], Any]
T = TypeVar("T")


@dataclass
class Series:
    """What one kind of request measured."""

    name: str
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    max_send_lag_ms: float = 0.0
    wall_s: float = 0.0

    def report(self) -> dict[str, Any]:
        ordered = sorted(self.latencies_ms) or [math.nan]
        count = len(self.latencies_ms) + self.errors
        return {
            "count": count,
            "errors": self.errors,
            "p50_ms": round(percentile(ordered, 50), 3),
            "p90_ms": round(percentile(ordered, 90), 3),
            "p99_ms": round(percentile(ordered, 99), 3),
            "max_ms": round(ordered[-1], 3),
            "achieved_rate_per_s": round(count / self.wall_s, 1) if self.wall_s else 0.0,
            "max_send_lag_ms": round(self.max_send_lag_ms, 3),
        }


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of sorted `ordered`, q in [0, 100]."""
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_app(log_path: Path, data_dir: Path | None) -> Iterator[str]:
    """The app on a free loopback port until the block ends; stopped by its pid. With
    `data_dir` as its APP_DATA_DIR, where it keeps the idempotency ledger."""
    with app_process(log_path, data_dir) as (base_url, _):
        yield base_url


@contextmanager
def app_process(
    log_path: Path, data_dir: Path | None, extra_env: Mapping[str, str] | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`running_app`, with `extra_env` added to the app's environment, yielding its URL and
    its process (bench/instrumentation.py gives one an OTLP endpoint and reads its CPU time)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("APP_")}
    env.update(PYTHONPATH=str(APP_SRC), APP_ENV="local", PYTHONUNBUFFERED="1")
    if data_dir is not None:
        env["APP_DATA_DIR"] = str(data_dir)
    env.update(extra_env or {})
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "finance_trading", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        _await_ready(process, base_url, log_path)
        yield base_url, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)  # the app drains, then exits 0
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.send_signal(signal.SIGKILL)
                process.wait(timeout=5)


def _await_ready(process: subprocess.Popen[bytes], base_url: str, log_path: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the app exited {process.returncode}:\n{log_path.read_text()}")
        try:
            if httpx.get(f"{base_url}/healthz/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise RuntimeError("the app was not ready within 30 s")


def order_submit(run: str, headers: Mapping[str, str] | None = None) -> Request:
    """POST /api/orders, a fresh client order id each; buys and sells alternate at 190.00.
    `headers` go with every submit (bench/instrumentation.py sends a gate's `traceparent`)."""
    extra = dict(headers or {})

    def send(client: httpx.AsyncClient, i: int) -> Any:
        client_order_id = f"{run}-{i}"
        body = {
            "client_order_id": client_order_id,
            "symbol": "AAPL",
            "side": "buy" if i % 2 == 0 else "sell",
            "qty": 1,
            "limit_price": "190.00",
        }
        headers = {"X-API-Key": DEMO_KEY, "Idempotency-Key": client_order_id, **extra}
        return client.post("/api/orders", json=body, headers=headers)

    return send


def quote_read(client: httpx.AsyncClient, i: int) -> Any:
    return client.get("/api/quote/AAPL")


async def open_loop(
    client: httpx.AsyncClient, send: Request, series: Series, rate: float, requests: int,
    seconds: float, first: int = 0, in_flight: asyncio.Semaphore | None = None,
) -> None:  # fmt: skip
    """Start request i at t0 + i/rate until `requests` or `seconds`; wait for every answer.

    With `in_flight`, a request waits for one of its slots before it is handed to httpx, and
    that wait counts in its latency: httpx's pool scans every queued request per request, so
    a backlog of thousands (an app that fell behind on a busy machine) would make the client,
    not the app, the bottleneck (bench/instrumentation.py passes the pool's size)."""

    async def one(i: int, due: float) -> None:
        started = time.perf_counter()
        series.max_send_lag_ms = max(series.max_send_lag_ms, (started - due) * 1000)
        try:
            async with in_flight or contextlib.nullcontext():
                answer = await send(client, first + i)
            ok = answer.status_code in (200, 201)
        except httpx.HTTPError:
            ok = False
        if ok:
            series.latencies_ms.append((time.perf_counter() - started) * 1000)
        else:
            series.errors += 1

    t0 = time.perf_counter()
    tasks = []
    for i in range(requests):
        due = t0 + i / rate
        if due - t0 >= seconds:
            break
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, due)))
    await asyncio.gather(*tasks)
    series.wall_s = time.perf_counter() - t0


async def measure(base_url: str, args: argparse.Namespace) -> dict[str, Series]:
    run = uuid.uuid4().hex[:8]
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    timeout = httpx.Timeout(5.0)
    submits = order_submit(run)
    measured = {"order_submit": Series("order_submit"), "quote_baseline": Series("quote")}
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=timeout) as client:
        warm = Series("warm-up")
        await open_loop(client, submits, warm, args.rate, WARMUP, args.seconds, first=-WARMUP)
        await open_loop(client, quote_read, warm, args.rate, WARMUP, args.seconds)
        if warm.errors:
            raise RuntimeError(f"{warm.errors} of {2 * WARMUP} warm-up requests failed")
        await open_loop(
            client, submits, measured["order_submit"], args.rate, args.requests, args.seconds
        )
        if args.baseline:
            await open_loop(
                client, quote_read, measured["quote_baseline"], args.rate, args.requests,
                args.seconds,
            )  # fmt: skip
    if not args.baseline:
        del measured["quote_baseline"]
    return measured


def app_side_latency(log_path: Path) -> dict[str, dict[str, float]]:
    """p50/p99 of the app's own `duration_ms` per series, from its request log lines: the
    time inside the app, without the network and the client. Warm-up lines are skipped."""
    routes = {"order_submit": "/api/orders", "quote_baseline": "/api/quote/{symbol}"}
    durations: dict[str, list[float]] = {route: [] for route in routes.values()}
    for line in log_path.read_text().splitlines():
        entry = json.loads(line) if line.startswith("{") else {}
        if entry.get("msg") == "request" and entry.get("route") in durations:
            durations[entry["route"]].append(entry["duration_ms"])
    found = {}
    for name, route in routes.items():
        ordered = sorted(durations[route][WARMUP:]) or [math.nan]
        found[name] = {
            "app_p50_ms": percentile(ordered, 50),
            "app_p99_ms": percentile(ordered, 99),
        }
    return found


def asyncio_run(main: Coroutine[Any, Any, T]) -> T:
    """On uvloop when it is installed (uvicorn[standard] brings it), as the app itself runs:
    the stock loop adds about a millisecond of client overhead at p99 here."""
    return asyncio.run(main) if uvloop is None else uvloop.run(main)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="longest run per series")
    parser.add_argument("--requests", type=int, default=2000, help="most requests per series")
    parser.add_argument(
        "--no-baseline", dest="baseline", action="store_false", help="skip the quote baseline"
    )
    parser.add_argument(
        "--no-ledger",
        dest="ledger",
        action="store_false",
        help="no APP_DATA_DIR: idempotency in the app's memory, not in the SQLite ledger",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    if not 1 <= args.rate <= 5000 or not 1 <= args.requests <= 100_000:
        parser.error("--rate must be 1..5000 and --requests 1..100000")
    if not 0 < args.seconds <= 600:
        parser.error("--seconds must be in (0, 600]")

    with tempfile.TemporaryDirectory(prefix="finance-latency-") as scratch:
        log_path = Path(scratch) / "app.log"
        data_dir = Path(scratch) / "data" if args.ledger else None
        if data_dir is not None:
            data_dir.mkdir()
        with running_app(log_path, data_dir) as base_url:
            measured = asyncio_run(measure(base_url, args))
        app_side = app_side_latency(log_path)
    report = {
        "bench": "finance_latency",
        "rate_per_s": args.rate,
        "max_seconds": args.seconds,
        "max_requests": args.requests,
        "warmup_requests_excluded": 2 * WARMUP,
        "client_loop": "asyncio" if uvloop is None else "uvloop",
        "idempotency_ledger": "sqlite" if args.ledger else "memory",
        **{name: {**series.report(), **app_side[name]} for name, series in measured.items()},
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "command": " ".join(["python", "bench/finance_latency.py", *sys.argv[1:]]),
    }
    if args.json:
        print(json.dumps(report))
        return
    print(
        f"finance-trading, open loop at {args.rate:g} req/s over one keep-alive pool, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"idempotency ledger: {report['idempotency_ledger']}"
    )
    print(f"{'series':<16}{'count':>7}{'errors':>8}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}"
          f"{'max ms':>9}{'lag ms':>9}{'in app p50':>12}{'p99':>7}")  # fmt: skip
    for name in measured:
        row = report[name]
        print(
            f"{name:<16}{row['count']:>7}{row['errors']:>8}{row['p50_ms']:>9.2f}"
            f"{row['p90_ms']:>9.2f}{row['p99_ms']:>9.2f}{row['max_ms']:>9.2f}"
            f"{row['max_send_lag_ms']:>9.2f}{row['app_p50_ms']:>12.2f}{row['app_p99_ms']:>7.2f}"
        )
    print("latency is client-side, send to answer read; 'lag' is the largest delay of a send")
    print("behind its schedule; 'in app' is the app's own duration_ms from its request log")
    print(f"command: {report['command']}")


if __name__ == "__main__":
    main()
