"""A bounded open-loop load generator for loopback: steady requests at a fixed rate, counted.

Used by the demo, the end-to-end tests and the benchmarks to show what users see while a
deployment runs. Every run is bounded by a duration, a request count and a stop event, and only
loopback targets are accepted.
"""

from __future__ import annotations

import asyncio
import json
import math
import signal
import sys
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from zdp.errors import ConfigError
from zdp.rawhttp import KeepAlivePool

LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass
class LoadReport:
    sent: int = 0
    failed: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    failures: list[tuple[float, str]] = field(default_factory=list)  # (monotonic time, what)
    started: float = 0.0
    finished: float = 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies_ms:
            return 0.0
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]

    @property
    def rate(self) -> float:
        elapsed = self.finished - self.started
        return self.sent / elapsed if elapsed > 0 else 0.0

    def summary(self) -> dict[str, float]:
        return {
            "requests_sent": self.sent,
            "requests_failed": self.failed,
            "rate_per_s": round(self.rate, 1),
            "p50_ms": round(self.percentile(0.50), 2),
            "p99_ms": round(self.percentile(0.99), 2),
        }


class LoadGenerator:
    """Sends GETs to `url` at `rate` per second until stopped, `max_seconds` or `max_requests`."""

    def __init__(
        self,
        url: str,
        rate: float = 200.0,
        max_seconds: float = 120.0,
        max_requests: int = 100_000,
        timeout: float = 2.0,
        max_in_flight: int = 256,
    ) -> None:
        host = urlsplit(url).hostname or ""
        if host not in LOOPBACK:
            raise ConfigError(f"load is only sent to loopback, not to '{host}'")
        if not 0 < rate <= 5000:
            raise ConfigError("rate must be between 0 and 5000 requests per second")
        self.url, self.rate = url, rate
        self.max_seconds, self.max_requests = max_seconds, max_requests
        self.timeout, self.max_in_flight = timeout, max_in_flight
        self.report = LoadReport()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[LoadReport] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self.run())

    async def stop(self) -> LoadReport:
        self._stop.set()
        if self._task is not None:
            await self._task
        return self.report

    async def run(self) -> LoadReport:
        report = self.report
        slots = asyncio.Semaphore(self.max_in_flight)
        pending: set[asyncio.Task[None]] = set()
        pool = KeepAlivePool(self.url, max_connections=64, retry_stale=False)

        async def one() -> None:
            begun = time.perf_counter()
            try:
                status = await asyncio.wait_for(pool.get(), self.timeout)
                ok, what = status < 400, f"HTTP {status}"
            except TimeoutError:  # before OSError, of which it is a subclass
                ok, what = False, "timeout"
            except (OSError, asyncio.IncompleteReadError, ValueError) as err:
                ok, what = False, type(err).__name__
            finally:
                slots.release()
            if ok:
                report.latencies_ms.append((time.perf_counter() - begun) * 1000)
            else:
                report.failed += 1
                report.failures.append((time.monotonic(), what))

        report.started = time.monotonic()
        deadline = report.started + self.max_seconds
        interval = 1.0 / self.rate
        next_at = report.started
        while (
            not self._stop.is_set()
            and report.sent < self.max_requests
            and time.monotonic() < deadline
        ):
            await slots.acquire()
            task = asyncio.create_task(one())
            pending.add(task)
            task.add_done_callback(pending.discard)
            report.sent += 1
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        if pending:
            await asyncio.wait(pending, timeout=self.timeout + 1)
        report.finished = time.monotonic()
        pool.close()
        return report


class LoadProcess:
    """The load generator in a process of its own, so the measuring side is not slowed by the
    orchestrating side (the demo or a benchmark polls Temporal and Envoy in its own loop).

    `start()` launches `python -m zdp.loadgen`; `stop()` sends SIGINT and reads its JSON report.
    """

    def __init__(self, url: str, rate: float = 200.0, max_seconds: float = 300.0) -> None:
        LoadGenerator(url, rate, max_seconds)  # validate here: loopback only, sane rate
        self.args = [
            sys.executable, "-m", "zdp.loadgen", url,
            "--rate", str(rate), "--max-seconds", str(max_seconds),
        ]  # fmt: skip
        self._proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            *self.args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        assert self._proc.stderr is not None
        line = await asyncio.wait_for(self._proc.stderr.readline(), 30)
        if b"sending" not in line:
            raise ConfigError(f"the load generator did not start: {line.decode().strip()}")

    async def stop(self) -> dict[str, float]:
        proc = self._proc
        if proc is None:
            return {}
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        try:
            return dict(json.loads(out))
        except ValueError:
            raise ConfigError(f"the load generator failed: {err.decode().strip()[-300:]}") from None


async def _main(url: str, rate: float, max_seconds: float) -> dict[str, float]:
    generator = LoadGenerator(url, rate=rate, max_seconds=max_seconds)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, generator._stop.set)
    sys.stderr.write(f"sending {rate:g} req/s to {url}\n")
    sys.stderr.flush()
    report = await generator.run()
    summary = report.summary()
    summary["failure_kinds"] = sorted({what for _, what in report.failures})  # type: ignore[assignment]
    return summary


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Steady GET load on a loopback URL.")
    parser.add_argument("url")
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--max-seconds", type=float, default=300.0)
    ns = parser.parse_args()
    try:
        print(json.dumps(asyncio.run(_main(ns.url, ns.rate, ns.max_seconds))))
    except ConfigError as err:
        sys.exit(f"error: {err}")
