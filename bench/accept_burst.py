"""How long a burst of new connections waits on a busy uvicorn: uvloop vs asyncio, side by side.

Why: libuv (>= 1.45, under uvloop) accepts one connection per event-loop iteration, so on a busy
loop a burst of new connections waits in the kernel's listen queue while requests on established
connections are served at once. Envoy opens new upstream connections exactly at a blue-green
switch; under CPU load those requests exceeded the load generator's 2 s timeout, which is why
the demo apps now run on asyncio's loop.

Each run starts a fresh server process: uvicorn (the project's version, `http` left at its
default as in the apps) on one loopback port with `--loop` uvloop or asyncio, serving a minimal
ASGI app whose handler burns `--cpu-ms` of CPU on the event loop per request. Then:

- a steady-load process (plain asyncio, a process of its own so that opening the burst does not
  pause it) opens `--steady` keep-alive connections, each sending GETs back to back, so the
  server's loop is never idle; once each has had an answer, `--warmup` seconds pass;
- the measuring process (plain asyncio) opens `--burst` new connections at once, one GET each,
  and times each from its connect call to the end of its response (`--timeout` per request; a
  request not answered in time counts as failed, and as over 1 s and over 2 s);
- the steady load stops (its stdin closed; it reports its requests' latencies), then the server
  process is stopped by its pid.

Loop types alternate run by run (uvloop first in even runs, asyncio first in odd ones), `--repeat`
runs each. Reports, per loop type, every run's new-connection p50/p90/max, how many took over
1 s and over 2 s, failed, the steady connections' latency during the burst, and over the runs
the median with min/max. Bounded: counts, per-request timeout, `--max-seconds` for the whole
run; loopback only, one port below 32768.

    .venv/bin/python bench/accept_burst.py [--repeat 10] [--steady 8] [--burst 100] [--cpu-ms 2]
        [--json]
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
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

LOOPS = ("uvloop", "asyncio")
REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
BODY = b"ok"


# --------------------------------------------------------------------------- the server


def serve(loop: str, port: int, cpu_ms: float) -> None:
    """Run in the server process: uvicorn on `loop`, one handler burning `cpu_ms` per request."""
    import uvicorn

    burn_s = cpu_ms / 1000

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        end = time.perf_counter() + burn_s
        while time.perf_counter() < end:  # CPU on the event loop, as a busy handler would
            pass
        headers = [(b"content-type", b"text/plain"), (b"content-length", b"2")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": BODY})

    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        loop=loop,
        lifespan="off",
        log_level="warning",
        access_log=False,
    )


class Server:
    """A server process on `port` until the block ends; stopped by its pid."""

    def __init__(self, loop: str, port: int, cpu_ms: float, log_dir: Path) -> None:
        self.loop, self.port, self.cpu_ms = loop, port, cpu_ms
        self.log_path = log_dir / f"server-{loop}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Server:
        command = [sys.executable, __file__, "--serve", self.loop, "--port", str(self.port)]
        command += ["--cpu-ms", str(self.cpu_ms)]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self._await_ready()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _await_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = self.log_path.read_text(errors="replace")
                raise RuntimeError(
                    f"the {self.loop} server exited {self.process.returncode}:\n{log}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(REQUEST)
                    received = b""
                    while not received.endswith(BODY) and len(received) < 4096:
                        chunk = sock.recv(4096)
                        if not chunk:
                            break
                        received += chunk
                if received.startswith(b"HTTP/1.1 200"):
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"the {self.loop} server did not answer within 20 s")

    def __exit__(self, *exc_info: object) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=5)


# --------------------------------------------------------------------------- the clients


async def get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """One GET on an open connection; raises unless a 200 with the 2-byte body comes back."""
    writer.write(REQUEST)
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise ConnectionError(head.split(b"\r\n", 1)[0].decode(errors="replace"))
    await reader.readexactly(len(BODY))


ERRORS = (TimeoutError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError)


async def steady_load(port: int, connections: int, timeout: float, max_seconds: float) -> None:
    """Run in the steady-load process: `connections` keep-alive connections sending GETs back to
    back until stdin closes (or `max_seconds`); prints "ready" once each has had an answer, then
    at the end one JSON line: each request's start (time.monotonic()) and latency in ms."""
    stop = asyncio.Event()
    ready = 0
    samples: list[tuple[float, float]] = []
    errors = 0

    async def one() -> None:
        nonlocal ready, errors
        writer = None
        first = True
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            while not stop.is_set():
                started = time.monotonic()
                async with asyncio.timeout(timeout):
                    await get(reader, writer)
                samples.append((started, (time.monotonic() - started) * 1000))
                if first:
                    first = False
                    ready += 1
                    if ready == connections:
                        print("ready", flush=True)
        except ERRORS:
            errors += 1
        finally:
            if writer is not None:
                writer.close()

    tasks = [asyncio.create_task(one()) for _ in range(connections)]
    loop = asyncio.get_running_loop()
    stdin_closed = loop.run_in_executor(None, sys.stdin.read)
    await asyncio.wait([stdin_closed], timeout=max_seconds)
    stop.set()
    await asyncio.wait(tasks, timeout=timeout + 1)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    print(json.dumps({"samples": samples, "errors": errors}), flush=True)
    os._exit(0)  # do not wait for the executor thread still blocked on stdin, if any


