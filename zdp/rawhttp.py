"""Keep-alive HTTP/1.1 GETs over raw asyncio protocols: the cheapest client for probes and load.

A general client (httpx) costs about 2 ms of CPU per request here and its pool scans every
connection per request, which made both the load generator (near 300 req/s) and a 100-endpoint
probe sweep (p99 about 200 ms) bottlenecks of their own on 2 cores (docs/benchmarks.md). This
does only what a health probe or a steady GET needs. A connection is an `asyncio.Protocol` that
parses the answer as its bytes arrive and hands the status to a callback: no stream reader, no
task and no future per request unless the caller awaits one (`KeepAlivePool.get`), so a sweep
of many endpoints can send every request at once and collect the answers from the callbacks
(`zdp.health.http_probe.HttpProbe.probe_many`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import cast
from urllib.parse import urlsplit

# What a request's callback gets: the status, or why there is none (the connection is then
# closed, never reused).
Answer = Callable[[int | None, BaseException | None], None]

_HEAD_END = b"\r\n\r\n"
_MAX_HEAD = 64 * 1024


class HttpConnection(asyncio.Protocol):
    """One kept-alive HTTP/1.1 connection, one request at a time.

    `send` writes a request and names the callback for its answer: the status once the whole
    response (Content-Length or chunked body) has arrived, or the error (`IncompleteReadError`
    when the server closed the connection first, `ConnectionResetError`, `ValueError` for an
    answer that is not HTTP/1.x). After an error, or a `Connection: close` answer, the connection
    is closed and `usable` is False.
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._callback: Answer | None = None
        self._buffer = bytearray()
        self._status = 0
        self._keep = True
        # What is still expected: None before the head; else bytes of body left (length), or
        # -1 for the next chunk-size line of a chunked body.
        self._left: int | None = None
        self._chunked = False
        self._last_chunk = False

    @property
    def usable(self) -> bool:
        """Open and idle: a request may be sent on it now."""
        return not self.closed and self._callback is None and self.transport is not None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio's or uvloop's TCP transport (uvloop's does not subclass asyncio.Transport).
        self.transport = cast(asyncio.Transport, transport)

    def send(self, request: bytes, callback: Answer) -> None:
        assert self.transport is not None and self._callback is None
        self._callback = callback
        self._left = None
        self.transport.write(request)

    def abort(self) -> None:
        """Drop the connection at once (an answer that came too late must not be read as the
        next request's); the pending callback, if any, is forgotten, not called."""
        self._callback = None
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self._callback is None:
            # Bytes nobody asked for (a server talking out of turn): never trust this one again.
            self._fail(ValueError("unexpected bytes from the server"))
            return
        buffer = self._buffer
        buffer += data
        try:
            while self._callback is not None and self._step(buffer):
                pass
        except ValueError as err:
            self._fail(err)

    def _step(self, buffer: bytearray) -> bool:
        """Consume what `buffer` holds of the answer; True if more may be parsed now."""
        left = self._left
        if left is None:
            end = buffer.find(_HEAD_END)
            if end < 0:
                if len(buffer) > _MAX_HEAD:
                    raise ValueError("response head too large")
                return False
            self._head(bytes(buffer[:end]))
            del buffer[: end + 4]
            return True
        if left == -1:  # a chunk-size line
            end = buffer.find(b"\r\n")
            if end < 0:
                return False
            size = int(bytes(buffer[:end]).split(b";")[0], 16)
            del buffer[: end + 2]
            self._last_chunk = size == 0
            self._left = size + 2  # the chunk and its CRLF (the last one: the final CRLF)
            return True
        take = min(left, len(buffer))
        del buffer[:take]
        left -= take
        if left:
            self._left = left
            return False
        if self._chunked and not self._last_chunk:
            self._left = -1
            return True
        self._done()
        return bool(buffer)

    def _head(self, head: bytes) -> None:
        if not head.startswith(b"HTTP/1.") or len(head) < 12:
            raise ValueError(f"not an HTTP/1.x answer: {head[:40]!r}")
        self._status = int(head[9:12])
        length, chunked, keep = 0, False, True
        for line in head.lower().split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value:
                chunked = True
            elif name == b"connection" and b"close" in value:
                keep = False
        self._keep, self._chunked, self._last_chunk = keep, chunked, False
        self._left = -1 if chunked else length

    def _done(self) -> None:
        callback, self._callback = self._callback, None
        self._left = None
        if not self._keep:
            self.close()
        if callback is not None:
            callback(self._status, None)

    def _fail(self, error: BaseException) -> None:
        callback, self._callback = self._callback, None
        self.abort()
        if callback is not None:
            callback(None, error)

    def eof_received(self) -> bool | None:
        return False  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        callback, self._callback = self._callback, None
        if callback is not None:
            error: BaseException = (
                ConnectionResetError(str(exc)) if exc is not None
                else asyncio.IncompleteReadError(bytes(self._buffer), None)
            )  # fmt: skip
            callback(None, error)


async def open_connection(host: str, port: int) -> HttpConnection:
    """A new connection to host:port (OSError, such as ConnectionRefusedError, if it fails)."""
    loop = asyncio.get_running_loop()
    _, connection = await loop.create_connection(HttpConnection, host, port)
    return connection


def request_head(url: str) -> tuple[str, int, bytes]:
    """(host, port, the request line and Host header) of a GET of `url`."""
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    head = f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n".encode()
    return parts.hostname or "127.0.0.1", parts.port or 80, head


class KeepAlivePool:
    """Keep-alive HTTP/1.1 GETs of one URL over a few persistent connections.

    A connection that errs or times out is dropped, never reused. Extra request headers
    (`headers`) are bytes made once, never formatted per request.
    """

    def __init__(
        self, url: str, max_connections: int, retry_stale: bool = True, headers: bytes = b""
    ) -> None:
        self.host, self.port, self._head = request_head(url)
        self._headers = headers
        self.request = self._head + headers + b"\r\n"
        self.idle: list[HttpConnection] = []
        self.limit = asyncio.Semaphore(max_connections)
        # Resend once on a fresh connection when a reused one turns out closed. Right for a
        # probe; a load generator counting what users see turns it off to count every drop.
        self.retry_stale = retry_stale

    async def get(self, headers: bytes | None = None) -> int:
        """GET once; `headers` (whole `Name: value\\r\\n` lines, such as a gate's `traceparent`)
        replace the extra headers from now on. The request is rebuilt only when they change:
        one comparison a call."""
        # This call's request, whatever a concurrent call sets meanwhile.
        request = self.request if headers is None else self.request_with(headers)
        async with self.limit:
            if self.idle:
                connection = self.idle.pop()
                try:
                    return await self._exchange(connection, request)
                except (asyncio.IncompleteReadError, ConnectionError):
                    if not self.retry_stale:
                        raise
                    # The server closed this idle connection (keep-alive timeout, or the
                    # process behind the port was replaced): a GET is safe to send again once,
                    # on a fresh connection.
            connection = await open_connection(self.host, self.port)
            return await self._exchange(connection, request)

    def request_with(self, headers: bytes) -> bytes:
        """The request with these extra headers, which stay until others are given."""
        if headers != self._headers:
            self._headers = headers
            self.request = self._head + headers + b"\r\n"
        return self.request

    def take_idle(self) -> HttpConnection | None:
        """An idle connection that is still open, or None; closed ones are dropped."""
        while self.idle:
            connection = self.idle.pop()
            if connection.usable:
                return connection
        return None

    async def _exchange(self, connection: HttpConnection, request: bytes) -> int:
        if connection.closed:
            raise asyncio.IncompleteReadError(b"", None)  # closed while idle
        answer: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        def answered(status: int | None, error: BaseException | None) -> None:
            if answer.done():
                return
            if error is not None:
                answer.set_exception(error)
            else:
                assert status is not None
                answer.set_result(status)

        connection.send(request, answered)
        try:
            status = await answer
        except BaseException:
            connection.abort()  # cancelled (a deadline) or failed: never reused
            raise
        if connection.usable:
            self.idle.append(connection)
        return status

    def close(self) -> None:
        for connection in self.idle:
            connection.close()
        self.idle.clear()
