"""Keep-alive HTTP/1.1 GETs over raw asyncio streams: the cheapest client for probes and load.

A general client (httpx) costs about 2 ms of CPU per request here and its pool scans every
connection per request, which made both the load generator (near 300 req/s) and a 100-endpoint
probe sweep (p99 about 200 ms) bottlenecks of their own on 2 cores (docs/benchmarks.md). This
does only what a health probe or a steady GET needs.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit


class KeepAlivePool:
    """Keep-alive HTTP/1.1 GETs over raw asyncio streams.

    A general client (httpx) costs about 2 ms of CPU per request here, which made the load
    generator itself the bottleneck near 300 req/s on 2 cores; this does only what a steady GET
    needs: a pool of persistent connections, the status line, Content-Length or chunked bodies.
    A connection that errs or times out is dropped, never reused. Extra request headers
    (`headers`) are bytes made once, never formatted per request.
    """

    def __init__(
        self, url: str, max_connections: int, retry_stale: bool = True, headers: bytes = b""
    ) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._head = f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n".encode()
        self._headers = headers
        self.request = self._head + headers + b"\r\n"
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.limit = asyncio.Semaphore(max_connections)
        # Resend once on a fresh connection when a reused one turns out closed. Right for a
        # probe; a load generator counting what users see turns it off to count every drop.
        self.retry_stale = retry_stale

    async def get(self, headers: bytes | None = None) -> int:
        """GET once; `headers` (whole `Name: value\\r\\n` lines, such as a gate's `traceparent`)
        replace the extra headers from now on. The request is rebuilt only when they change:
        one comparison a call."""
        if headers is not None and headers != self._headers:
            self._headers = headers
            self.request = self._head + headers + b"\r\n"
        request = self.request  # this call's, whatever a concurrent call sets meanwhile
        async with self.limit:
            if self.idle:
                reader, writer = self.idle.pop()
                try:
                    return await self._exchange(reader, writer, request)
                except (asyncio.IncompleteReadError, ConnectionError):
                    if not self.retry_stale:
                        raise
                    # The server closed this idle connection (keep-alive timeout, or the
                    # process behind the port was replaced): a GET is safe to send again once,
                    # on a fresh connection.
                    pass
            reader, writer = await asyncio.open_connection(self.host, self.port)
            return await self._exchange(reader, writer, request)

    async def _exchange(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
    ) -> int:
        try:
            writer.write(request)
            status, keep = await self._response(reader)
        except BaseException:
            writer.close()
            raise
        if keep:
            self.idle.append((reader, writer))
        else:
            writer.close()
        return status

    @staticmethod
    async def _response(reader: asyncio.StreamReader) -> tuple[int, bool]:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").lower()
        status = int(head[9:12])
        length, chunked, keep = 0, False, True
        for line in head.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding" and "chunked" in value:
                chunked = True
            elif name == "connection" and "close" in value:
                keep = False
        if chunked:
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                await reader.readexactly(size + 2)
                if size == 0:
                    break
        elif length:
            await reader.readexactly(length)
        return status, keep

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()
        self.idle.clear()