class SteadyLoad:
    """The steady-load process until the block ends (its stdin closed; else stopped by pid).
    A process of its own, so that opening the burst does not pause the steady load."""

    def __init__(self, port: int, args: argparse.Namespace) -> None:
        self.command = [sys.executable, __file__, "--steady-load", str(port)]
        self.command += ["--steady", str(args.steady), "--timeout", str(args.timeout)]
        # Its own bound: warm-up plus the burst's longest wait plus slack.
        self.command += ["--max-seconds", str(args.warmup + args.timeout + 20)]
        self.process: subprocess.Popen[str] | None = None
        self.result: dict[str, Any] = {"samples": [], "errors": 0}

    def __enter__(self) -> SteadyLoad:
        self.process = subprocess.Popen(
            self.command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        assert self.process.stdout is not None
        if self.process.stdout.readline().strip() != "ready":  # bounded by its --max-seconds
            self.__exit__()
            raise RuntimeError("the steady-load process did not get its connections answered")
        return self

    def __exit__(self, *exc_info: object) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        try:
            out, _ = process.communicate(input="", timeout=30)
            if out.strip():
                self.result = json.loads(out.strip().splitlines()[-1])
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=5)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of `values`, q in [0, 100]."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


async def burst(port: int, count: int, timeout: float) -> list[tuple[float | None, float | None]]:
    """`count` new connections at once, one GET each: (connect ms, response ms) of each, from the
    connect call; None where it failed or took longer than `timeout`."""

    async def fresh() -> tuple[float | None, float | None]:
        started = time.monotonic()
        connected_ms: float | None = None
        writer = None
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                connected_ms = (time.monotonic() - started) * 1000
                await get(reader, writer)
            return connected_ms, (time.monotonic() - started) * 1000
        except ERRORS:
            return connected_ms, None
        finally:
            if writer is not None:
                writer.close()

    return list(await asyncio.gather(*(fresh() for _ in range(count))))


def one_run(port: int, args: argparse.Namespace) -> dict[str, Any]:
    """Steady keep-alive load (another process), then a burst of new connections from this one."""
    with SteadyLoad(port, args) as steady:
        time.sleep(args.warmup)
        burst_started = time.monotonic()
        results = asyncio.run(burst(port, args.burst, args.timeout))
        burst_ended = time.monotonic()
    samples, steady_errors = steady.result["samples"], steady.result["errors"]

    answered = [ms for _, ms in results if ms is not None]
    connects = [ms for ms, _ in results if ms is not None]
    during = [ms for started, ms in samples if burst_started <= started < burst_ended]
    failed = args.burst - len(answered)
    row: dict[str, Any] = {
        "burst_ms": round((burst_ended - burst_started) * 1000, 1),
        "answered": len(answered),
        "failed": failed,
        "over_1s": sum(1 for ms in answered if ms > 1000) + failed,
        "over_2s": sum(1 for ms in answered if ms > 2000) + failed,
        "p50_ms": round(percentile(answered, 50), 1) if answered else None,
        "p90_ms": round(percentile(answered, 90), 1) if answered else None,
        "max_ms": round(max(answered), 1) if answered else None,
        "connect_max_ms": round(max(connects), 1) if connects else None,
        "steady_during_burst": {
            "requests": len(during),
            "p50_ms": round(percentile(during, 50), 1) if during else None,
            "max_ms": round(max(during), 1) if during else None,
        },
        "steady_requests_total": len(samples),
        "steady_errors": steady_errors,
    }
    return row


# --------------------------------------------------------------------------- the report


def spread(values: list[float | None]) -> dict[str, float | None]:
    """Median, min and max of the runs' values (None where no run had one)."""
    present = [v for v in values if v is not None]
    if not present:
        return {"median": None, "min": None, "max": None}
    return {
        "median": round(statistics.median(present), 1),
        "min": round(min(present), 1),
        "max": round(max(present), 1),
    }


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "runs": len(runs),
        "p50_ms": spread([r["p50_ms"] for r in runs]),
        "p90_ms": spread([r["p90_ms"] for r in runs]),
        "max_ms": spread([r["max_ms"] for r in runs]),
        "over_1s": {
            "total": sum(r["over_1s"] for r in runs),
            **spread([r["over_1s"] for r in runs]),
        },
        "over_2s": {
            "total": sum(r["over_2s"] for r in runs),
            **spread([r["over_2s"] for r in runs]),
        },
        "failed": sum(r["failed"] for r in runs),
        "requests": sum(r["answered"] + r["failed"] for r in runs),
        "steady_during_burst_p50_ms": spread([r["steady_during_burst"]["p50_ms"] for r in runs]),
        "steady_during_burst_max_ms": spread([r["steady_during_burst"]["max_ms"] for r in runs]),
        "connect_max_ms": spread([r["connect_max_ms"] for r in runs]),
    }


