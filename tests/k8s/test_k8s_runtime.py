"""The kubernetes Runtime against kmock's emulator: the API calls it makes and what they leave.

The emulator has no controllers, so the test plays them: it patches the Deployment's status
while `provision` waits, creates pods and EndpointSlices, and reports a scale-down.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace

import pytest

from tests.k8s.cluster import (
    APPLY,
    IMAGE,
    NAMESPACE,
    Call,
    Cluster,
    digest_of,
    oci_release,
    provision_ready,
)
from zdp.errors import ConfigError, PlatformError, ReleaseError
from zdp.models import Deployed
from zdp.platforms.kubernetes.config import K8sSettings
from zdp.platforms.kubernetes.runtime import KubernetesRuntime

DEPLOYMENTS = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments"
SERVICES = f"/api/v1/namespaces/{NAMESPACE}/services"
PODS = f"/api/v1/namespaces/{NAMESPACE}/pods"
SLICES = f"/apis/discovery.k8s.io/v1/namespaces/{NAMESPACE}/endpointslices"
CANARY_LABELS = {"app": "webshop", "zdp.io/slot": "canary", "zdp.io/version": "2.0.0"}


def summary(calls: list[Call]) -> list[tuple[str, str]]:
    """(method, path) with watches marked, the shape the assertions compare."""
    return [(c.method + (" watch" if c.watch else ""), c.path) for c in calls]


def one_line(err: BaseException) -> str:
    text = str(err)
    assert "\n" not in text and "Traceback" not in text, text
    return text


# --------------------------------------------------------------------------- provision


async def test_provision_applies_service_and_deployment_then_waits_for_the_rollout(
    cluster: Cluster, runtime: KubernetesRuntime
) -> None:
    release = oci_release("2.0.0", overrides={"feature_x": "on"})
    task = asyncio.create_task(runtime.provision(release, "canary"))
    deployment = await cluster.until_stored("deployments", "webshop-canary")
    await cluster.patch_status("webshop-canary", {"observedGeneration": 1, "replicas": 2})
    await asyncio.sleep(0.2)
    assert not task.done(), "provision returned before the rollout was available"

    await cluster.make_available("webshop-canary")
    await cluster.add_slice(
        "webshop-canary", 8000, [("10.0.0.7", True), ("10.0.0.8", False), ("10.0.0.9", True)]
    )
    deployed = await asyncio.wait_for(task, 5)
    assert deployed == Deployed(
        app="webshop",
        slot="canary",
        version="2.0.0",
        endpoints=["http://10.0.0.7:8000", "http://10.0.0.9:8000"],
    )

    calls = cluster.calls()
    assert summary(calls)[:3] == [
        ("GET", f"{DEPLOYMENTS}/webshop-canary"),  # is the slot free? (404)
        ("PATCH", f"{SERVICES}/webshop-canary"),
        ("PATCH", f"{DEPLOYMENTS}/webshop-canary"),
    ]
    for apply in calls[1:3]:
        assert apply.content_type == APPLY
        assert apply.params == {"fieldManager": "zdp", "force": "false"}
    watches = [c for c in calls if c.watch]
    assert watches[0].path == DEPLOYMENTS
    assert watches[0].params["fieldSelector"] == "metadata.name=webshop-canary"
    assert watches[-1].path == SLICES
    assert watches[-1].params["labelSelector"] == "kubernetes.io/service-name=webshop-canary"
    assert not [c for c in calls if c.method in ("PUT", "POST", "DELETE")]

    # What was applied: the app's template with the slot's identity and the pinned image.
    metadata = deployment["metadata"]
    assert metadata["name"] == "webshop-canary" and metadata["namespace"] == NAMESPACE
    assert CANARY_LABELS.items() <= metadata["labels"].items()
    assert metadata["annotations"]["zdp.io/digest"] == digest_of("2.0.0")
    spec = deployment["spec"]
    assert spec["selector"] == {"matchLabels": CANARY_LABELS}
    assert CANARY_LABELS.items() <= spec["template"]["metadata"]["labels"].items()
    sidecar, app = spec["template"]["spec"]["containers"]
    assert app["image"] == f"{IMAGE}@{digest_of('2.0.0')}"
    assert sidecar["image"].startswith("registry.example.com/tools/shipper@sha256:")
    assert app["env"] == [
        {"name": "APP_ENV", "value": "production"},
        {"name": "APP_FEATURE_X", "value": "on"},
        {"name": "APP_VERSION", "value": "2.0.0"},
        {"name": "APP_SLOT", "value": "canary"},
    ]
    assert spec["replicas"] == 2 and spec["progressDeadlineSeconds"] == 120
    service = cluster.stored("services", "webshop-canary")
    assert service is not None
    assert service["spec"]["selector"] == CANARY_LABELS
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}
    ]


async def test_provisioning_again_what_runs_changes_nothing(
    cluster: Cluster, runtime: KubernetesRuntime
) -> None:
    first = await provision_ready(cluster, runtime)
    before = (
        cluster.stored("deployments", "webshop-canary"),
        cluster.stored("services", "webshop-canary"),
    )
    mark = cluster.mark()

    again = await asyncio.wait_for(runtime.provision(oci_release("2.0.0"), "canary"), 5)

    assert again == first
    after = (
        cluster.stored("deployments", "webshop-canary"),
        cluster.stored("services", "webshop-canary"),
    )
    assert after == before
    applies = [c for c in cluster.calls(mark) if c.method == "PATCH"]
    assert [c.path for c in applies] == [
        f"{SERVICES}/webshop-canary",
        f"{DEPLOYMENTS}/webshop-canary",
    ]
    assert all(c.content_type == APPLY and c.params["fieldManager"] == "zdp" for c in applies)


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        (f"{IMAGE}:2.0.0", "is referenced by tag only; pin it by digest"),
        (f"{IMAGE}@{digest_of('9.9.9')}", "is pinned to sha256:"),
    ],
)
async def test_image_not_pinned_by_the_release_digest_is_refused_before_any_call(
    cluster: Cluster, runtime: KubernetesRuntime, reference: str, expected: str
) -> None:
    with pytest.raises(PlatformError) as caught:
        await runtime.provision(oci_release("2.0.0", reference=reference), "canary")
    assert expected in one_line(caught.value)
    assert isinstance(caught.value, ReleaseError)  # the activity will not retry it
    assert cluster.calls() == []


async def test_image_pull_backoff_names_the_pod_and_container_and_removes_the_version(
    cluster: Cluster, runtime: KubernetesRuntime
) -> None:
    task = asyncio.create_task(runtime.provision(oci_release("2.0.0"), "canary"))
    await cluster.until_stored("deployments", "webshop-canary")
    # kmock ignores labelSelector: a stuck pod of another version must not be blamed.
    await cluster.add_pod(
        "webshop-canary-old-1",
        {**CANARY_LABELS, "zdp.io/version": "1.0.0"},
        waiting="ErrImageNeverPull",
    )
    await cluster.add_pod(
        "webshop-canary-7d9f-abcde",
        CANARY_LABELS,
        waiting="ImagePullBackOff",
        message='Back-off pulling image "registry.example.com/zdp/webshop@sha256:..."',
    )
    with pytest.raises(PlatformError) as caught:
        await asyncio.wait_for(task, 5)
    message = one_line(caught.value)
    assert message.startswith(
        "webshop 2.0.0 in slot canary: pod webshop-canary-7d9f-abcde container webshop is in "
        "ImagePullBackOff (Back-off pulling image"
    )
    assert message.endswith(f"removed Deployment and Service {NAMESPACE}/webshop-canary")
    assert cluster.stored("deployments", "webshop-canary") is None
    assert cluster.stored("services", "webshop-canary") is None
    pod_lists = [c for c in cluster.calls() if c.path == PODS]
    assert pod_lists and all(
        c.params.get("labelSelector") == "app=webshop,zdp.io/slot=canary,zdp.io/version=2.0.0"
        for c in pod_lists
    )
    deletes = [c for c in cluster.calls() if c.method == "DELETE"]
    assert [(c.path, c.params) for c in deletes] == [
        (f"{DEPLOYMENTS}/webshop-canary", {"propagationPolicy": "Background"}),
        (f"{SERVICES}/webshop-canary", {"propagationPolicy": "Background"}),
    ]


async def test_crash_loop_backoff_names_the_pod_container_and_exit_code(
    cluster: Cluster, runtime: KubernetesRuntime
) -> None:
    task = asyncio.create_task(runtime.provision(oci_release("2.0.0"), "canary"))
    await cluster.until_stored("deployments", "webshop-canary")
    await cluster.patch_status("webshop-canary", {"observedGeneration": 1, "replicas": 2})
    await cluster.add_pod(
        "webshop-canary-7d9f-xyz12",
        CANARY_LABELS,
        waiting="CrashLoopBackOff",
        message="back-off 20s restarting failed container",
        exit_code=3,
    )
    with pytest.raises(PlatformError) as caught:
        await asyncio.wait_for(task, 5)
    assert (
        "pod webshop-canary-7d9f-xyz12 container webshop is in CrashLoopBackOff "
        "(back-off 20s restarting failed container; last exit code 3)" in one_line(caught.value)
    )
    assert cluster.stored("deployments", "webshop-canary") is None


async def test_progress_deadline_exceeded_fails_at_once(
    cluster: Cluster, runtime: KubernetesRuntime
) -> None:
    task = asyncio.create_task(runtime.provision(oci_release("2.0.0"), "canary"))
    await cluster.until_stored("deployments", "webshop-canary")
    await cluster.patch_status(
        "webshop-canary",
        {
            "observedGeneration": 1,
            "replicas": 2,
            "updatedReplicas": 2,
            "availableReplicas": 1,
            "conditions": [
                {
                    "type": "Progressing",
                    "status": "False",
                    "reason": "ProgressDeadlineExceeded",
                    "message": 'ReplicaSet "webshop-canary-7d9f" has timed out progressing.',
                }
            ],
        },
    )
    with pytest.raises(PlatformError) as caught:
        await asyncio.wait_for(task, 5)
    assert one_line(caught.value).startswith(
        "webshop 2.0.0 in slot canary: the rollout passed its progress deadline "
        '(ProgressDeadlineExceeded: ReplicaSet "webshop-canary-7d9f" has timed out progressing.)'
    )
    assert cluster.stored("services", "webshop-canary") is None


async def test_rollout_that_never_finishes_fails_at_the_bound(
    cluster: Cluster, settings: K8sSettings
) -> None:
    quick = KubernetesRuntime(replace(settings, ready_timeout=0.6), pod_check_seconds=0.1)
    task = asyncio.create_task(quick.provision(oci_release("2.0.0"), "canary"))
    await cluster.until_stored("deployments", "webshop-canary")
    await cluster.patch_status(
        "webshop-canary",
        {"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 1},
    )
    with pytest.raises(PlatformError) as caught:
        await asyncio.wait_for(task, 5)
    await quick.aclose()
    assert one_line(caught.value) == (
        "webshop 2.0.0 in slot canary: not available after 0.6 s (1/2 available, 2/2 updated); "
        f"removed Deployment and Service {NAMESPACE}/webshop-canary"
    )


async def test_slot_running_another_version_is_refused_and_left_running(
    cluster: Cluster, runtime: KubernetesRuntime
) -> None:
    await provision_ready(cluster, runtime, "1.0.0", "canary")
    mark = cluster.mark()
    with pytest.raises(PlatformError) as caught:
        await runtime.provision(oci_release("2.0.0"), "canary")
    assert one_line(caught.value) == (
        "slot canary of webshop runs 1.0.0; retire it before provisioning 2.0.0"
    )
    assert [c.method for c in cluster.calls(mark)] == ["GET"]
    assert cluster.stored("deployments", "webshop-canary") is not None


async def test_a_deployment_zdp_did_not_make_is_never_touched(
    cluster: Cluster, runtime: KubernetesRuntime
) -> None:
    await cluster.create(
        "deployments",
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "webshop-stable"}},
    )
    for attempt in (
        runtime.provision(oci_release("2.0.0"), "stable"),
        runtime.retire("webshop", "stable"),
    ):
        with pytest.raises(PlatformError) as caught:
            await attempt
        assert "exists but zdp did not make it" in one_line(caught.value)
    assert [c.method for c in cluster.calls()] == ["GET", "GET"]


async def test_unknown_slot_and_missing_template_are_config_errors(
    cluster: Cluster, runtime: KubernetesRuntime
) -> None:
    with pytest.raises(ConfigError, match="unknown slot 'preview'"):
        await runtime.provision(oci_release("2.0.0"), "preview")
    with pytest.raises(ConfigError, match="no Deployment template for shop"):
        await runtime.provision(oci_release("2.0.0", app="shop"), "canary")
    assert cluster.calls() == []


# --------------------------------------------------------------------------- retire


async def test_retire_scales_to_zero_waits_then_deletes_deployment_and_service(
    cluster: Cluster, runtime: KubernetesRuntime
) -> None:
    await provision_ready(cluster, runtime)
    mark = cluster.mark()
    task = asyncio.create_task(runtime.retire("webshop", "canary"))
    await cluster.until(
        lambda: (
            (cluster.stored("deployments", "webshop-canary") or {}).get("spec", {}).get("replicas")
            == 0
        ),
        what="scaled to 0",
    )
    await asyncio.sleep(0.2)
    assert not task.done(), "retire deleted before the Deployment reported 0 replicas"
    await cluster.patch_status(
        "webshop-canary", {"replicas": 0, "availableReplicas": 0, "updatedReplicas": 0}
    )
    await asyncio.wait_for(task, 5)

    calls = cluster.calls(mark)
    assert summary(calls) == [
        ("GET", f"{DEPLOYMENTS}/webshop-canary"),
        ("PATCH", f"{DEPLOYMENTS}/webshop-canary/scale"),
        ("GET watch", DEPLOYMENTS),
        ("DELETE", f"{DEPLOYMENTS}/webshop-canary"),
        ("GET", f"{SERVICES}/webshop-canary"),
        ("DELETE", f"{SERVICES}/webshop-canary"),
    ]
    scale = calls[1]
    assert scale.content_type == "application/merge-patch+json"
    assert scale.params == {"fieldManager": "zdp"} and scale.body == {"spec": {"replicas": 0}}
    assert cluster.stored("deployments", "webshop-canary") is None
    assert cluster.stored("services", "webshop-canary") is None


async def test_retire_deletes_after_the_drain_bound_if_pods_linger(
    cluster: Cluster, settings: K8sSettings
) -> None:
    quick = KubernetesRuntime(replace(settings, drain_timeout=0.3))
    await provision_ready(cluster, quick)
    await asyncio.wait_for(quick.retire("webshop", "canary"), 5)
    await quick.aclose()
    assert cluster.stored("deployments", "webshop-canary") is None


async def test_retiring_an_empty_slot_is_fine_and_retiring_twice_too(
    cluster: Cluster, runtime: KubernetesRuntime
) -> None:
    await runtime.retire("webshop", "blue")
    assert summary(cluster.calls()) == [
        ("GET", f"{DEPLOYMENTS}/webshop-blue"),
        ("GET", f"{SERVICES}/webshop-blue"),
    ]


# --------------------------------------------------------------------------- reading back


async def test_endpoints_are_the_ready_addresses_of_the_slot_service_only(
    cluster: Cluster, runtime: KubernetesRuntime
) -> None:
    await cluster.add_slice("webshop-canary", 8000, [("10.0.0.1", True), ("10.0.0.2", False)])
    await cluster.add_slice("webshop-canary", 8000, [("10.0.0.3", None)], name="webshop-canary-2")
    await cluster.add_slice("webshop-stable", 8000, [("10.0.9.9", True)])  # another Service
    await cluster.add_slice(
        "webshop-canary", 8000, [("fd00::5", True)], name="webshop-canary-v6", address_type="IPv6"
    )
    found = await runtime.endpoints("webshop", "canary")
    assert found == ["http://10.0.0.1:8000", "http://10.0.0.3:8000", "http://[fd00::5]:8000"]
    (call,) = cluster.calls()
    assert (call.method, call.path) == ("GET", SLICES)
    assert call.params == {"labelSelector": "kubernetes.io/service-name=webshop-canary"}


async def test_endpoints_are_cached_for_the_ttl(cluster: Cluster, settings: K8sSettings) -> None:
    cached = KubernetesRuntime(settings, endpoints_ttl=60.0)
    await cluster.add_slice("webshop-canary", 8000, [("10.0.0.1", True)])
    for _ in range(5):
        assert await cached.endpoints("webshop", "canary") == ["http://10.0.0.1:8000"]
    await cached.aclose()
    assert len(cluster.calls()) == 1


async def test_deployed_reads_the_version_back(
    cluster: Cluster, runtime: KubernetesRuntime
) -> None:
    assert await runtime.deployed("webshop", "canary") is None
    await provision_ready(cluster, runtime, "2.0.0")
    found = await runtime.deployed("webshop", "canary")
    assert found is not None and found.version == "2.0.0"
    assert found.endpoints == ["http://10.0.0.1:8000", "http://10.0.0.2:8000"]


async def test_unreachable_api_server_is_one_clear_line() -> None:
    lost = KubernetesRuntime(K8sSettings(namespace=NAMESPACE, api="http://127.0.0.1:9"))
    with pytest.raises(PlatformError) as caught:
        await lost.deployed("webshop", "canary")
    await lost.aclose()
    assert one_line(caught.value).startswith(
        "cannot reach the Kubernetes API at http://127.0.0.1:9: "
    )


def test_the_registry_builds_the_kubernetes_backends_by_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from workers.platforms import build_probe, build_router, build_runtime
    from zdp.health.http_probe import HttpProbe
    from zdp.platforms.kubernetes.gateway_api import GatewayApiRouter
    from zdp.platforms.kubernetes.istio import IstioRouter

    monkeypatch.setenv("ZDP_K8S_API", "http://127.0.0.1:9")
    monkeypatch.setenv("ZDP_K8S_NAMESPACE", "production")
    runtime = build_runtime("kubernetes")
    assert isinstance(runtime, KubernetesRuntime)
    assert runtime.settings.namespace == "production"
    assert isinstance(build_router("gateway-api"), GatewayApiRouter)
    assert isinstance(build_router("istio"), IstioRouter)
    assert isinstance(build_probe("kubernetes"), HttpProbe)


def test_settings_from_the_environment_are_checked_in_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in [k for k in os.environ if k.startswith("ZDP_K8S_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("ZDP_K8S_GATEWAY", "infra/public")
    monkeypatch.setenv("ZDP_K8S_READY_TIMEOUT", "45")
    settings = K8sSettings.from_settings()
    assert settings.gateway == ("infra", "public") and settings.ready_timeout == 45.0
    assert settings.namespace == "default" and settings.service_port == 80
    monkeypatch.setenv("ZDP_K8S_GATEWAY", "public")
    assert K8sSettings.from_settings().gateway == (None, "public")
    for name, value, message in (
        ("ZDP_K8S_READY_TIMEOUT", "soon", "ZDP_K8S_READY_TIMEOUT: Input should be a valid number"),
        ("ZDP_K8S_SERVICE_PORT", "80000", "ZDP_K8S_SERVICE_PORT: Input should be less than"),
        ("ZDP_K8S_NAMESPACE", "Prod", "ZDP_K8S_NAMESPACE 'Prod' is not a DNS label"),
    ):
        with monkeypatch.context() as bad:
            bad.setenv(name, value)
            with pytest.raises(ConfigError, match=message):
                K8sSettings.from_settings()
