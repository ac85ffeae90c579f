"""How long one health sweep of 100 endpoints takes: the engine's parallel sweep vs naive.

Starts 100 loopback HTTP endpoints (100 ports, one asyncio listener each, all in one child
process so that serving them does not share the measuring process's event loop), each answering
`GET /healthz/ready` with 200, a 2-byte body, Content-Length and keep-alive. Then, side by side
in the same run:

- engine:                   `BreakerBoard.sweep` with one `HttpProbe` (50 ms hard deadline per
                            probe, kept-alive connections per endpoint, at most 32 in flight;
                            the probe's own sweep, `probe_many`: callbacks, no task per probe),
                            as gates run;
- raw_keepalive:            reference floor: `BreakerBoard.sweep` over one bare asyncio stream
                            per endpoint (a coroutine per probe);
- naive:                    the endpoints one after another, each a new TCP connection
                            (blocking socket, `Connection: close`), one GET, read, close.

The engine and the floor run on asyncio's event loop (as the worker runs) and on uvloop's: the
sweeps alternate in blocks of `--block` rounds between two event loops of this process (each
keeps its own connections), one sweep of each contender per round. Reports p50/p99/max sweep
latency in ms for each, this process's CPU per sweep, the endpoints' process's CPU per sweep
(from /proc/<pid>/schedstat: it answers each sweep's 100 requests one after another, a floor of
its own), failed probes and breaker skips, the first (cold) sweep, the load average before and
after, the machine and the command. Warm-up sweeps are excluded. Bounded in sweeps and in time
(`--max-seconds`); loopback only; the child process is stopped by its pid.

    .venv/bin/python bench/probes.py [--endpoints 100] [--sweeps 200] [--warmup 5] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from zdp.health.breaker import CIRCUIT_OPEN, BreakerBoard  # noqa: E402
from zdp.health.http_probe import HttpProbe  # noqa: E402
from zdp.models import ProbeResult  # noqa: E402

PATH = "/healthz/ready"
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"


# --------------------------------------------------------------------------- the endpoints


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            writer.write(ANSWER)
            await writer.drain()
            if b"connection: close" in head.lower():
                break
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        pass
    finally:
        writer.close()


async def _serve(count: int) -> None:
    servers = [await asyncio.start_server(_answer, "127.0.0.1", 0) for _ in range(count)]
    ports = [s.sockets[0].getsockname()[1] for s in servers]
    print(json.dumps(ports), flush=True)
    # Serve until the parent closes our stdin (or stops us by pid).
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    for server in servers:
        server.close()


class Endpoints:
    """The child process holding the listeners; started and stopped by pid."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.process: subprocess.Popen[str] | None = None
        self.urls: list[str] = []

    def __enter__(self) -> Endpoints:
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(self.count)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # the child prints its ports once it listens
        if not line:
            self.__exit__()
            raise RuntimeError("the endpoint server process exited before listening")
        self.urls = [f"http://127.0.0.1:{port}" for port in json.loads(line)]
        return self

    def __exit__(self, *exc_info: object) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(timeout=3)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=3)


# --------------------------------------------------------------------------- the sweeps


def naive_sweep(urls: list[str], timeout: float) -> int:
    """GET each endpoint in turn on a new connection; returns how many failed."""
    failed = 0
    for url in urls:
        host, port = url.removeprefix("http://").split(":")
        request = f"GET {PATH} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
        try:
            with socket.create_connection((host, int(port)), timeout=timeout) as sock:
                sock.sendall(request.encode())
                received = b""
                while chunk := sock.recv(4096):
                    received += chunk
            if not received.startswith(b"HTTP/1.1 200"):
                failed += 1
        except OSError:
            failed += 1
    return failed


