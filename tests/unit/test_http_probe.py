"""HttpProbe against a tiny asyncio HTTP server: healthy, unhealthy, slow and absent endpoints."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest_asyncio

from zdp.health.http_probe import HttpProbe
from zdp.platforms.base import HealthProbe


@dataclass
class TinyServer:
    """Answers GET <path> with `status` after `delay` seconds; counts connections and requests."""

    status: int = 200
    delay: float = 0.0
    connections: int = 0
    paths: list[str] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.paths.append(head.split(b" ", 2)[1].decode())
                await asyncio.sleep(self.delay)
                writer.write(f"HTTP/1.1 {self.status} X\r\nContent-Length: 2\r\n\r\nok".encode())
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest_asyncio.fixture
async def server() -> AsyncIterator[tuple[TinyServer, str]]:
    tiny = TinyServer()
    listener = await asyncio.start_server(tiny.handle, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        yield tiny, f"http://127.0.0.1:{port}"
    finally:
        listener.close()
        await asyncio.wait_for(listener.wait_closed(), 5)


@pytest_asyncio.fixture
async def probe() -> AsyncIterator[HttpProbe]:
    checker = HttpProbe()
    try:
        yield checker
    finally:
        await checker.aclose()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_http_probe_is_a_health_probe() -> None:
    assert isinstance(HttpProbe(), HealthProbe)


async def test_a_200_is_healthy(server: tuple[TinyServer, str], probe: HttpProbe) -> None:
    tiny, endpoint = server
    result = await probe.probe(endpoint)
    assert result.ok and result.status_code == 200 and result.error is None
    assert result.endpoint == endpoint
    assert 0 < result.latency_ms < 50
    assert tiny.paths == ["/healthz/ready"]


async def test_a_503_is_reported_not_raised(
    server: tuple[TinyServer, str], probe: HttpProbe
) -> None:
    tiny, endpoint = server
    tiny.status = 503
    result = await probe.probe(endpoint)
    assert not result.ok
    assert result.status_code == 503
    assert result.error == "HTTP 503"


async def test_a_slow_endpoint_times_out_at_50_ms(
    server: tuple[TinyServer, str], probe: HttpProbe
) -> None:
    tiny, endpoint = server
    await probe.probe(endpoint)  # warm: the pool is open, so only the deadline is measured
    tiny.delay = 2.0
    result = await probe.probe(endpoint)
    assert not result.ok
    assert result.status_code is None
    assert result.error == "timeout after 50 ms"
    # Cut off near 50 ms, far from the 2 s answer (the upper bound leaves room for a busy box).
    assert 45 <= result.latency_ms < 1000


async def test_a_closed_port_is_connection_refused(probe: HttpProbe) -> None:
    result = await probe.probe(f"http://127.0.0.1:{closed_port()}")
    assert not result.ok
    assert result.error == "connection refused"
    assert result.status_code is None


async def test_connections_are_kept_alive_between_probes(
    server: tuple[TinyServer, str], probe: HttpProbe
) -> None:
    tiny, endpoint = server
    for _ in range(5):
        assert (await probe.probe(endpoint)).ok
    assert tiny.connections == 1


async def test_a_parallel_sweep_reports_every_endpoint(server: tuple[TinyServer, str]) -> None:
    # What is checked is that every endpoint gets its own result, not the 50 ms budget: on a
    # loaded 2-core machine 20 simultaneous first connections can take longer than that.
    _, endpoint = server
    refused = f"http://127.0.0.1:{closed_port()}"
    async with HttpProbe(timeout=2.0) as probe:
        results = await asyncio.wait_for(
            asyncio.gather(*(probe.probe(e) for e in [endpoint] * 20 + [refused] * 5)), 10
        )
    assert [r.ok for r in results] == [True] * 20 + [False] * 5
    assert all(r.error == "connection refused" for r in results[20:])


async def test_a_custom_path_and_a_trailing_slash(server: tuple[TinyServer, str]) -> None:
    tiny, endpoint = server
    async with HttpProbe(path="healthz/live", timeout=0.5) as checker:
        assert (await checker.probe(endpoint + "/")).ok
    assert tiny.paths == ["/healthz/live"]


async def test_aclose_then_probe_opens_a_new_pool(
    server: tuple[TinyServer, str], probe: HttpProbe
) -> None:
    tiny, endpoint = server
    assert (await probe.probe(endpoint)).ok
    await probe.aclose()
    await probe.aclose()
    assert (await probe.probe(endpoint)).ok
    assert tiny.connections == 2


async def test_a_connection_the_server_closed_is_replaced_not_reported(
    server: tuple[TinyServer, str], probe: HttpProbe
) -> None:
    # Fixed slot ports: a new version takes the old one's port, and the kept-alive connection
    # to the old process is dead. That is not the new version's failure.
    _, endpoint = server
    assert (await probe.probe(endpoint)).ok
    for pool in probe._pools.values():
        for _, writer in pool.idle:
            writer.transport.abort()  # as if the process behind the port went away
    result = await probe.probe(endpoint)
    assert result.ok, result.error
