"""A Kubernetes API for tests: kmock's emulator behind a real HTTP port, and the test's hands.

kmock 0.8 stores objects, merges PATCH bodies (lists replaced whole), serves the status and
scale subresources, watches (ADDED, then live events) and deletes. It has no controllers, no
resourceVersion, no managedFields, ignores label and field selectors and answers PUT with 404.
`ApplyingEmulator` adds the one server-side apply behaviour the runtime relies on and kmock
lacks: an apply of a missing object creates it (kmock answers 404). It also refuses an apply
without fieldManager, as the API server does. Nothing else of SSA (field ownership, conflicts,
removal of fields a manager stops applying) is emulated; docs/kubernetes.md lists the gaps.

`Cluster` is what the test does in place of the controllers: patch a Deployment's status,
create pods and EndpointSlices, seed objects, and read back what the backends wrote and how.
`oci_release` and `provision_ready` are the releases and the provisioning the tests share.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import kmock

from zdp.models import Artifact, Deployed, ReleaseManifest
from zdp.platforms.kubernetes.runtime import KubernetesRuntime

DATA = Path(__file__).parent / "data"
IMAGE = "registry.example.com/zdp/webshop"


def digest_of(version: str) -> str:
    return "sha256:" + (version.encode().hex() * 64)[:64]


def oci_release(
    version: str = "2.0.0",
    app: str = "webshop",
    reference: str | None = None,
    overrides: dict[str, str] | None = None,
) -> ReleaseManifest:
    """A release of an OCI image pinned by digest (unless `reference` says otherwise)."""
    digest = digest_of(version)
    return ReleaseManifest(
        app=app,
        version=version,
        artifact=Artifact(
            kind="oci-image", reference=reference or f"{IMAGE}@{digest}", digest=digest
        ),
        config_overrides=overrides or {},
    )


NAMESPACE = "apps"
RESOURCES = {
    "deployments": "apps/v1/deployments",
    "services": "v1/services",
    "pods": "v1/pods",
    "endpointslices": "discovery.k8s.io/v1/endpointslices",
    "httproutes": "gateway.networking.k8s.io/v1/httproutes",
    "virtualservices": "networking.istio.io/v1/virtualservices",
}
APPLY = "application/apply-patch+yaml"


@attrs.define(kw_only=True)
class ApplyingEmulator(kmock.KubernetesEmulator):
    """kmock's emulator plus create-on-apply; `created_by_apply` lists the objects it created."""

    created_by_apply: list[tuple[str, str]] = attrs.field(factory=list)

    async def _handle(self, request: kmock.Request) -> Any:
        is_apply = (request.headers.get("Content-Type") or "").startswith(APPLY)
        if request.method == "PATCH" and is_apply and request.resource and request.name:
            if not request.params.get("fieldManager"):
                raise kmock.KubernetesError(
                    status=422, reason="Invalid", message="fieldManager is required for apply"
                )
            if not request.subresource:
                await self._create_if_missing(request)
        return await super()._handle(request)

    async def _create_if_missing(self, request: kmock.Request) -> None:
        key = (request.resource, request.namespace, request.name)
        async with self._lock:
            if key in self.objects and not self.objects[key].deleted:
                return
            if key in self.objects:
                self.objects[key].create(request.data)
            else:
                self.objects[key] = request.data
            self.created_by_apply.append((request.resource.plural, request.name))
            raw = self.objects[key].raw
            await self._buses[request.resource].put({"type": "ADDED", "object": raw})


@dataclass(frozen=True)
class Call:
    """One request the API server got: what the assertions look at."""

    method: str
    path: str
    params: dict[str, str]
    content_type: str | None
    body: Any

    @property
    def watch(self) -> bool:
        return self.params.get("watch") == "true"


