"""Serving one of the engine's small HTTP endpoints (the Slack bot, the alert receiver) with
uvicorn on a socket bound first, so an address in use is one line and a caller learns the URL
only once it listens."""

from __future__ import annotations

import socket
from collections.abc import Callable

import uvicorn
from fastapi import FastAPI

from zdp.errors import ZdpError


def listen(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """A listening TCP socket; port 0 picks a free one. ZdpError in one line if it cannot bind."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        # Listening now queues early connections until uvicorn accepts them.
        sock.listen(backlog)
    except OSError as err:
        sock.close()
        raise ZdpError(f"cannot listen on {host}:{port}: {err.strerror}") from None
    return sock


async def serve(
    app: FastAPI,
    host: str,
    port: int,
    path: str,
    on_ready: Callable[[str], None] | None = None,
    log_level: str = "warning",
) -> None:
    """Serve until SIGINT or SIGTERM; `on_ready` gets the URL of `path` once the socket is
    bound."""
    sock = listen(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    config = uvicorn.Config(app, log_level=log_level, access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    if on_ready is not None:
        on_ready(f"http://{shown}:{bound_port}{path}")
    await server.serve(sockets=[sock])