class RawKeepAlive:
    """HealthProbe for reference only: one kept-alive asyncio stream per endpoint, no httpx."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.streams: dict[str, tuple[asyncio.StreamReader, asyncio.StreamWriter]] = {}

    async def probe(self, endpoint: str) -> ProbeResult:
        host, port = endpoint.removeprefix("http://").split(":")
        started = time.perf_counter()
        error: str | None = None
        try:
            async with asyncio.timeout(self.timeout):
                if endpoint not in self.streams:
                    self.streams[endpoint] = await asyncio.open_connection(host, int(port))
                reader, writer = self.streams[endpoint]
                writer.write(f"GET {PATH} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
                if not head.startswith(b"HTTP/1.1 2"):
                    error = head.split(b"\r\n", 1)[0].decode()
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
            error = type(exc).__name__
            dropped = self.streams.pop(endpoint, None)
            if dropped is not None:
                dropped[1].close()
        latency = (time.perf_counter() - started) * 1000
        return ProbeResult(endpoint=endpoint, ok=error is None, latency_ms=latency, error=error)

    async def aclose(self) -> None:
        for _, writer in self.streams.values():
            writer.close()
        self.streams.clear()


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of `values`, q in [0, 100]."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


@dataclass
class Contender:
    """One way of sweeping, and what it measured."""

    method: str
    sweep: Callable[[], Awaitable[list[ProbeResult]]] | None  # None: the naive blocking sweep
    samples: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)  # this process's CPU ms per sweep
    server_cpu_ms: float = 0.0  # the endpoints' process, over the measured sweeps
    server_pid: int = 0
    failed: int = 0
    circuit_open: int = 0
    cold_ms: float | None = None

    def run_once(self, urls: list[str], measured: bool) -> Awaitable[None]:
        async def once() -> None:
            server = _run_ns(self.server_pid)
            started, cpu = time.perf_counter(), time.process_time()
            if self.sweep is None:
                failed, skipped = naive_sweep(urls, timeout=1.0), 0
            else:
                results = await self.sweep()
                failed = sum(1 for r in results if not r.ok)
                skipped = sum(1 for r in results if r.error == CIRCUIT_OPEN)
            took = (time.perf_counter() - started) * 1000
            if self.cold_ms is None:
                self.cold_ms = took
            if measured:
                self.samples.append(took)
                self.cpu.append((time.process_time() - cpu) * 1000)
                self.server_cpu_ms += (_run_ns(self.server_pid) - server) / 1e6
                self.failed += failed
                self.circuit_open += skipped

        return once()

    def report(self) -> dict[str, Any]:
        ordered = self.samples
        row: dict[str, Any] = {
            "method": self.method,
            "p50_ms": round(percentile(ordered, 50), 3),
            "p99_ms": round(percentile(ordered, 99), 3),
            "max_ms": round(max(ordered), 3),
            "min_ms": round(min(ordered), 3),
            "cpu_p50_ms": round(percentile(self.cpu, 50), 3),
            "endpoint_server_cpu_ms_per_sweep": round(self.server_cpu_ms / len(ordered), 3),
            "failed_probes": self.failed,
        }
        if self.sweep is not None:
            row["circuit_open_skips"] = self.circuit_open
            row["cold_first_sweep_ms"] = round(self.cold_ms or 0.0, 3)
        return row


def contenders_on(loop: str, urls: list[str], args: argparse.Namespace) -> dict[str, Contender]:
    """The engine's sweep and the bare floor, each with its own state, for one event loop."""
    c = args.concurrency
    shared = HttpProbe(timeout=args.timeout)
    raw = RawKeepAlive(args.timeout)
    boards = [BreakerBoard() for _ in range(2)]
    suffix = "" if loop == "asyncio" else f"_{loop}"
    on = f" on {loop}"
    return {
        f"engine{suffix}": Contender(
            "BreakerBoard.sweep + HttpProbe.probe_many (kept-alive connections per endpoint, "
            "callbacks, no task per probe), parallel" + on,
            lambda: boards[0].sweep(shared, urls, concurrency=c),
        ),
        f"raw_keepalive{suffix}": Contender(
            "reference: BreakerBoard.sweep + one bare asyncio keep-alive stream per endpoint" + on,
            lambda: boards[1].sweep(raw, urls, concurrency=c),
        ),
    }


async def sweep_block(
    contenders: list[Contender], urls: list[str], count: int, measured: bool
) -> None:
    """`count` rounds, one sweep of each contender per round (interleaved)."""
    for _ in range(count):
        for contender in contenders:
            await contender.run_once(urls, measured)


async def close_all(contenders: dict[str, Contender]) -> None:
    for contender in contenders.values():
        sweep = contender.sweep
        if sweep is None:
            continue
        # Each contender's probe is the one its lambda closes over.
        for cell in sweep.__closure__ or ():
            probe = cell.cell_contents
            if isinstance(probe, HttpProbe | RawKeepAlive):
                await probe.aclose()


