"""The load generator counts what users would see: status codes, bodies, dropped connections."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from zdp.errors import ConfigError
from zdp.loadgen import LoadGenerator


class Upstream:
    """A tiny HTTP/1.1 server: answers `status` with a Content-Length or a chunked body."""

    def __init__(self) -> None:
        self.status = 200
        self.chunked = False
        self.close_after = 0  # close the connection without answering every Nth request
        self.silent = False  # read requests, never answer
        self.seen = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                self.seen += 1
                if self.silent:
                    continue
                if self.close_after and self.seen % self.close_after == 0:
                    writer.close()
                    return
                reason = b"OK" if self.status == 200 else b"ERR"
                if self.chunked:
                    writer.write(
                        b"HTTP/1.1 %d %s\r\nTransfer-Encoding: chunked\r\n\r\n"
                        b"5\r\nhello\r\n0\r\n\r\n" % (self.status, reason)
                    )
                else:
                    writer.write(
                        b"HTTP/1.1 %d %s\r\nContent-Length: 5\r\n\r\nhello" % (self.status, reason)
                    )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()


@pytest_asyncio.fixture
async def upstream() -> AsyncIterator[tuple[Upstream, str]]:
    up = Upstream()
    server = await asyncio.start_server(up.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield up, f"http://127.0.0.1:{port}/api/x"


@pytest.mark.parametrize("chunked", [False, True])
async def test_steady_load_is_sent_at_the_rate_and_all_succeed(
    upstream: tuple[Upstream, str], chunked: bool
) -> None:
    up, url = upstream
    up.chunked = chunked
    report = await LoadGenerator(url, rate=400, max_seconds=0.5).run()
    # At most 0.5 s at 400/s (the deadline bounds it); how close to the rate a busy machine
    # gets is for the benchmarks, not a test.
    assert 0 < report.sent <= 210
    assert report.failed == 0 and len(report.latencies_ms) == report.sent
    assert up.seen == report.sent  # one upstream request per request sent, no retries


async def test_error_statuses_and_dropped_connections_count_as_failures(
    upstream: tuple[Upstream, str],
) -> None:
    up, url = upstream
    up.status = 503
    report = await LoadGenerator(url, rate=200, max_requests=20).run()
    assert report.sent == 20 and report.failed == 20
    assert {what for _, what in report.failures} == {"HTTP 503"}
    up.status, up.close_after, up.seen = 200, 4, 0
    report = await LoadGenerator(url, rate=200, max_requests=20).run()
    assert report.failed == 5
    assert {what for _, what in report.failures} == {"IncompleteReadError"}


async def test_a_request_without_an_answer_in_time_is_a_timeout(
    upstream: tuple[Upstream, str],
) -> None:
    up, url = upstream
    up.silent = True
    report = await LoadGenerator(url, rate=50, max_requests=3, timeout=0.2).run()
    assert report.sent == 3 and report.failed == 3
    assert {what for _, what in report.failures} == {"timeout"}


def test_only_loopback_is_a_target() -> None:
    with pytest.raises(ConfigError, match="only sent to loopback"):
        LoadGenerator("http://10.1.2.3/", rate=10)
