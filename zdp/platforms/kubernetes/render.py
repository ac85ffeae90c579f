"""An app version as Kubernetes objects: its Deployment, rendered from the app's own template,
and the per-slot Service the router sends traffic to.

The template is the one Deployment document in `apps/<app>/k8s/*.yaml` (or `<dir>/<app>.yaml`
under ZDP_K8S_TEMPLATES, the layout a ConfigMap mount gives). Whatever it says is kept, except:
- name `<app>-<slot>`, the namespace, and labels `app`, `zdp.io/version`, `zdp.io/slot` on the
  Deployment and its pods; the selector is exactly those three labels, so a Deployment never
  claims the pods of another version or slot;
- the app's container (named like the app, else the first) runs the release's image, pinned
  by digest, with env APP_<KEY> for each config override, APP_VERSION and APP_SLOT;
- annotations `zdp.io/version` and `zdp.io/digest` record exactly what runs (a label value
  cannot hold every version string).
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import yaml

from zdp.errors import ConfigError, PlatformError, ReleaseError
from zdp.models import ReleaseManifest
from zdp.platforms.base import SLOTS, release_environment

LABEL_APP = "app"
LABEL_VERSION = "zdp.io/version"
LABEL_SLOT = "zdp.io/slot"
ANNOTATION_VERSION = "zdp.io/version"
ANNOTATION_DIGEST = "zdp.io/digest"
# The release's config overrides (JSON): what the next release's changes are diffed against.
ANNOTATION_CONFIG = "zdp.io/config"
MANAGED_BY = {"app.kubernetes.io/managed-by": "zdp"}
SERVICE_NAME_LABEL = "kubernetes.io/service-name"  # set on EndpointSlices by Kubernetes

_LABEL_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


class ImageNotPinnedError(PlatformError, ReleaseError):
    """The release's image is not pinned by its digest; retrying cannot fix that."""


def slot_name(app: str, slot: str) -> str:
    """`<app>-<slot>`: the name of the slot's Deployment and Service."""
    if slot not in SLOTS:
        raise ConfigError(f"unknown slot '{slot}': use one of {', '.join(SLOTS)}")
    name = f"{app}-{slot}"
    if not _DNS_LABEL.match(name):
        raise ConfigError(f"'{name}' is not a valid Service name: keep app names under 56 chars")
    return name


def label_value(text: str) -> str:
    """`text` as a label value: [A-Za-z0-9._-], at most 63, alphanumeric at both ends."""
    value = _LABEL_UNSAFE.sub("_", text)[:63].strip("._-")
    return value or "unknown"


def slot_labels(app: str, slot: str, version: str) -> dict[str, str]:
    return {LABEL_APP: app, LABEL_SLOT: slot, LABEL_VERSION: label_value(version)}


def pinned_image(release: ReleaseManifest) -> str:
    """The image reference, refused unless it is an OCI image pinned by the release digest."""
    artifact = release.artifact
    where = f"{release.app} {release.version}"
    if artifact.kind != "oci-image":
        raise ImageNotPinnedError(
            f"{where} is a {artifact.kind} release: the kubernetes runtime runs OCI images "
            "pinned by digest; release an oci-image"
        )
    _, at, digest = artifact.reference.rpartition("@")
    if not at:
        raise ImageNotPinnedError(
            f"{where}: image {artifact.reference} is referenced by tag only; pin it by digest "
            f"as <repository>@{artifact.digest}"
        )
    if digest != artifact.digest:
        raise ImageNotPinnedError(
            f"{where}: image {artifact.reference} is pinned to {digest}, not to the release "
            f"digest {artifact.digest}; sign a release whose reference carries its digest"
        )
    return artifact.reference


