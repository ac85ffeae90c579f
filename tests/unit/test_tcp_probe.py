"""TcpProbe against a real asyncio listener, a closed port and endpoints it cannot parse."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from zdp.health.tcp_probe import TcpProbe, endpoint_address
from zdp.platforms.base import HealthProbe


@pytest_asyncio.fixture
async def listening_port() -> AsyncIterator[tuple[int, list[int]]]:
    accepted: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1], accepted
    finally:
        server.close()
        await asyncio.wait_for(server.wait_closed(), 5)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_tcp_probe_is_a_health_probe() -> None:
    assert isinstance(TcpProbe(), HealthProbe)


async def test_listening_port_is_healthy(listening_port: tuple[int, list[int]]) -> None:
    port, accepted = listening_port
    result = await TcpProbe(timeout=1.0).probe(f"tcp://127.0.0.1:{port}")
    assert result.ok and result.error is None
    assert result.latency_ms > 0
    await asyncio.sleep(0.05)
    assert accepted == [1]


async def test_http_endpoint_is_probed_at_its_host_and_port(
    listening_port: tuple[int, list[int]],
) -> None:
    port, _ = listening_port
    result = await TcpProbe(timeout=1.0).probe(f"http://127.0.0.1:{port}/healthz/ready")
    assert result.ok
    assert result.endpoint == f"http://127.0.0.1:{port}/healthz/ready"


async def test_closed_port_is_connection_refused() -> None:
    result = await TcpProbe().probe(f"tcp://127.0.0.1:{closed_port()}")
    assert not result.ok
    assert result.error == "connection refused"


async def test_connect_that_never_completes_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    async def hang(*args: object, **kwargs: object) -> None:
        await asyncio.sleep(10)

    monkeypatch.setattr(asyncio, "open_connection", hang)
    result = await TcpProbe().probe("tcp://127.0.0.1:9")
    assert not result.ok
    assert result.error == "timeout after 50 ms"
    assert result.latency_ms < 5000


@pytest.mark.parametrize(
    ("endpoint", "address"),
    [
        ("tcp://127.0.0.1:6379", ("127.0.0.1", 6379)),
        ("http://localhost:8080/healthz", ("localhost", 8080)),
        ("https://example.internal/x", ("example.internal", 443)),
        ("http://[::1]:81", ("::1", 81)),
        ("127.0.0.1:5000", ("127.0.0.1", 5000)),
    ],
)
def test_endpoint_address_parses_host_and_port(endpoint: str, address: tuple[str, int]) -> None:
    assert endpoint_address(endpoint) == address


@pytest.mark.parametrize("endpoint", ["tcp://127.0.0.1", "ftp://h:21", "tcp://:80"])
async def test_unusable_endpoint_is_reported_not_raised(endpoint: str) -> None:
    result = await TcpProbe().probe(endpoint)
    assert not result.ok
    assert result.error and endpoint in result.error
