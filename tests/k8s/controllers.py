"""The cluster's controllers, played by the test, and the app versions they "run".

kmock has no controllers: nothing would ever make a Deployment available or list its pods in
an EndpointSlice. `Controllers` watches Deployments through the emulator's API and does what
the Deployment and EndpointSlice controllers would:
- a Deployment with replicas > 0: status available, and an EndpointSlice for the slot's
  Service whose one ready endpoint is the REAL loopback HTTP server of that version;
- scaled to 0: status 0 replicas, and the slice removed (its pods are gone);
- deleted: the slice removed.
Each version is a `VersionServer`: one threaded HTTP server per replica, all on the same port
of 127.0.0.1, 127.0.0.2, ... (as pods share a port on their own IPs), answering every GET with
200 (a good version) or 503 (a bad one), so the health gate's probes are real HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import aiohttp

from tests.k8s.cluster import Cluster, available_status, collection_path


class VersionServer:
    """One app version on loopback, in its own threads (not on the test's event loop)."""

    def __init__(self, healthy: bool, replicas: int = 2) -> None:
        handler = _handler(200 if healthy else 503)
        for _ in range(20):  # the port must be free on every replica's address
            first = ThreadingHTTPServer(("127.0.0.1", 0), handler)
            self.port = first.server_address[1]
            self.servers = [first]
            try:
                for n in range(2, replicas + 1):
                    self.servers.append(ThreadingHTTPServer((f"127.0.0.{n}", self.port), handler))
                break
            except OSError:
                for server in self.servers:
                    server.server_close()
        else:
            raise RuntimeError("no port free on every replica address")
        self.addresses = [f"127.0.0.{n}" for n in range(1, replicas + 1)]
        self._threads = []
        for server in self.servers:
            server.daemon_threads = True
            thread = threading.Thread(target=server.serve_forever, daemon=True)
            thread.start()
            self._threads.append(thread)

    def close(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(5)


def _handler(status: int) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out as two writes: with Nagle's algorithm on, each kept-alive
        # answer waited for the client's delayed ACK (about 40 ms), as no real server does.
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            body = json.dumps({"status": "ok" if status == 200 else "unavailable"}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


class Controllers:
    """Plays the Deployment and EndpointSlice controllers until stopped."""

    def __init__(self, cluster: Cluster, versions: dict[str, VersionServer]) -> None:
        self.cluster = cluster
        self.versions = versions
        self._task: asyncio.Task[None] | None = None
        self._slices: set[str] = set()

    async def __aenter__(self) -> Controllers:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        if self._task.done() and not self._task.cancelled() and self._task.exception():
            raise self._task.exception()  # type: ignore[misc]

    async def _run(self) -> None:
        url = f"{self.cluster.url}{collection_path('deployments')}?watch=true"
        async with (
            aiohttp.ClientSession() as session,
            session.get(url, headers={"X-Test": "1"}) as stream,
        ):
            async for line in stream.content:
                if line.strip():
                    await self._react(json.loads(line))

    async def _react(self, event: dict[str, Any]) -> None:
        deployment = event["object"]
        name = deployment["metadata"]["name"]
        version = deployment["metadata"].get("annotations", {}).get("zdp.io/version", "")
        slice_name = f"{name}-{version.replace('.', '-')}"
        if event["type"] == "DELETED":
            await self._drop_slice(slice_name)
            return
        replicas = deployment["spec"].get("replicas", 1)
        status = deployment.get("status") or {}
        if replicas == 0:
            if status.get("replicas"):
                await self.cluster.patch_status(name, available_status(0), missing_ok=True)
            await self._drop_slice(slice_name)
            return
        if status.get("availableReplicas") != replicas:
            await self.cluster.patch_status(name, available_status(replicas), missing_ok=True)
        if slice_name not in self._slices:
            server = self.versions[version]
            pods = [(address, True) for address in server.addresses[:replicas]]
            await self.cluster.add_slice(name, server.port, pods, slice_name)
            self._slices.add(slice_name)

    async def _drop_slice(self, slice_name: str) -> None:
        if slice_name in self._slices:
            self._slices.discard(slice_name)
            await self.cluster.delete("endpointslices", slice_name, missing_ok=True)