def load_deployment_template(app: str, folder: Path) -> dict[str, Any]:
    """The one Deployment among the app's manifests (ConfigError if none or several)."""
    k8s_dir = folder / app / "k8s"
    files = sorted([*k8s_dir.glob("*.yaml"), *k8s_dir.glob("*.yml")])
    flat = folder / f"{app}.yaml"
    if flat.is_file():
        files.append(flat)
    found: list[tuple[Path, dict[str, Any]]] = []
    for path in files:
        try:
            documents = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
        except (OSError, yaml.YAMLError) as err:
            raise ConfigError(f"{path}: cannot read the manifest: {_one_line(err)}") from None
        found += [
            (path, doc)
            for doc in documents
            if isinstance(doc, dict) and doc.get("kind") == "Deployment"
        ]
    if not found:
        raise ConfigError(
            f"no Deployment template for {app}: looked in {k8s_dir}/*.yaml and {flat} "
            "(set ZDP_K8S_TEMPLATES to the folder that holds them)"
        )
    if len(found) > 1:
        where = ", ".join(str(path) for path, _ in found)
        raise ConfigError(f"{app} has {len(found)} Deployment templates ({where}); keep one")
    return found[0][1]


def render_deployment(
    template: dict[str, Any],
    release: ReleaseManifest,
    slot: str,
    namespace: str,
    app_env: str | None = None,
) -> dict[str, Any]:
    """The Deployment of `release` in `slot`, as zdp applies it."""
    image = pinned_image(release)
    app, version = release.app, release.version
    labels = slot_labels(app, slot, version)
    deployment = copy.deepcopy(template)
    metadata = deployment.get("metadata") or {}
    deployment["apiVersion"] = "apps/v1"
    deployment["kind"] = "Deployment"
    deployment["metadata"] = {
        "name": slot_name(app, slot),
        "namespace": namespace,
        "labels": {**(metadata.get("labels") or {}), **labels, **MANAGED_BY},
        "annotations": {
            **(metadata.get("annotations") or {}),
            ANNOTATION_VERSION: version,
            ANNOTATION_DIGEST: release.artifact.digest,
            ANNOTATION_CONFIG: json.dumps(release.config_overrides, sort_keys=True),
        },
    }
    deployment.pop("status", None)
    spec = deployment.setdefault("spec", {})
    spec["selector"] = {"matchLabels": dict(labels)}
    pod = spec.setdefault("template", {})
    pod_metadata = pod.setdefault("metadata", {})
    pod_metadata["labels"] = {**(pod_metadata.get("labels") or {}), **labels}
    container = app_container(deployment, app)
    container["image"] = image
    ours = _environment(release, slot, app_env)
    kept = [e for e in container.get("env") or [] if e.get("name") not in ours]
    container["env"] = kept + [{"name": key, "value": value} for key, value in ours.items()]
    return deployment


def render_service(
    deployment: dict[str, Any], release: ReleaseManifest, slot: str, namespace: str, port: int
) -> dict[str, Any]:
    """The slot's Service: it selects the pods of this version in this slot, on `port`."""
    app = release.app
    container = app_container(deployment, app)
    ports = container.get("ports") or []
    if not ports:
        raise ConfigError(f"the Deployment template of {app} gives its container no ports")
    target = ports[0].get("name") or ports[0].get("containerPort")
    labels = slot_labels(app, slot, release.version)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": slot_name(app, slot),
            "namespace": namespace,
            "labels": {**labels, **MANAGED_BY},
            "annotations": {ANNOTATION_VERSION: release.version},
        },
        "spec": {
            "type": "ClusterIP",
            "selector": labels,
            "ports": [{"name": "http", "port": port, "targetPort": target, "protocol": "TCP"}],
        },
    }


def app_container(deployment: dict[str, Any], app: str) -> dict[str, Any]:
    """The container named like the app, else the first one."""
    containers = (
        deployment.get("spec", {}).get("template", {}).get("spec", {}).get("containers") or []
    )
    if not containers:
        raise ConfigError(f"the Deployment template of {app} has no containers")
    chosen: dict[str, Any] = next((c for c in containers if c.get("name") == app), containers[0])
    return chosen


def _environment(release: ReleaseManifest, slot: str, app_env: str | None) -> dict[str, str]:
    env = release_environment(release, slot, app_env)
    if app_env is None:  # the template's APP_ENV (its overlay's environment) stands
        del env["APP_ENV"]
    return env


def _one_line(err: Exception) -> str:
    return " ".join(str(err).split())[:200]
