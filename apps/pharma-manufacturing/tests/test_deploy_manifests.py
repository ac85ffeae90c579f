"""docker/Dockerfile and k8s/, checked offline: no Docker daemon or API server runs here.

The Dockerfile is parsed for its stages, user, health check and base tags; every Kubernetes
document is validated against the 1.33 schemas in strict mode (what `kubernetes-validate
--strict` does) and then checked for the properties zero-downtime deploys depend on.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from ops_kit.testing import check_dockerfile_installs_the_kit

APP = Path(__file__).resolve().parents[1]
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", (APP / "docker" / "Dockerfile").read_text())
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, arguments = line.partition(" ")
            out.append((instruction.upper(), " ".join(arguments.split())))
    return out


def manifests() -> list[dict[str, Any]]:
    docs = []
    for path in sorted((APP / "k8s").glob("*.yaml")):
        docs += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


def by_kind(kind: str) -> dict[str, Any]:
    [doc] = [doc for doc in manifests() if doc["kind"] == kind]
    return doc


def test_dockerfile_is_multi_stage_with_pinned_bases() -> None:
    images = [args.split()[0] for instr, args in dockerfile_instructions() if instr == "FROM"]
    assert len(images) > 1
    for image in images:
        tag = image.partition(":")[2]
        assert (tag and tag != "latest") or "@sha256:" in image, f"unpinned base image {image}"
    assert any(
        instr == "COPY" and args.startswith("--from=builder")
        for instr, args in dockerfile_instructions()
    )


def test_the_image_builds_and_installs_the_ops_kit() -> None:
    dockerfile = (APP / "docker" / "Dockerfile").read_text()
    check_dockerfile_installs_the_kit(dockerfile, "pharma-manufacturing")


def test_dockerfile_runs_as_a_non_root_user_with_a_health_check() -> None:
    instructions = dockerfile_instructions()
    final_stage = instructions[max(i for i, (x, _) in enumerate(instructions) if x == "FROM") :]
    users = [args for instr, args in final_stage if instr == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    [healthcheck] = [args for instr, args in final_stage if instr == "HEALTHCHECK"]
    assert "/healthz/live" in healthcheck
    assert any(instr == "VOLUME" and "/data" in args for instr, args in final_stage)
    [command] = [args for instr, args in final_stage if instr == "CMD"]
    assert '"-m", "pharma_manufacturing"' in command


@pytest.mark.parametrize("doc", manifests(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_every_manifest_is_valid_for_kubernetes_1_33(doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, "1.33", strict=True)


def test_deployment_probes_drain_budget_resources_and_security() -> None:
    deployment = by_kind("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz/live"
    port_names = {port["name"] for port in container["ports"]}
    assert container["readinessProbe"]["httpGet"]["port"] in port_names

    pre_stop = container["lifecycle"]["preStop"]
    pre_stop_s = pre_stop["sleep"]["seconds"]
    env = {item["name"]: item for item in container["env"]}
    drain_s = float(env["APP_DRAIN_DELAY_S"]["value"]) + float(env["APP_DRAIN_TIMEOUT_S"]["value"])
    assert pod["terminationGracePeriodSeconds"] > pre_stop_s + drain_s

    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind])
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert env["APP_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"]
    assert env["APP_ENV"]["value"] == "production"
    assert DIGEST.search(container["image"]), "pin the image by digest"
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_service_and_budget_select_the_deployments_pods() -> None:
    deployment = by_kind("Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    service = by_kind("Service")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    [port] = service["spec"]["ports"]
    assert port["targetPort"] in {p["name"] for p in container["ports"]}
    budget = by_kind("PodDisruptionBudget")
    assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert budget["spec"]["maxUnavailable"] < deployment["spec"]["replicas"]
