"""The `kubernetes` Runtime: one Deployment and one Service per app version, named by its slot.

A version in slot S of app A is Deployment `A-S` (rendered from the app's own template, see
`zdp.platforms.kubernetes.render`) and Service `A-S`, the router's backend for that slot. Both are
written by server-side apply (field manager `zdp`, force=false), so provisioning again what
already runs changes nothing. `provision` returns once the rollout is available and the Service
lists the ready pods; a rollout that fails (progress deadline, ImagePullBackOff, CrashLoopBackOff,
a ReplicaFailure) or does not finish within ZDP_K8S_READY_TIMEOUT is removed again and reported
in one line naming the pod and container.

Retire contract: the caller (the workflow) has already set the slot's traffic weight to 0; the
runtime trusts that order and does not check the route. `retire` scales the Deployment to 0,
waits (at most ZDP_K8S_DRAIN_TIMEOUT) until it reports no replicas, then deletes it and its
Service. Pods drain on their own terminationGracePeriodSeconds. Objects without zdp's
annotation are never touched: a name clash is an error, not a takeover.

`endpoints` reads the Service's EndpointSlices (ready addresses only) and caches the answer
for `endpoints_ttl` seconds: the health gate asks many times a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from zdp.errors import PlatformError
from zdp.models import Deployed, ReleaseManifest
from zdp.platforms.kubernetes.api import DEPLOYMENT, ENDPOINT_SLICE, SERVICE, K8sApi
from zdp.platforms.kubernetes.config import K8sSettings
from zdp.platforms.kubernetes.render import (
    ANNOTATION_CONFIG,
    ANNOTATION_DIGEST,
    ANNOTATION_VERSION,
    MANAGED_BY,
    SERVICE_NAME_LABEL,
    load_deployment_template,
    pinned_image,
    render_deployment,
    render_service,
    slot_labels,
    slot_name,
)
from zdp.platforms.kubernetes.rollout import (
    await_ready_endpoints,
    await_rollout,
    await_scaled_down,
    has_labels,
    ready_endpoints,
    selector,
)


class KubernetesRuntime:
    """Runtime over one namespace of one cluster (see `K8sSettings` for the environment)."""

    def __init__(
        self,
        settings: K8sSettings | None = None,
        api: K8sApi | None = None,
        pod_check_seconds: float = 2.0,
        endpoints_ttl: float = 1.0,
    ) -> None:
        self.settings = settings or K8sSettings.from_settings()
        self.api = api or K8sApi(self.settings)
        self.pod_check_seconds = pod_check_seconds
        self.endpoints_ttl = endpoints_ttl
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._endpoints: dict[tuple[str, str], tuple[float, list[str]]] = {}

    # ------------------------------------------------------------------ the Runtime protocol

    async def provision(
        self, release: ReleaseManifest, slot: str, app_env: str | None = None
    ) -> Deployed:
        pinned_image(release)  # a tag-only image is refused before anything else happens
        name = slot_name(release.app, slot)
        folder = self.settings.templates_dir()
        template = await asyncio.to_thread(load_deployment_template, release.app, folder)
        namespace = self.settings.namespace
        deployment = render_deployment(template, release, slot, namespace, app_env)
        service = render_service(deployment, release, slot, namespace, self.settings.service_port)
        describe = f"{release.app} {release.version} in slot {slot}"
        async with self._slot_lock(release.app, slot):
            self._endpoints.pop((release.app, slot), None)
            await self._refuse_other_version(name, release, slot)
            deadline = time.monotonic() + self.settings.ready_timeout
            try:
                await self.api.apply(SERVICE, name, service)
                await self.api.apply(DEPLOYMENT, name, deployment)
                labels = slot_labels(release.app, slot, release.version)
                await await_rollout(
                    self.api, name, labels, self.settings.ready_timeout, self.pod_check_seconds
                )
                wanted = int(deployment.get("spec", {}).get("replicas", 1))
                endpoints = await await_ready_endpoints(self.api, name, wanted, deadline)
            except PlatformError as err:
                removed = await self._remove_quietly(name)
                raise PlatformError(f"{describe}: {err}; {removed}") from None
        return Deployed(app=release.app, slot=slot, version=release.version, endpoints=endpoints)

    async def retire(self, app: str, slot: str) -> None:
        """Scale to 0, wait for it, delete; the caller has already set the slot's weight to 0."""
        name = slot_name(app, slot)
        async with self._slot_lock(app, slot):
            self._endpoints.pop((app, slot), None)
            deployment = await self.api.read(DEPLOYMENT, name)
            if deployment is not None:
                self._require_ours(deployment, "Deployment", name)
                if int((deployment.get("spec") or {}).get("replicas", 1)) != 0:
                    await self.api.scale(DEPLOYMENT, name, 0)
                # Past the bound the pods still terminate on their own: delete regardless.
                await await_scaled_down(self.api, name, self.settings.drain_timeout)
                await self.api.delete(DEPLOYMENT, name)
            service = await self.api.read(SERVICE, name)
            if service is not None:
                self._require_ours(service, "Service", name)
                await self.api.delete(SERVICE, name)

    async def endpoints(self, app: str, slot: str) -> list[str]:
        """Ready pod addresses of the slot's Service, `http://<address>:<port>`."""
        key = (app, slot)
        cached = self._endpoints.get(key)
        if cached is not None and time.monotonic() - cached[0] < self.endpoints_ttl:
            return list(cached[1])
        name = slot_name(app, slot)
        labels = {SERVICE_NAME_LABEL: name}
        slices = await self.api.list(ENDPOINT_SLICE, label_selector=selector(labels))
        found = ready_endpoints(s for s in slices if has_labels(s, labels))
        self._endpoints[key] = (time.monotonic(), found)
        return list(found)

    async def deployed(self, app: str, slot: str) -> Deployed | None:
        """The version the slot's Deployment runs (from zdp's annotation), or None."""
        deployment = await self.api.read(DEPLOYMENT, slot_name(app, slot))
        if deployment is None:
            return None
        annotations = (deployment.get("metadata") or {}).get("annotations") or {}
        version = annotations.get(ANNOTATION_VERSION)
        if version is None:
            return None  # not ours
        return Deployed(
            app=app,
            slot=slot,
            version=version,
            endpoints=await self.endpoints(app, slot),
            config=_config_annotation(annotations.get(ANNOTATION_CONFIG)),
        )

    async def aclose(self) -> None:
        await self.api.aclose()

    # ------------------------------------------------------------------ helpers

    async def _refuse_other_version(self, name: str, release: ReleaseManifest, slot: str) -> None:
        """Provisioning again what runs is fine; another version or build in the slot is not."""
        current = await self.api.read(DEPLOYMENT, name)
        if current is None:
            return
        annotations = self._require_ours(current, "Deployment", name)
        version, digest = annotations[ANNOTATION_VERSION], annotations.get(ANNOTATION_DIGEST)
        if version != release.version:
            raise PlatformError(
                f"slot {slot} of {release.app} runs {version}; retire it before provisioning "
                f"{release.version}"
            )
        if digest != release.artifact.digest:
            raise PlatformError(
                f"slot {slot} of {release.app} runs {version} built from {digest}, not "
                f"{release.artifact.digest}; retire it before provisioning this build"
            )

    def _require_ours(self, item: dict[str, Any], kind: str, name: str) -> dict[str, str]:
        metadata = item.get("metadata") or {}
        annotations: dict[str, str] = metadata.get("annotations") or {}
        labels = metadata.get("labels") or {}
        if ANNOTATION_VERSION not in annotations or not MANAGED_BY.items() <= labels.items():
            raise PlatformError(
                f"{kind} {self.settings.namespace}/{name} exists but zdp did not make it (no "
                f"{ANNOTATION_VERSION} annotation); rename or remove it, zdp leaves it alone"
            )
        return annotations

    async def _remove_quietly(self, name: str) -> str:
        """Best-effort removal after a failed provision; says what happened, never raises."""
        try:
            await self.api.delete(DEPLOYMENT, name)
            await self.api.delete(SERVICE, name)
        except PlatformError as err:
            return f"could not remove Deployment and Service {name}: {err}"
        return f"removed Deployment and Service {self.settings.namespace}/{name}"

    @contextlib.asynccontextmanager
    async def _slot_lock(self, app: str, slot: str) -> AsyncIterator[None]:
        """One provision or retire per slot at a time in this worker (the workflow id makes
        one deployment per app and environment; this guards retried activities)."""
        lock = self._locks.setdefault((app, slot), asyncio.Lock())
        async with lock:
            yield


def _config_annotation(text: str | None) -> dict[str, str] | None:
    """The config overrides recorded on a Deployment; None when absent or unreadable."""
    if text is None:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    return {str(k): str(v) for k, v in data.items()}
