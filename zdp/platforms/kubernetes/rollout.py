"""Waiting on Kubernetes by watching, never by tight polling, and always within a bound.

- `await_rollout`: a Deployment until it is available (observedGeneration >= generation, and
  updated == available == total == spec.replicas). It fails at once on the progress deadline
  (Progressing=False, ProgressDeadlineExceeded), a ReplicaFailure, or a pod of the version
  stuck in ImagePullBackOff, CrashLoopBackOff and the like, naming the pod and the container.
  Pods are listed (not watched: the Role grants pods get/list only) at most every
  `pod_check_seconds`, on a Deployment event or when the watch has been quiet that long.
- `await_ready_endpoints`: a Service's EndpointSlices until they list enough ready addresses.
- `await_scaled_down`: a Deployment until it reports 0 replicas.
kmock ignores label selectors, so every list is filtered again here, by labels.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from zdp.errors import PlatformError
from zdp.platforms.kubernetes.api import DEPLOYMENT, ENDPOINT_SLICE, POD, K8sApi
from zdp.platforms.kubernetes.render import SERVICE_NAME_LABEL

# Waiting reasons a pod does not recover from by itself (ErrImagePull is retried by the
# kubelet before it turns into ImagePullBackOff, so it is not one of them).
STUCK_REASONS = frozenset(
    {
        "ImagePullBackOff",
        "ErrImageNeverPull",
        "InvalidImageName",
        "CrashLoopBackOff",
        "CreateContainerConfigError",
    }
)


@dataclass(frozen=True)
class RolloutState:
    available: bool
    detail: str  # "2/3 available, 3/3 updated"
    failure: str | None = None


def rollout_state(deployment: dict[str, Any]) -> RolloutState:
    """How far a Deployment's rollout is, from its spec and status (as `kubectl rollout status`)."""
    wanted = int((deployment.get("spec") or {}).get("replicas", 1))
    status = deployment.get("status") or {}
    generation = int((deployment.get("metadata") or {}).get("generation", 1))
    observed = status.get("observedGeneration")
    updated = int(status.get("updatedReplicas") or 0)
    available = int(status.get("availableReplicas") or 0)
    total = int(status.get("replicas") or 0)
    detail = f"{available}/{wanted} available, {updated}/{wanted} updated"
    if observed is None or int(observed) < generation:
        return RolloutState(False, f"{detail}, generation {generation} not observed yet")
    if updated == available == total == wanted:
        return RolloutState(True, detail)
    failure = None
    for condition in status.get("conditions") or []:
        kind, state, reason = (condition.get(k) for k in ("type", "status", "reason"))
        message = _one_line(condition.get("message", ""))
        if kind == "Progressing" and state == "False" and reason == "ProgressDeadlineExceeded":
            failure = f"the rollout passed its progress deadline ({reason}: {message})"
        elif kind == "ReplicaFailure" and state == "True":
            failure = f"ReplicaFailure {reason}: {message}"
    return RolloutState(False, detail, failure)


