"""k8s/ manifests: valid for Kubernetes 1.33 (strict, offline) and built for a clean drain."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

K8S = Path(__file__).resolve().parents[1] / "k8s"


def documents() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for path in sorted(K8S.glob("*.yaml")):
        found.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    return found


def the(kind: str) -> dict[str, Any]:
    [found] = [doc for doc in documents() if doc["kind"] == kind]
    return found


def container() -> dict[str, Any]:
    [app] = the("Deployment")["spec"]["template"]["spec"]["containers"]
    return app


@pytest.mark.parametrize("doc", documents(), ids=lambda doc: f"{doc['kind']}")
def test_every_document_is_valid_for_kubernetes_1_33(doc: dict[str, Any]) -> None:
    try:
        kubernetes_validate.validate(doc, "1.33", strict=True)
    except kubernetes_validate.ValidationError as error:  # its str() is the whole schema
        pytest.fail(f"{doc['kind']} {doc['metadata']['name']}: {error.message}")


def test_there_is_a_deployment_a_service_and_a_pdb() -> None:
    assert sorted(doc["kind"] for doc in documents()) == [
        "Deployment",
        "PodDisruptionBudget",
        "Service",
    ]


def test_probes_read_the_health_endpoints() -> None:
    app = container()
    assert app["readinessProbe"]["httpGet"]["path"] == "/healthz/ready"
    assert app["livenessProbe"]["httpGet"]["path"] == "/healthz/live"


def test_the_grace_period_outlasts_pre_stop_and_the_drain() -> None:
    app = container()
    pre_stop = app["lifecycle"]["preStop"]
    assert "sleep" in pre_stop or "exec" in pre_stop
    pre_stop_s = pre_stop["sleep"]["seconds"] if "sleep" in pre_stop else 0
    env = {item["name"]: item["value"] for item in app["env"]}
    drain_s = float(env["APP_DRAIN_DELAY_S"]) + float(env["APP_DRAIN_TIMEOUT_S"])
    grace = the("Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert pre_stop_s > 0
    assert grace > pre_stop_s + drain_s


def test_it_runs_as_non_root_with_resources_and_a_pinned_image() -> None:
    pod = the("Deployment")["spec"]["template"]["spec"]
    app = container()
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert app["securityContext"]["allowPrivilegeEscalation"] is False
    assert {"cpu", "memory"} <= app["resources"]["requests"].keys()
    assert {"cpu", "memory"} <= app["resources"]["limits"].keys()
    assert "@sha256:" in app["image"]
    assert not app["image"].split("@")[0].endswith(":latest")


def test_pdb_and_service_select_the_deployments_pods() -> None:
    deployment = the("Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod_labels.items()
    pdb_selector = the("PodDisruptionBudget")["spec"]["selector"]["matchLabels"]
    service_selector = the("Service")["spec"]["selector"]
    assert pdb_selector.items() <= pod_labels.items()
    assert service_selector.items() <= pod_labels.items()
    port = the("Service")["spec"]["ports"][0]["targetPort"]
    assert port in {p["name"] for p in container()["ports"]}


def test_production_keys_come_from_a_mounted_secret() -> None:
    app = container()
    env = {item["name"]: item["value"] for item in app["env"]}
    assert env["APP_ENV"] == "production"
    mount = Path(env["APP_API_KEYS_FILE"]).parent
    [volume_mount] = [m for m in app["volumeMounts"] if Path(m["mountPath"]) == mount]
    volumes = the("Deployment")["spec"]["template"]["spec"]["volumes"]
    [volume] = [v for v in volumes if v["name"] == volume_mount["name"]]
    assert "secret" in volume