def _cell(d: dict[str, Any]) -> str:
    return f"{d['median']} [{d['min']}-{d['max']}]"


def versions() -> dict[str, str]:
    import uvicorn
    import uvloop

    found = {"uvicorn": uvicorn.__version__, "uvloop": uvloop.__version__}
    try:
        from uvloop.loop import libuv_get_version  # type: ignore[attr-defined]

        v = libuv_get_version()
        found["libuv"] = f"{v >> 16}.{(v >> 8) & 0xFF}.{v & 0xFF}"
    except ImportError:  # pragma: no cover - older uvloop
        pass
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10, help="runs of each loop type")
    parser.add_argument("--steady", type=int, default=8, help="keep-alive connections (K)")
    parser.add_argument("--burst", type=int, default=100, help="new connections at once (N)")
    parser.add_argument("--cpu-ms", type=float, default=2.0, help="CPU per request, on the loop")
    parser.add_argument("--warmup", type=float, default=1.0, help="steady load before the burst")
    parser.add_argument("--timeout", type=float, default=10.0, help="per request, seconds")
    parser.add_argument("--port", type=int, default=24600, help="loopback port, below 32768")
    parser.add_argument("--loops", default=",".join(LOOPS), help="comma-separated loop types")
    parser.add_argument("--max-seconds", type=float, default=300.0, help="the whole run")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--serve", choices=LOOPS, help=argparse.SUPPRESS)
    parser.add_argument("--steady-load", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.cpu_ms)
        return
    if args.steady_load:
        asyncio.run(steady_load(args.steady_load, args.steady, args.timeout, args.max_seconds))
        return
    loops = [name.strip() for name in args.loops.split(",") if name.strip()]
    if not loops or any(name not in LOOPS for name in loops):
        parser.error(f"--loops must name some of {', '.join(LOOPS)}")
    if not 1 <= args.repeat <= 50 or not 1 <= args.steady <= 64 or not 1 <= args.burst <= 1000:
        parser.error("--repeat must be 1..50, --steady 1..64 and --burst 1..1000")
    if not 0 < args.cpu_ms <= 50 or not 0 < args.timeout <= 60 or not 0 <= args.warmup <= 10:
        parser.error("--cpu-ms must be in (0, 50], --timeout in (0, 60], --warmup in [0, 10]")
    if not 1024 <= args.port < 32768:
        parser.error("--port must be 1024..32767 (below Linux's ephemeral ports)")

    started = time.monotonic()
    deadline = started + args.max_seconds
    load_before = os.getloadavg()
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in loops}
    stopped_early = False
    with tempfile.TemporaryDirectory(prefix="accept-burst-") as log_dir:
        for i in range(args.repeat):
            order = loops if i % 2 == 0 else loops[::-1]
            for name in order:
                if time.monotonic() > deadline:
                    stopped_early = True
                    break
                with Server(name, args.port, args.cpu_ms, Path(log_dir)):
                    row = one_run(args.port, args)
                runs[name].append({"run": i, "first": name == order[0], **row})
            if stopped_early:
                break
    if not any(runs.values()):
        raise SystemExit("no run finished within --max-seconds")

    report = {
        "bench": "accept_burst",
        "steady_connections": args.steady,
        "burst_connections": args.burst,
        "cpu_ms_per_request": args.cpu_ms,
        "warmup_s": args.warmup,
        "request_timeout_s": args.timeout,
        "repeat": args.repeat,
        "stopped_early": stopped_early,
        "seconds": round(time.monotonic() - started, 1),
        **{name: {"summary": summary(rows), "runs": rows} for name, rows in runs.items() if rows},
        "versions": versions(),
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        },
        "command": " ".join(["python", "bench/accept_burst.py", *sys.argv[1:]]),
    }
    if args.json:
        print(json.dumps(report))
        return
    print(
        f"{args.steady} steady keep-alive connections, then {args.burst} new ones at once; "
        f"{args.cpu_ms:g} ms CPU per request; {args.repeat} runs per loop; "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, {report['versions']}"
    )
    print("new connections, median [min-max] over runs; >1 s, >2 s and failed: all runs")
    print(f"{'loop':<9}{'p50 ms':>24}{'max ms':>24}{'>1 s':>8}{'>2 s':>8}{'failed':>8}")
    for name in loops:
        if not runs[name]:
            continue
        s = report[name]["summary"]
        print(
            f"{name:<9}{_cell(s['p50_ms']):>24}{_cell(s['max_ms']):>24}"
            f"{s['over_1s']['total']:>8}{s['over_2s']['total']:>8}{s['failed']:>8}"
        )
    print(f"whole run {report['seconds']} s; command: {report['command']}")


if __name__ == "__main__":
    main()