class Cluster:
    """The emulator, its URL, and the test's hands on it (all through its HTTP API)."""

    def __init__(self, emulator: ApplyingEmulator, server: kmock.Server) -> None:
        self.emulator = emulator
        self.server = server
        self.url = str(server.url).rstrip("/")
        self._session = aiohttp.ClientSession()

    async def aclose(self) -> None:
        await self._session.close()

    # ------------------------------------------------------------------ reading back

    def calls(self, since: int = 0) -> list[Call]:
        """Requests from the backends (not the test's own, which carry X-Test)."""
        found = []
        for request in list(self.emulator)[since:]:
            if request.headers.get("X-Test"):
                continue
            found.append(
                Call(
                    method=str(request.method.value),
                    path=request.url.path,
                    params=dict(request.params),
                    content_type=request.headers.get("Content-Type"),
                    body=request.data,
                )
            )
        return found

    def mark(self) -> int:
        return len(self.emulator)

    def stored(self, resource: str, name: str) -> dict[str, Any] | None:
        key = (kmock.resource(RESOURCES[resource]), NAMESPACE, name)
        if key not in self.emulator.objects or self.emulator.objects[key].deleted:
            return None
        return dict(self.emulator.objects[key].raw)

    async def until_stored(self, resource: str, name: str, timeout: float = 5.0) -> dict[str, Any]:
        """Wait (bounded) until the backends have written the object."""
        return await self.until(lambda: self.stored(resource, name), timeout, f"{resource}/{name}")

    async def until(
        self, condition: Callable[[], Any], timeout: float = 5.0, what: str = "condition"
    ) -> Any:
        deadline = time.monotonic() + timeout
        while not (value := condition()):
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} not reached within {timeout} s")
            await asyncio.sleep(0.02)
        return value

    # ------------------------------------------------------------------ acting as the cluster

    async def request(
        self, method: str, path: str, body: Any = None, missing_ok: bool = False
    ) -> dict[str, Any]:
        headers = {"X-Test": "1", "Content-Type": "application/merge-patch+json"}
        data = json.dumps(body) if body is not None else None
        async with self._session.request(
            method, self.url + path, data=data, headers=headers
        ) as answer:
            text = await answer.text()
            if answer.status == 404 and missing_ok:
                return {}
            assert answer.status < 400, f"{method} {path}: {answer.status} {text[:300]}"
            return dict(json.loads(text)) if text else {}

    async def create(self, resource: str, body: dict[str, Any]) -> dict[str, Any]:
        body = {**body, "metadata": {"namespace": NAMESPACE, **body.get("metadata", {})}}
        return await self.request("POST", collection_path(resource), body)

    async def delete(self, resource: str, name: str, missing_ok: bool = False) -> None:
        await self.request("DELETE", f"{collection_path(resource)}/{name}", missing_ok=missing_ok)

    async def patch_status(
        self, name: str, status: dict[str, Any], missing_ok: bool = False
    ) -> None:
        path = f"{collection_path('deployments')}/{name}/status"
        await self.request("PATCH", path, {"status": status}, missing_ok=missing_ok)

    async def make_available(self, name: str, replicas: int | None = None) -> None:
        """What the Deployment controller reports once every replica is updated and ready."""
        deployment = self.stored("deployments", name)
        assert deployment is not None, name
        wanted = replicas if replicas is not None else deployment["spec"].get("replicas", 1)
        generation = deployment.get("metadata", {}).get("generation", 1)
        await self.patch_status(name, available_status(wanted, generation))

    async def add_pod(
        self,
        name: str,
        labels: dict[str, str],
        container: str = "webshop",
        waiting: str | None = None,
        message: str = "",
        exit_code: int | None = None,
    ) -> None:
        status: dict[str, Any] = {"name": container, "ready": False, "restartCount": 0}
        if waiting:
            status["state"] = {"waiting": {"reason": waiting, "message": message}}
        if exit_code is not None:
            status["lastState"] = {"terminated": {"exitCode": exit_code, "reason": "Error"}}
        await self.create(
            "pods",
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "labels": labels},
                "spec": {"containers": [{"name": container, "image": "example"}]},
                "status": {"phase": "Pending", "containerStatuses": [status]},
            },
        )

    async def add_slice(
        self,
        service: str,
        port: int,
        addresses: list[tuple[str, bool | None]],
        name: str | None = None,
        address_type: str = "IPv4",
    ) -> None:
        """An EndpointSlice for `service`, as the EndpointSlice controller writes one."""
        endpoints = []
        for address, ready in addresses:
            conditions = {} if ready is None else {"ready": ready}
            endpoints.append({"addresses": [address], "conditions": conditions})
        await self.create(
            "endpointslices",
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": name or f"{service}-abcde",
                    "labels": {"kubernetes.io/service-name": service},
                },
                "addressType": address_type,
                "endpoints": endpoints,
                "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
            },
        )


def available_status(replicas: int, generation: int = 1) -> dict[str, Any]:
    return {
        "observedGeneration": generation,
        "replicas": replicas,
        "updatedReplicas": replicas,
        "readyReplicas": replicas,
        "availableReplicas": replicas,
        "conditions": [
            {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
            {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"},
        ],
    }


def collection_path(resource: str) -> str:
    group_version = RESOURCES[resource].rsplit("/", 1)[0]
    prefix = "/api" if group_version == "v1" else "/apis"
    return f"{prefix}/{group_version}/namespaces/{NAMESPACE}/{resource}"


async def provision_ready(
    cluster: Cluster, runtime: KubernetesRuntime, version: str = "2.0.0", slot: str = "canary"
) -> Deployed:
    """Provision while playing the controllers: status available, and a slice of ready pods."""
    task = asyncio.create_task(runtime.provision(oci_release(version), slot))
    await cluster.until_stored("deployments", f"webshop-{slot}")
    await cluster.make_available(f"webshop-{slot}")
    await cluster.add_slice(
        f"webshop-{slot}", 8000, [("10.0.0.1", True), ("10.0.0.2", True)], name=f"{slot}-x"
    )
    return await asyncio.wait_for(task, 5)
