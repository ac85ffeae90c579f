"""How long one health sweep of 100 endpoints takes: the engine's parallel pooled sweep vs naive.

Starts 100 loopback HTTP endpoints (100 ports, one asyncio listener each, all in one child
process so that serving them does not share the measuring process's event loop), each answering
`GET /healthz/ready` with 200, a 2-byte body, Content-Length and keep-alive. Then, interleaved
sweep by sweep in the same run:

- engine:                   `BreakerBoard.sweep` with one `HttpProbe` (50 ms hard deadline per
                            probe, kept-alive connections per endpoint, bounded concurrency), as
                            gates run;
- raw_keepalive:            reference floor: the same sweep over one bare asyncio stream each;
- naive:                    the endpoints one after another, each a new TCP connection
                            (blocking socket, `Connection: close`), one GET, read, close.

Reports p50/p99/max sweep latency in ms for each, failed probes and breaker skips, the first
(cold) sweep, the machine and the command. Warm-up sweeps are excluded. Bounded in sweeps and in
time (`--max-seconds`); loopback only; the child process is stopped by its pid.

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
    failed: int = 0
    circuit_open: int = 0
    cold_ms: float | None = None

    def report(self) -> dict[str, Any]:
        ordered = self.samples
        row: dict[str, Any] = {
            "method": self.method,
            "p50_ms": round(percentile(ordered, 50), 3),
            "p99_ms": round(percentile(ordered, 99), 3),
            "max_ms": round(max(ordered), 3),
            "min_ms": round(min(ordered), 3),
            "failed_probes": self.failed,
        }
        if self.sweep is not None:
            row["circuit_open_skips"] = self.circuit_open
            row["cold_first_sweep_ms"] = round(self.cold_ms or 0.0, 3)
        return row


async def measure(args: argparse.Namespace, urls: list[str]) -> dict[str, Any]:
    c = args.concurrency
    shared = HttpProbe(timeout=args.timeout)
    raw = RawKeepAlive(args.timeout)
    boards = [BreakerBoard() for _ in range(2)]
    contenders = {
        "engine": Contender(
            "BreakerBoard.sweep + HttpProbe (kept-alive connections per endpoint), parallel",
            lambda: boards[0].sweep(shared, urls, concurrency=c),
        ),
        "raw_keepalive": Contender(
            "reference: BreakerBoard.sweep + one bare asyncio keep-alive stream per endpoint",
            lambda: boards[1].sweep(raw, urls, concurrency=c),
        ),
        "naive": Contender(
            "sequential, new TCP connection per endpoint (blocking socket, Connection: close)",
            None,
        ),
    }
    stopped_early = False
    deadline = time.monotonic() + args.max_seconds
    try:
        for i in range(args.warmup + args.sweeps):
            if time.monotonic() > deadline:
                stopped_early = True
                break
            for contender in contenders.values():
                started = time.perf_counter()
                if contender.sweep is None:
                    failed, skipped = naive_sweep(urls, timeout=1.0), 0
                else:
                    results = await contender.sweep()
                    failed = sum(1 for r in results if not r.ok)
                    skipped = sum(1 for r in results if r.error == CIRCUIT_OPEN)
                took = (time.perf_counter() - started) * 1000
                if contender.cold_ms is None:
                    contender.cold_ms = took
                if i >= args.warmup:
                    contender.samples.append(took)
                    contender.failed += failed
                    contender.circuit_open += skipped
    finally:
        await shared.aclose()
        await raw.aclose()
    if not contenders["engine"].samples:
        raise SystemExit("no sweep finished within --max-seconds")
    return {
        "concurrency": c,
        "probe_timeout_ms": args.timeout * 1000,
        "sweeps": len(contenders["engine"].samples),
        "stopped_early": stopped_early,
        **{name: contender.report() for name, contender in contenders.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoints", type=int, default=100)
    parser.add_argument("--sweeps", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--timeout", type=float, default=0.05, help="probe deadline, seconds")
    parser.add_argument("--max-seconds", type=float, default=300.0)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(_serve(args.serve))
        return
    if not 1 <= args.endpoints <= 1000 or not 1 <= args.sweeps <= 100_000:
        parser.error("--endpoints must be 1..1000 and --sweeps 1..100000")

    with Endpoints(args.endpoints) as endpoints:
        measured = asyncio.run(measure(args, endpoints.urls))
    report = {
        "bench": "probes",
        "endpoints": args.endpoints,
        "warmup_sweeps_excluded": args.warmup,
        **measured,
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
    print(f"{'sweep':<26}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}{'failed':>8}{'skipped':>8}")
    for name in ("engine", "raw_keepalive", "naive"):
        row = report[name]
        print(
            f"{name:<26}{row['p50_ms']:>10.2f}{row['p99_ms']:>10.2f}"
            f"{row['max_ms']:>10.2f}{row['failed_probes']:>8}{row.get('circuit_open_skips', 0):>8}"
        )
    print(f"command: {report['command']}")


if __name__ == "__main__":
    main()
