"""HttpProbe: one GET of an endpoint's readiness path, with a hard deadline, over pooled sockets.

It implements the `HealthProbe` protocol for real endpoints (`http://127.0.0.1:18102`). A sweep
of many endpoints runs the probes in parallel on one shared `httpx.AsyncClient`, so connections
are kept alive between sweeps and a probe costs one request, not a TCP handshake. An unhealthy
endpoint is reported, never raised: a refused connection, a timeout or a 5xx is a `ProbeResult`
with `ok=False` and the reason in `error`.
"""

from __future__ import annotations

import asyncio
import time

import httpx

from zdp.models import ProbeResult


class HttpProbe:
    """HealthProbe that GETs `<endpoint><path>` and calls any 2xx healthy."""

    def __init__(
        self, path: str = "/healthz/ready", timeout: float = 0.05, max_connections: int = 100
    ) -> None:
        self.path = path if path.startswith("/") else f"/{path}"
        self.timeout = timeout
        self.max_connections = max_connections
        self._client: httpx.AsyncClient | None = None

    async def probe(self, endpoint: str) -> ProbeResult:
        url = endpoint.rstrip("/") + self.path
        client = self._session()  # built outside the deadline: creating it loads TLS roots
        started = time.perf_counter()
        status: int | None = None
        error: str | None = None
        try:
            # httpx's timeouts apply per phase (connect, write, read); this bounds the whole GET.
            async with asyncio.timeout(self.timeout):
                response = await client.get(url)
            status = response.status_code
            if not response.is_success:
                error = f"HTTP {status}"
        except TimeoutError:
            error = f"timeout after {self.timeout * 1000:g} ms"
        except httpx.ConnectError as exc:
            error = _connect_error(exc)
        except httpx.TimeoutException:
            error = f"timeout after {self.timeout * 1000:g} ms"
        except (httpx.HTTPError, OSError, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        latency = (time.perf_counter() - started) * 1000
        return ProbeResult(
            endpoint=endpoint, ok=error is None, latency_ms=latency, status_code=status, error=error
        )

    async def aclose(self) -> None:
        """Close the pooled connections; the next probe opens a new pool."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def __aenter__(self) -> HttpProbe:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def _session(self) -> httpx.AsyncClient:
        if self._client is None:
            limits = httpx.Limits(
                max_connections=self.max_connections,
                max_keepalive_connections=self.max_connections,
            )
            # trust_env=False: a probe must hit the endpoint itself, never an HTTP(S)_PROXY.
            self._client = httpx.AsyncClient(
                limits=limits, timeout=httpx.Timeout(self.timeout * 2), trust_env=False
            )
        return self._client


def _connect_error(exc: httpx.ConnectError) -> str:
    text = str(exc)
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ConnectionRefusedError) or "refused" in str(cause).lower():
            return "connection refused"
        cause = cause.__cause__ or cause.__context__
    return f"connect error: {text}" if text else "connect error"
