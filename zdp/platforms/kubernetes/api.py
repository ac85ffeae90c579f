"""The Kubernetes API as the backends use it: apply, read, list, delete and watch, as plain dicts.

It wraps the asyncio variant of the official client (`kubernetes.aio`), so nothing blocks the
event loop and a watch ends as soon as its bound passes. Objects travel as the JSON the server
sends (`*_without_preload_content`), not as the client's models, so custom resources and
built-in ones read alike. Writes are server-side apply with field manager `zdp` and force=false:
applying the same object twice changes nothing, and a field another manager owns is a conflict
(HTTP 409), never silently taken over.

Every failure is one PlatformError line naming the object and what the server said.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from kubernetes.aio import client as k8s
from kubernetes.aio import config as k8s_config

from zdp.errors import ConfigError, PlatformError
from zdp.platforms.kubernetes.config import FIELD_MANAGER, K8sSettings

APPLY_PATCH = "application/apply-patch+yaml"
MERGE_PATCH = "application/merge-patch+json"
REQUEST_TIMEOUT = 30.0
# A watch is re-opened after this long even if the stream stays open (real API servers end
# watches at timeoutSeconds; kmock never does), so a quiet stream cannot hang anything.
WATCH_SESSION_SECONDS = 60


@dataclass(frozen=True)
class Kind:
    """A resource: its kind, group/version and plural; `api` and `snake` for typed clients."""

    kind: str
    group: str
    version: str
    plural: str
    api: str | None = None  # the typed client class; None: a custom resource
    snake: str = ""

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


DEPLOYMENT = Kind("Deployment", "apps", "v1", "deployments", "AppsV1Api", "deployment")
SERVICE = Kind("Service", "", "v1", "services", "CoreV1Api", "service")
POD = Kind("Pod", "", "v1", "pods", "CoreV1Api", "pod")
ENDPOINT_SLICE = Kind(
    "EndpointSlice", "discovery.k8s.io", "v1", "endpointslices", "DiscoveryV1Api", "endpoint_slice"
)
HTTP_ROUTE = Kind("HTTPRoute", "gateway.networking.k8s.io", "v1", "httproutes")
VIRTUAL_SERVICE = Kind("VirtualService", "networking.istio.io", "v1", "virtualservices")


class K8sApiError(PlatformError):
    """The API server answered with an error status; `status` is the HTTP code."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class K8sApi:
    """One namespace of one cluster. The HTTP session opens on first use, in the running loop."""

    def __init__(self, settings: K8sSettings) -> None:
        self.settings = settings
        self.namespace = settings.namespace
        self._client: k8s.ApiClient | None = None
        self._host = settings.api or "the cluster"

    # ------------------------------------------------------------------ calls

    async def read(self, kind: Kind, name: str) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        try:
            return await self._call(kind, "read", name, {"name": name})
        except K8sApiError as err:
            if err.status == 404:
                return None
            raise

    async def list(self, kind: Kind, label_selector: str | None = None) -> list[dict[str, Any]]:
        """Objects of `kind` in the namespace. Callers filter labels again: kmock ignores them."""
        args: dict[str, Any] = {"label_selector": label_selector} if label_selector else {}
        found = await self._call(kind, "list", "", args)
        return list(found.get("items") or [])

    async def apply(self, kind: Kind, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply of `body` (the whole intent of zdp for this object)."""
        args = {
            "name": name,
            "body": body,
            "field_manager": FIELD_MANAGER,
            "force": False,
            "_content_type": APPLY_PATCH,
        }
        return await self._call(kind, "patch", name, args, action="apply")

    async def scale(self, kind: Kind, name: str, replicas: int) -> None:
        """Set replicas through the scale subresource (a merge patch; it leaves our apply alone)."""
        api = getattr(k8s, kind.api or "")(await self._api_client())
        call = getattr(api, f"patch_namespaced_{kind.snake}_scale_without_preload_content")
        args = {
            "name": name,
            "namespace": self.namespace,
            "body": {"spec": {"replicas": replicas}},
            "field_manager": FIELD_MANAGER,
            "_content_type": MERGE_PATCH,
        }
        await self._send(
            lambda: call(**args, _request_timeout=REQUEST_TIMEOUT), kind, name, "scale"
        )

    async def delete(self, kind: Kind, name: str) -> bool:
        """Delete in the background (pods go with their Deployment); False if it was not there."""
        try:
            args = {"name": name, "propagation_policy": "Background"}
            await self._call(kind, "delete", name, args)
        except K8sApiError as err:
            if err.status == 404:
                return False
            raise
        return True

    @contextlib.asynccontextmanager
    async def watch(
        self,
        kind: Kind,
        deadline: float,
        name: str | None = None,
        idle: float | None = None,
        label_selector: str | None = None,
    ) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
        """Events ({"type", "object"}) of `kind` until `deadline` (time.monotonic()).

        Each watch session starts with ADDED for what exists (no resourceVersion is sent), so a
        re-opened watch loses nothing a state-based caller needs. Iteration ends at the
        deadline; the caller decides what that means. With `idle`, an {"type": "IDLE"} event
        comes after that many quiet seconds. `name` is filtered here as well as by
        fieldSelector, because kmock ignores selectors; labels are the caller's to filter.
        """
        events = self._events(kind, deadline, name, idle, label_selector)
        try:
            yield events
        finally:
            await events.aclose()  # closes the open stream, if any

    async def aclose(self) -> None:
        api_client, self._client = self._client, None
        if api_client is not None:
            await api_client.close()

    # ------------------------------------------------------------------ internals

    async def _events(
        self,
        kind: Kind,
        deadline: float,
        name: str | None,
        idle: float | None,
        label_selector: str | None,
    ) -> AsyncGenerator[dict[str, Any], None]:
        args: dict[str, Any] = {"watch": True}
        if name is not None:
            args["field_selector"] = f"metadata.name={name}"
        if label_selector is not None:
            args["label_selector"] = label_selector
        while (left := deadline - time.monotonic()) > 0:
            session_end = time.monotonic() + min(left, WATCH_SESSION_SECONDS)
            args["timeout_seconds"] = max(1, round(session_end - time.monotonic()))
            response = await self._open(kind, name or "", args, session_end - time.monotonic())
            buffer = b""
            try:
                while (wait := session_end - time.monotonic()) > 0:
                    # No timeout context spans a yield: the bound is per read.
                    try:
                        chunk = await asyncio.wait_for(
                            response.content.readany(), min(wait, idle or wait)
                        )
                    except TimeoutError:
                        if time.monotonic() >= session_end:
                            break
                        yield {"type": "IDLE"}
                        continue
                    if not chunk:
                        break  # the server ended this session: open the next one
                    *lines, buffer = (buffer + chunk).split(b"\n")
                    for line in filter(None, (raw.strip() for raw in lines)):
                        event = self._event(kind, json.loads(line))
                        found = (event.get("object") or {}).get("metadata", {}).get("name")
                        if name is None or found == name:
                            yield event
            except aiohttp.ClientError:
                await asyncio.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
            finally:
                response.close()

    def _event(self, kind: Kind, event: dict[str, Any]) -> dict[str, Any]:
        if event.get("type") == "ERROR":
            status = event.get("object") or {}
            raise K8sApiError(
                f"watch of {kind.plural} in {self.namespace} failed: {_status_text(status)}",
                int(status.get("code") or 500),
            )
        return event

    async def _open(
        self, kind: Kind, name: str, args: dict[str, Any], timeout: float
    ) -> aiohttp.ClientResponse:
        method = await self._method(kind, "list")
        response = await self._send_raw(
            lambda: method(namespace=self.namespace, **args, _request_timeout=timeout), kind, name
        )
        if response.status >= 400:
            raise await self._error(response, kind, name, "watch")
        return response

    async def _call(
        self, kind: Kind, verb: str, name: str, args: dict[str, Any], action: str | None = None
    ) -> Any:
        method = await self._method(kind, verb)
        return await self._send(
            lambda: method(namespace=self.namespace, **args, _request_timeout=REQUEST_TIMEOUT),
            kind,
            name,
            action or verb,
        )

    async def _method(self, kind: Kind, verb: str) -> Callable[..., Awaitable[Any]]:
        api_client = await self._api_client()
        if kind.api is not None:
            api = getattr(k8s, kind.api)(api_client)
            method = getattr(api, f"{verb}_namespaced_{kind.snake}_without_preload_content")
            return method
        custom = k8s.CustomObjectsApi(api_client)
        verb = "get" if verb == "read" else verb
        method = getattr(custom, f"{verb}_namespaced_custom_object_without_preload_content")

        def call(**kwargs: Any) -> Awaitable[Any]:
            return method(group=kind.group, version=kind.version, plural=kind.plural, **kwargs)

        return call

    async def _send(
        self, request: Callable[[], Awaitable[Any]], kind: Kind, name: str, verb: str
    ) -> Any:
        response = await self._send_raw(request, kind, name)
        try:
            if response.status >= 400:
                raise await self._error(response, kind, name, verb)
            body = await response.read()
        finally:
            response.release()
        return json.loads(body) if body else {}

    async def _send_raw(
        self, request: Callable[[], Awaitable[Any]], kind: Kind, name: str
    ) -> aiohttp.ClientResponse:
        try:
            response: aiohttp.ClientResponse = await request()
        except aiohttp.ClientConnectionError as err:
            raise PlatformError(
                f"cannot reach the Kubernetes API at {self._host}: {_first_line(str(err))}"
            ) from None
        except TimeoutError:
            raise PlatformError(
                f"the Kubernetes API at {self._host} did not answer about {kind.kind} "
                f"{self.namespace}/{name} in time"
            ) from None
        return response

    async def _error(
        self, response: aiohttp.ClientResponse, kind: Kind, name: str, verb: str
    ) -> K8sApiError:
        text = (await response.read()).decode(errors="replace")
        try:
            detail = _status_text(json.loads(text))
        except ValueError:
            detail = _first_line(text) or response.reason or ""
        what = f"{kind.kind} {self.namespace}/{name}" if name else f"{kind.plural}"
        return K8sApiError(
            f"{verb} {what} failed: HTTP {response.status} {detail}".rstrip(), response.status
        )

    async def _api_client(self) -> k8s.ApiClient:
        if self._client is None:
            configuration = k8s.Configuration()
            if self.settings.api:
                configuration.host = self.settings.api.rstrip("/")
            else:
                self._host = await _load_cluster_config(configuration, self.settings.context)
            self._client = k8s.ApiClient(configuration)
        return self._client


async def _load_cluster_config(configuration: k8s.Configuration, context: str | None) -> str:
    """In a pod, the service account; elsewhere, kubeconfig. Returns the server's URL."""
    try:
        k8s_config.load_incluster_config(client_configuration=configuration)
    except k8s_config.ConfigException:
        try:
            await k8s_config.load_kube_config(context=context, client_configuration=configuration)
        except (k8s_config.ConfigException, OSError) as err:
            raise ConfigError(
                "no Kubernetes API configured: not in a pod and no usable kubeconfig "
                f"({_first_line(str(err))}); set KUBECONFIG, or ZDP_K8S_API for a test server"
            ) from None
    return str(configuration.host)


def _status_text(status: dict[str, Any]) -> str:
    """`reason: message` of a Status object, on one line."""
    reason = str(status.get("reason") or "")
    message = _first_line(str(status.get("message") or ""))
    return ": ".join(part for part in (reason, message) if part)[:300]


def _first_line(text: str) -> str:
    return " ".join(text.split())[:300]