def measure(args: argparse.Namespace, urls: list[str], server_pid: int) -> dict[str, Any]:
    """Every contender on asyncio's loop and on uvloop, in blocks of `--block` rounds that
    alternate between the two loops (each loop keeps its own connections), plus the naive
    sweep once a round on the asyncio side: side by side, under the same load."""
    import uvloop

    runners = {
        "asyncio": asyncio.Runner(),
        "uvloop": asyncio.Runner(loop_factory=uvloop.new_event_loop),
    }
    naive = Contender(
        "sequential, new TCP connection per endpoint (blocking socket, Connection: close)", None
    )
    per_loop = {loop: contenders_on(loop, urls, args) for loop in runners}
    order = {
        "asyncio": [*per_loop["asyncio"].values(), naive],
        "uvloop": list(per_loop["uvloop"].values()),
    }
    for contender in [naive, *(c for loop in per_loop.values() for c in loop.values())]:
        contender.server_pid = server_pid
    stopped_early = False
    deadline = time.monotonic() + args.max_seconds
    try:
        for loop, runner in runners.items():
            runner.run(sweep_block(order[loop], urls, args.warmup, measured=False))
        done = 0
        while done < args.sweeps:
            if time.monotonic() > deadline:
                stopped_early = True
                break
            count = min(args.block, args.sweeps - done)
            for loop, runner in runners.items():
                runner.run(sweep_block(order[loop], urls, count, measured=True))
            done += count
    finally:
        for loop, runner in runners.items():
            runner.run(close_all(per_loop[loop]))
            runner.close()
    engine = per_loop["asyncio"]["engine"]
    if not engine.samples:
        raise SystemExit("no sweep finished within --max-seconds")
    rows = {name: c.report() for loop in runners for name, c in per_loop[loop].items()}
    return {
        "concurrency": args.concurrency,
        "probe_timeout_ms": args.timeout * 1000,
        "sweeps": len(engine.samples),
        "block": args.block,
        "stopped_early": stopped_early,
        **rows,
        "naive": naive.report(),
    }


def _run_ns(pid: int) -> int:
    """Nanoseconds `pid`'s main thread has run on a CPU (/proc/<pid>/schedstat; 0 if unknown):
    the endpoints' process answers each sweep's requests one after another on that thread."""
    if not pid:
        return 0
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[0])
    except (OSError, IndexError, ValueError):
        return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoints", type=int, default=100)
    parser.add_argument("--sweeps", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--timeout", type=float, default=0.05, help="probe deadline, seconds")
    parser.add_argument("--block", type=int, default=10, help="rounds per loop, alternating")
    parser.add_argument("--max-seconds", type=float, default=300.0)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(_serve(args.serve))
        return
    if not 1 <= args.endpoints <= 1000 or not 1 <= args.sweeps <= 100_000:
        parser.error("--endpoints must be 1..1000 and --sweeps 1..100000")

    load_before = [round(x, 2) for x in os.getloadavg()]
    with Endpoints(args.endpoints) as endpoints:
        assert endpoints.process is not None
        measured = measure(args, endpoints.urls, endpoints.process.pid)
    report = {
        "bench": "probes",
        "endpoints": args.endpoints,
        "warmup_sweeps_excluded": args.warmup,
        **measured,
        "load_average_before": load_before,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "command": " ".join(["python", "bench/probes.py", *sys.argv[1:]]),
    }
    if args.json:
        print(json.dumps(report))
        return
    print(
        f"{args.endpoints} loopback endpoints, {report['sweeps']} sweeps "
        f"(+{args.warmup} warm-up), {os.cpu_count()} CPUs, Python {platform.python_version()}"
    )
    print(f"concurrency {args.concurrency}, probe deadline {args.timeout * 1000:g} ms")
    print(
        f"{'sweep':<26}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}{'cpu ms':>8}{'srv ms':>8}"
        f"{'failed':>8}{'skipped':>8}"
    )
    names = ("engine", "raw_keepalive", "engine_uvloop", "raw_keepalive_uvloop", "naive")
    for name in names:
        row = report[name]
        print(
            f"{name:<26}{row['p50_ms']:>10.2f}{row['p99_ms']:>10.2f}{row['max_ms']:>10.2f}"
            f"{row['cpu_p50_ms']:>8.2f}{row['endpoint_server_cpu_ms_per_sweep']:>8.2f}"
            f"{row['failed_probes']:>8}{row.get('circuit_open_skips', 0):>8}"
        )
    print(f"load average {report['load_average_before']} -> {report['load_average_after']}")
    print(f"command: {report['command']}")


if __name__ == "__main__":
    main()