def pod_problem(pod: dict[str, Any]) -> str | None:
    """`pod P container C is in ImagePullBackOff (message)`, or None if no container is stuck."""
    status = pod.get("status") or {}
    name = (pod.get("metadata") or {}).get("name", "?")
    for container in [
        *(status.get("initContainerStatuses") or []),
        *(status.get("containerStatuses") or []),
    ]:
        waiting = (container.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason")
        if reason not in STUCK_REASONS:
            continue
        notes = [_one_line(waiting.get("message", ""))]
        exit_code = ((container.get("lastState") or {}).get("terminated") or {}).get("exitCode")
        if exit_code is not None:
            notes.append(f"last exit code {exit_code}")
        said = "; ".join(note for note in notes if note)
        problem = f"pod {name} container {container.get('name', '?')} is in {reason}"
        return f"{problem} ({said})" if said else problem
    return None


def has_labels(item: dict[str, Any], labels: dict[str, str]) -> bool:
    found = (item.get("metadata") or {}).get("labels") or {}
    return all(found.get(key) == value for key, value in labels.items())


def selector(labels: dict[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in labels.items())


async def pod_problems(api: K8sApi, labels: dict[str, str]) -> str | None:
    """The first stuck container among the pods with `labels` (filtered here too)."""
    for pod in await api.list(POD, label_selector=selector(labels)):
        if has_labels(pod, labels) and (problem := pod_problem(pod)) is not None:
            return problem
    return None


async def await_rollout(
    api: K8sApi, name: str, labels: dict[str, str], timeout: float, pod_check_seconds: float
) -> dict[str, Any]:
    """The Deployment once available; PlatformError if it fails or the bound passes."""
    deadline = time.monotonic() + timeout
    state: RolloutState | None = None
    next_pod_check = time.monotonic()
    async with api.watch(DEPLOYMENT, deadline, name=name, idle=pod_check_seconds) as events:
        async for event in events:
            if event["type"] == "DELETED":
                raise PlatformError(f"Deployment {api.namespace}/{name} was deleted meanwhile")
            if event["type"] in ("ADDED", "MODIFIED"):
                state = rollout_state(event["object"])
                if state.available:
                    return dict(event["object"])
                if state.failure:
                    raise PlatformError(state.failure)
            if time.monotonic() >= next_pod_check:
                if (problem := await pod_problems(api, labels)) is not None:
                    raise PlatformError(problem)
                next_pod_check = time.monotonic() + pod_check_seconds
    seen = state.detail if state else "the Deployment never appeared"
    raise PlatformError(f"not available after {timeout:g} s ({seen})")


async def await_ready_endpoints(
    api: K8sApi, service: str, wanted: int, deadline: float
) -> list[str]:
    """The Service's ready endpoints once there are `wanted` of them; PlatformError at the bound."""
    slices: dict[str, dict[str, Any]] = {}
    endpoints: list[str] = []
    if wanted <= 0:
        return endpoints
    labels = {SERVICE_NAME_LABEL: service}
    async with api.watch(ENDPOINT_SLICE, deadline, label_selector=selector(labels)) as events:
        async for event in events:
            item = event.get("object") or {}
            if not has_labels(item, labels):
                continue
            key = (item.get("metadata") or {}).get("name", "")
            if event["type"] == "DELETED":
                slices.pop(key, None)
            elif event["type"] in ("ADDED", "MODIFIED"):
                slices[key] = item
            endpoints = ready_endpoints(slices.values())
            if len(endpoints) >= wanted:
                return endpoints
    raise PlatformError(
        f"Service {api.namespace}/{service} lists {len(endpoints)} of {wanted} ready endpoints "
        "after the rollout; check its selector and the pods' readiness"
    )


async def await_scaled_down(api: K8sApi, name: str, timeout: float) -> bool:
    """Whether the Deployment reported 0 replicas (or went away) within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    async with api.watch(DEPLOYMENT, deadline, name=name) as events:
        async for event in events:
            if event["type"] == "DELETED":
                return True
            item = event.get("object") or {}
            status = item.get("status") or {}
            spec_zero = int((item.get("spec") or {}).get("replicas", 1)) == 0
            if spec_zero and not int(status.get("replicas") or 0):
                return True
    return False


def ready_endpoints(slices: Any) -> list[str]:
    """`http://<address>:<port>` of every ready endpoint (a missing `ready` counts as ready,
    as the EndpointSlice API defines), on the slice port named http, else its first port."""
    found: set[str] = set()
    for item in slices:
        ports = [p for p in item.get("ports") or [] if p.get("port")]
        if not ports:
            continue
        port = next((p for p in ports if p.get("name") == "http"), ports[0])["port"]
        ipv6 = item.get("addressType") == "IPv6"
        for endpoint in item.get("endpoints") or []:
            if (endpoint.get("conditions") or {}).get("ready") is False:
                continue
            for address in endpoint.get("addresses") or []:
                host = f"[{address}]" if ipv6 else address
                found.add(f"http://{host}:{port}")
    return sorted(found)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())[:240]
