"""HttpProbe: one GET of a readiness path, with a hard deadline, over kept-alive sockets.

It implements the `HealthProbe` protocol for real endpoints (`http://127.0.0.1:18102`). Each
endpoint keeps its own small pool of persistent connections (`zdp.rawhttp.KeepAlivePool`), so a
probe costs one request, not a TCP handshake, and a sweep of many endpoints does not pay for one
big shared pool: with httpx's shared pool a 100-endpoint sweep had a p99 near 200 ms here
(docs/benchmarks.md). An unhealthy endpoint is reported, never raised: a refused connection, a
timeout or a 5xx is a `ProbeResult` with `ok=False` and the reason in `error`. A probe made in a
gate carries the gate span's W3C `traceparent` (`zdp.tracing.outbound_header`, built once a gate).
"""

from __future__ import annotations

import asyncio
import time

from zdp.models import ProbeResult
from zdp.rawhttp import KeepAlivePool
from zdp.tracing import outbound_header


class HttpProbe:
    """HealthProbe that GETs `<endpoint><path>` and calls any 2xx healthy."""

    def __init__(
        self, path: str = "/healthz/ready", timeout: float = 0.05, max_connections: int = 4
    ) -> None:
        self.path = path if path.startswith("/") else f"/{path}"
        self.timeout = timeout
        self.max_connections = max_connections  # per endpoint
        self._pools: dict[str, KeepAlivePool] = {}

    async def probe(self, endpoint: str) -> ProbeResult:
        url = endpoint.rstrip("/") + self.path
        pool = self._pools.get(url)
        if pool is None:
            pool = self._pools[url] = KeepAlivePool(url, self.max_connections)
        started = time.perf_counter()
        status: int | None = None
        error: str | None = None
        timed_out = False
        try:
            async with asyncio.timeout(self.timeout):  # bounds the whole GET, connect included
                status = await pool.get(outbound_header())  # the gate's traceparent, if any
            if not 200 <= status < 300:
                error = f"HTTP {status}"
        except TimeoutError:
            error, timed_out = f"timeout after {self.timeout * 1000:g} ms", True
        except ConnectionRefusedError:
            error = "connection refused"
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        latency = (time.perf_counter() - started) * 1000
        return ProbeResult(
            endpoint=endpoint,
            ok=error is None,
            latency_ms=latency,
            status_code=status,
            error=error,
            timed_out=timed_out,
        )

    async def aclose(self) -> None:
        """Close the kept-alive connections; the next probe opens new ones."""
        pools, self._pools = self._pools, {}
        for pool in pools.values():
            pool.close()

    async def __aenter__(self) -> HttpProbe:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
