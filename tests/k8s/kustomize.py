"""A small, strict renderer for the kustomizations in k8s/ (kustomize itself is not installed).

It implements only what k8s/ uses, with kustomize's semantics for it, and refuses anything
else, so a kustomization that grows a feature this cannot render fails the test instead of
rendering wrongly:
- `resources`: files and folders with their own kustomization.yaml (rendered first);
- `patches` with `path`: strategic-merge patches found by kind and name; maps merge, lists of
  named items (containers, env, volumes, volumeMounts, ports) merge by name, other lists are
  replaced, as kubectl's strategic merge does for those fields;
- `namespace`: set on every object, and on RoleBinding subjects that are ServiceAccounts in
  "default" (kustomize's default `setRoleBindingSubjects: defaultOnly`);
- `labels` with `includeSelectors: false`: added to metadata.labels only;
- `images` with `name` and `newName` / `newTag` / `digest`.
Transformers run in kustomize's order: patches, namespace, labels, images.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

SUPPORTED = {"apiVersion", "kind", "resources", "patches", "namespace", "labels", "images"}
MERGE_BY_NAME = {"containers", "initContainers", "env", "volumes", "volumeMounts", "ports"}


class Unsupported(Exception):
    """The kustomization uses something this renderer does not implement."""


def render(folder: Path) -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    unknown = set(kustomization) - SUPPORTED
    if unknown:
        raise Unsupported(f"{folder}: {', '.join(sorted(unknown))} not supported")
    objects: list[dict[str, Any]] = []
    for entry in kustomization.get("resources") or []:
        path = (folder / entry).resolve()
        if path.is_dir():
            objects += render(path)
        else:
            objects += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    for patch in kustomization.get("patches") or []:
        if set(patch) != {"path"}:
            raise Unsupported(f"{folder}: only patches with a path are supported: {patch}")
        for document in yaml.safe_load_all((folder / patch["path"]).read_text()):
            _patch(objects, document)
    if "namespace" in kustomization:
        _set_namespace(objects, kustomization["namespace"])
    for labels in kustomization.get("labels") or []:
        if labels.get("includeSelectors", False) or labels.get("includeTemplates", False):
            raise Unsupported(f"{folder}: labels reach only metadata.labels here")
        for item in objects:
            item.setdefault("metadata", {}).setdefault("labels", {}).update(labels["pairs"])
    for image in kustomization.get("images") or []:
        _set_image(objects, image)
    return objects


def strategic_merge(base: Any, patch: Any, key: str = "") -> Any:
    if isinstance(base, dict) and isinstance(patch, dict):
        if any(k.startswith("$") for k in patch):
            raise Unsupported(f"patch directives are not supported: {sorted(patch)}")
        merged = dict(base)
        for name, value in patch.items():
            merged[name] = strategic_merge(base.get(name), value, name) if name in base else value
        return merged
    if isinstance(base, list) and isinstance(patch, list) and key in MERGE_BY_NAME:
        merged_list = list(base)
        index = {item.get("name", item.get("containerPort")): i for i, item in enumerate(base)}
        for item in patch:
            name = item.get("name", item.get("containerPort"))
            if name in index:
                merged_list[index[name]] = strategic_merge(base[index[name]], item)
            else:
                merged_list.append(item)
        return merged_list
    return copy.deepcopy(patch)


def _patch(objects: list[dict[str, Any]], patch: dict[str, Any]) -> None:
    name = patch["metadata"]["name"]
    targets = [
        i for i, item in enumerate(objects)
        if item["kind"] == patch["kind"] and item["metadata"]["name"] == name
    ]  # fmt: skip
    if len(targets) != 1:
        raise Unsupported(f"patch of {patch['kind']} {name} matches {len(targets)} objects")
    objects[targets[0]] = strategic_merge(objects[targets[0]], patch)


def _set_namespace(objects: list[dict[str, Any]], namespace: str) -> None:
    for item in objects:
        item["metadata"]["namespace"] = namespace
        for subject in item.get("subjects") or []:
            if subject.get("kind") == "ServiceAccount" and subject.get("namespace") == "default":
                subject["namespace"] = namespace


def _set_image(objects: list[dict[str, Any]], image: dict[str, str]) -> None:
    if set(image) - {"name", "newName", "newTag", "digest"}:
        raise Unsupported(f"image transformer fields: {sorted(image)}")
    for item in objects:
        pod = item.get("spec", {}).get("template", {}).get("spec", {})
        for container in [*pod.get("containers", []), *pod.get("initContainers", [])]:
            name = _image_name(container["image"])
            if name != image["name"]:
                continue
            new = image.get("newName", name)
            if "digest" in image:
                container["image"] = f"{new}@{image['digest']}"
            elif "newTag" in image:
                container["image"] = f"{new}:{image['newTag']}"
            else:
                container["image"] = new + container["image"][len(name) :]


def _image_name(reference: str) -> str:
    """The repository part of an image reference (without :tag or @digest)."""
    name = reference.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    return name[:colon] if colon > slash else name
