"""HttpProbe: one GET of a readiness path, with a hard deadline, over kept-alive sockets.

It implements the `HealthProbe` protocol for real endpoints (`http://127.0.0.1:18102`). Each
endpoint keeps its own small pool of persistent connections (`zdp.rawhttp.KeepAlivePool`), so a
probe costs one request, not a TCP handshake, and a sweep of many endpoints does not pay for one
big shared pool: with httpx's shared pool a 100-endpoint sweep had a p99 near 200 ms here
(docs/benchmarks.md). An unhealthy endpoint is reported, never raised: a refused connection, a
timeout or a 5xx is a `ProbeResult` with `ok=False` and the reason in `error`. A probe made in a
gate carries the gate span's W3C `traceparent` (`zdp.tracing.outbound_header`, built once a gate;
marked sampled once a second per endpoint).

A sweep (`probe_many`, which `BreakerBoard.sweep` uses) sends each request on an idle kept-alive
connection from a callback and times it out with a timer: no task, future or stream reader per
probe, which halved the CPU of a 100-endpoint sweep (docs/benchmarks.md). A probe without an
idle connection (the first, or after an error) takes the ordinary path, `probe`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from zdp.models import ProbeResult
from zdp.rawhttp import HttpConnection, KeepAlivePool
from zdp.tracing import outbound_header, outbound_headers


class HttpProbe:
    """HealthProbe that GETs `<endpoint><path>` and calls any 2xx healthy."""

    def __init__(
        self, path: str = "/healthz/ready", timeout: float = 0.05, max_connections: int = 4
    ) -> None:
        self.path = path if path.startswith("/") else f"/{path}"
        self.timeout = timeout
        self.max_connections = max_connections  # per endpoint
        self._pools: dict[str, KeepAlivePool] = {}

    def _pool(self, endpoint: str) -> KeepAlivePool:
        url = endpoint.rstrip("/") + self.path
        pool = self._pools.get(url)
        if pool is None:
            pool = self._pools[url] = KeepAlivePool(url, self.max_connections)
        return pool

    async def probe(self, endpoint: str) -> ProbeResult:
        header = outbound_header(endpoint)
        return await self._probe(endpoint, self.timeout, header, time.perf_counter())

    async def _probe(
        self, endpoint: str, deadline: float, header: bytes, started: float
    ) -> ProbeResult:
        """One GET within `deadline` seconds (connect included) of `started` (perf_counter)."""
        pool = self._pool(endpoint)
        status: int | None = None
        error: str | None = None
        timed_out = False
        try:
            left = max(0.0, deadline - (time.perf_counter() - started))
            async with asyncio.timeout(left):  # bounds the whole GET, connect included
                status = await pool.get(header)  # the gate's traceparent, if any
            if not 200 <= status < 300:
                error = f"HTTP {status}"
        except TimeoutError:
            error, timed_out = _timeout_text(deadline), True
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            error = _error_text(exc)
        latency = (time.perf_counter() - started) * 1000
        return _result(endpoint, latency, status, error, timed_out)

    async def probe_many(
        self, endpoints: Sequence[str], timeout: float | None = None, concurrency: int = 32
    ) -> list[ProbeResult]:
        """Probe every endpoint once, at most `concurrency` at a time, each within `timeout`
        seconds (and this probe's own deadline); the results in input order."""
        count = len(endpoints)
        if count == 0:
            return []
        loop = asyncio.get_running_loop()
        deadline = self.timeout if timeout is None else min(self.timeout, timeout)
        header_for = outbound_headers()  # read here: the callbacks run in other contexts
        clock = time.perf_counter
        results: list[ProbeResult | None] = [None] * count
        in_flight: dict[int, tuple[HttpConnection, asyncio.TimerHandle]] = {}
        tasks: set[asyncio.Task[ProbeResult]] = set()
        finished: asyncio.Future[None] = loop.create_future()
        waiting = count
        queued = 0

        def settle(index: int, result: ProbeResult) -> None:
            nonlocal waiting
            results[index] = result
            waiting -= 1
            if queued < count:
                launch(queued)
            if waiting == 0 and not finished.done():
                finished.set_result(None)

        def by_coroutine(index: int, started: float) -> None:
            header = header_for(endpoints[index])
            task = loop.create_task(self._probe(endpoints[index], deadline, header, started))
            tasks.add(task)

            def done(task: asyncio.Task[ProbeResult]) -> None:
                tasks.discard(task)
                if not task.cancelled():
                    settle(index, task.result())

            task.add_done_callback(done)

        def launch(index: int) -> None:
            nonlocal queued
            queued = index + 1
            endpoint = endpoints[index]
            pool = self._pool(endpoint)
            started = clock()
            connection = pool.take_idle()
            if connection is None:
                by_coroutine(index, started)
                return

            def answered(status: int | None, error: BaseException | None) -> None:
                timer.cancel()
                del in_flight[index]
                if error is None:
                    assert status is not None
                    if connection.usable:
                        pool.idle.append(connection)
                    latency = (clock() - started) * 1000
                    text = None if 200 <= status < 300 else f"HTTP {status}"
                    settle(index, _result(endpoint, latency, status, text))
                elif isinstance(error, asyncio.IncompleteReadError | ConnectionError):
                    # The server closed this kept-alive connection (its process was replaced
                    # on the slot's port): a GET is safe to send again once, on a fresh one.
                    by_coroutine(index, started)
                else:
                    settle(
                        index,
                        _result(endpoint, (clock() - started) * 1000, None, _error_text(error)),
                    )

            def expired() -> None:
                del in_flight[index]
                connection.abort()
                latency = (clock() - started) * 1000
                settle(index, _result(endpoint, latency, None, _timeout_text(deadline), True))

            timer = loop.call_later(deadline, expired)
            in_flight[index] = (connection, timer)
            try:
                connection.send(pool.request_with(header_for(endpoint)), answered)
            except Exception as exc:  # a transport that cannot take the request: not a hang
                timer.cancel()
                del in_flight[index]
                connection.abort()
                settle(index, _result(endpoint, 0.0, None, _error_text(exc)))

        for index in range(min(max(1, concurrency), count)):
            launch(index)
        try:
            await finished
        except asyncio.CancelledError:
            for connection, timer in list(in_flight.values()):
                timer.cancel()
                connection.abort()
            for task in list(tasks):
                task.cancel()
            raise
        return [r for r in results if r is not None]

    async def aclose(self) -> None:
        """Close the kept-alive connections; the next probe opens new ones."""
        pools, self._pools = self._pools, {}
        for pool in pools.values():
            pool.close()

    async def __aenter__(self) -> HttpProbe:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def _result(
    endpoint: str,
    latency_ms: float,
    status: int | None,
    error: str | None,
    timed_out: bool = False,
) -> ProbeResult:
    return ProbeResult(
        endpoint=endpoint,
        ok=error is None,
        latency_ms=latency_ms,
        status_code=status,
        error=error,
        timed_out=timed_out,
    )


def _timeout_text(deadline: float) -> str:
    return f"timeout after {deadline * 1000:g} ms"


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
