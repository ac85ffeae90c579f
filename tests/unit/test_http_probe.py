"""HttpProbe against a tiny asyncio HTTP server: healthy, unhealthy, slow and absent endpoints,
one probe at a time and in sweeps (`probe_many`, through `BreakerBoard.sweep`)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
import pytest_asyncio

from zdp import tracing
from zdp.health.breaker import BreakerBoard
from zdp.health.http_probe import HttpProbe
from zdp.platforms.base import HealthProbe


@dataclass
class Gauge:
    """Requests being answered now, and the most at once."""

    now: int = 0
    most: int = 0


@dataclass
class TinyServer:
    """Answers GET <path> with `status` after `delay` seconds; counts connections and requests."""

    status: int = 200
    delay: float = 0.0
    connections: int = 0
    paths: list[str] = field(default_factory=list)
    heads: list[bytes] = field(default_factory=list)
    drop_next: bool = False  # close the next connection that sends a request, without answering
    gauge: Gauge = field(default_factory=Gauge)  # several servers may share one

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.heads.append(head)
                self.paths.append(head.split(b" ", 2)[1].decode())
                if self.drop_next:
                    self.drop_next = False
                    break
                gauge = self.gauge
                gauge.now += 1
                gauge.most = max(gauge.most, gauge.now)
                try:
                    await asyncio.sleep(self.delay)
                finally:
                    gauge.now -= 1
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
async def servers() -> AsyncIterator[list[tuple[TinyServer, str]]]:
    """Four endpoints, each its own server: for sweeps."""
    made: list[tuple[TinyServer, str]] = []
    listeners = []
    for _ in range(4):
        tiny = TinyServer()
        listener = await asyncio.start_server(tiny.handle, "127.0.0.1", 0)
        listeners.append(listener)
        made.append((tiny, f"http://127.0.0.1:{listener.sockets[0].getsockname()[1]}"))
    try:
        yield made
    finally:
        for listener in listeners:
            listener.close()
        for listener in listeners:
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
        for connection in pool.idle:
            assert connection.transport is not None
            connection.transport.abort()  # as if the process behind the port went away
    result = await probe.probe(endpoint)
    assert result.ok, result.error


# --------------------------------------------------------------------------- sweeps


async def test_a_sweep_reports_every_endpoint_in_order_as_single_probes_do(
    servers: list[tuple[TinyServer, str]],
) -> None:
    (_, good), (bad, failing), (slow, hung), _ = servers
    refused = f"http://127.0.0.1:{closed_port()}"
    board = BreakerBoard()
    async with HttpProbe(timeout=2.0) as probe:
        warm = await board.sweep(probe, [good, failing, hung], timeout=2.0)
        assert all(r.ok for r in warm)  # kept-alive connections now: the sweep's own path
        bad.status, slow.delay = 503, 2.0
        results = await board.sweep(probe, [good, failing, refused, hung], timeout=0.05)
    assert [r.endpoint for r in results] == [good, failing, refused, hung]
    assert [r.ok for r in results] == [True, False, False, False]
    assert results[0].status_code == 200 and results[0].error is None
    assert results[1].status_code == 503 and results[1].error == "HTTP 503"
    assert results[2].error == "connection refused" and not results[2].timed_out
    assert results[3].timed_out and results[3].error == "timeout after 50 ms"
    assert results[3].status_code is None
    # Cut off near 50 ms, far from the 2 s answer (room left for a busy machine).
    assert 45 <= results[3].latency_ms < 1000


async def test_sweeps_keep_their_connections_alive(
    servers: list[tuple[TinyServer, str]],
) -> None:
    board = BreakerBoard()
    async with HttpProbe() as probe:
        for _ in range(5):
            results = await board.sweep(probe, [e for _, e in servers], timeout=2.0)
            assert all(r.ok for r in results)
    assert [tiny.connections for tiny, _ in servers] == [1, 1, 1, 1]


async def test_a_sweep_sends_at_most_concurrency_probes_at_once(
    servers: list[tuple[TinyServer, str]],
) -> None:
    board = BreakerBoard()
    endpoints = [e for _, e in servers]
    shared = Gauge()
    async with HttpProbe(timeout=5.0) as probe:
        await board.sweep(probe, endpoints, timeout=5.0)  # warm: the sweep's own path
        for tiny, _ in servers:
            tiny.delay, tiny.gauge = 0.05, shared
        results = await board.sweep(probe, endpoints, concurrency=2, timeout=5.0)
    assert all(r.ok for r in results)
    assert shared.most == 2


async def test_a_sweep_resends_once_on_a_connection_the_server_closed(
    servers: list[tuple[TinyServer, str]],
) -> None:
    # Fixed slot ports: a new version takes the old one's port, and the kept-alive connection
    # to the old process is dead. That is not the new version's failure.
    tiny, endpoint = servers[0]
    board = BreakerBoard()
    async with HttpProbe(timeout=2.0) as probe:
        assert (await board.sweep(probe, [endpoint]))[0].ok
        tiny.drop_next = True
        result = (await board.sweep(probe, [endpoint]))[0]
    assert result.ok, result.error
    assert tiny.connections == 2 and len(tiny.paths) == 3


async def test_a_cancelled_sweep_drops_its_connections_in_flight(
    servers: list[tuple[TinyServer, str]],
) -> None:
    tiny, endpoint = servers[0]
    board = BreakerBoard()
    async with HttpProbe(timeout=5.0) as probe:
        assert (await board.sweep(probe, [endpoint]))[0].ok
        tiny.delay = 5.0
        sweep = asyncio.create_task(board.sweep(probe, [endpoint]))
        while tiny.gauge.now == 0:  # the request reached the server
            await asyncio.sleep(0.01)
        sweep.cancel()
        with pytest.raises(asyncio.CancelledError):
            await sweep
        tiny.delay = 0.0
        # The late answer is never read as the next one: a new connection carries it.
        assert (await board.sweep(probe, [endpoint]))[0].ok
    assert tiny.connections == 2


async def test_sweeps_carry_the_gate_spans_traceparent_only_inside_it(
    servers: list[tuple[TinyServer, str]],
) -> None:
    tracing.setup("zdp-test")  # a recording provider, so the gate's span is a real one
    tiny, endpoint = servers[0]
    board = BreakerBoard()
    async with HttpProbe(timeout=5.0) as probe:
        assert (await board.sweep(probe, [endpoint]))[0].ok
        with tracing.outbound_span("gate canary", {}) as gate:
            assert (await board.sweep(probe, [endpoint]))[0].ok
        assert (await board.sweep(probe, [endpoint]))[0].ok
    expected = f"traceparent: {tracing.traceparent(gate)}\r\n".encode()  # its first: sampled
    assert [expected in head for head in tiny.heads] == [False, True, False]
