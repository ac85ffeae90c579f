"""TcpProbe: is anything accepting connections at an endpoint? One TCP connect, hard deadline.

It implements the `HealthProbe` protocol for endpoints that speak no HTTP (`tcp://host:port`)
and as a cheaper liveness check of HTTP ones (`http://host:port/...`: only host and port are
used). The probe is healthy when the connect completes within the deadline; the connection is
closed at once and nothing is sent. Like every probe, it reports an unhealthy endpoint in the
result (`ok=False`, `error`), and never raises for one.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from urllib.parse import urlsplit

from zdp.models import ProbeResult

_DEFAULT_PORTS = {"http": 80, "https": 443}


def endpoint_address(endpoint: str) -> tuple[str, int]:
    """The (host, port) of `tcp://host:port` or `http(s)://host[:port]/...`; ValueError if none."""
    parts = urlsplit(endpoint if "://" in endpoint else f"tcp://{endpoint}")
    scheme = parts.scheme.lower()
    if scheme not in ("tcp", *_DEFAULT_PORTS):
        raise ValueError(f"unsupported scheme {scheme!r} in {endpoint!r}: use tcp://, http://")
    host = parts.hostname
    port = parts.port or _DEFAULT_PORTS.get(scheme)  # .port raises ValueError when out of range
    if not host or port is None:
        raise ValueError(f"{endpoint!r} needs a host and a port, as in tcp://127.0.0.1:6379")
    return host, port


class TcpProbe:
    """HealthProbe that calls an endpoint healthy when a TCP connect to it succeeds in time."""

    def __init__(self, timeout: float = 0.05) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.timeout = timeout

    async def probe(self, endpoint: str) -> ProbeResult:
        try:
            host, port = endpoint_address(endpoint)
        except ValueError as exc:
            return ProbeResult(endpoint=endpoint, ok=False, latency_ms=0.0, error=str(exc))
        started = time.perf_counter()
        error: str | None = None
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(self.timeout):
                _, writer = await asyncio.open_connection(host, port)
        except TimeoutError:
            error = f"timeout after {self.timeout * 1000:g} ms"
        except ConnectionRefusedError:
            error = "connection refused"
        except OSError as exc:
            error = f"connect error: {exc.strerror or exc}"
        latency = (time.perf_counter() - started) * 1000
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        return ProbeResult(endpoint=endpoint, ok=error is None, latency_ms=latency, error=error)
