"""Settings of the Kubernetes backends, read from the environment, and the API connection.

ZDP_K8S_NAMESPACE      namespace of the app Deployments, Services and routes ("default")
ZDP_K8S_API            API server URL without auth, e.g. http://127.0.0.1:8080 (tests);
                       unset: in-cluster config in a pod, else kubeconfig ($KUBECONFIG)
ZDP_K8S_CONTEXT        kubeconfig context (default: the current one)
ZDP_K8S_ROUTES         route name per app, "app=route,app2=route2" (default: the app name)
ZDP_K8S_GATEWAY        "[namespace/]name" of the Gateway an HTTPRoute attaches to; set it
                       and zdp creates missing routes, unset it and routes must exist
ZDP_K8S_SERVICE_PORT   port of the per-slot Services (80)
ZDP_K8S_TEMPLATES      folder of app templates: <dir>/<app>/k8s/*.yaml or <dir>/<app>.yaml
                       (default: apps/ of the repository, found up from the working dir)
ZDP_K8S_READY_TIMEOUT  seconds provision waits for a rollout to be available (300)
ZDP_K8S_DRAIN_TIMEOUT  seconds retire waits for the pods to go after scaling to 0 (90)
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from zdp.config import REPO_ROOT
from zdp.errors import ConfigError

FIELD_MANAGER = "zdp"
_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


@dataclass(frozen=True)
class K8sSettings:
    """Where the Kubernetes backends act, and how long they wait."""

    namespace: str = "default"
    api: str | None = None
    context: str | None = None
    routes: Mapping[str, str] = field(default_factory=dict)
    gateway: tuple[str | None, str] | None = None  # (namespace or None, name)
    service_port: int = 80
    templates: Path | None = None
    ready_timeout: float = 300.0
    drain_timeout: float = 90.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> K8sSettings:
        env = os.environ if env is None else env
        namespace = env.get("ZDP_K8S_NAMESPACE", "").strip() or "default"
        _require_dns_label(namespace, "ZDP_K8S_NAMESPACE")
        templates = env.get("ZDP_K8S_TEMPLATES", "").strip()
        return cls(
            namespace=namespace,
            api=env.get("ZDP_K8S_API", "").strip() or None,
            context=env.get("ZDP_K8S_CONTEXT", "").strip() or None,
            routes=_parse_routes(env.get("ZDP_K8S_ROUTES", "")),
            gateway=_parse_gateway(env.get("ZDP_K8S_GATEWAY", "")),
            service_port=_port(env, "ZDP_K8S_SERVICE_PORT", 80),
            templates=Path(templates) if templates else None,
            ready_timeout=_seconds(env, "ZDP_K8S_READY_TIMEOUT", 300.0),
            drain_timeout=_seconds(env, "ZDP_K8S_DRAIN_TIMEOUT", 90.0),
        )

    def route_name(self, app: str) -> str:
        return self.routes.get(app, app)

    def templates_dir(self) -> Path:
        """ZDP_K8S_TEMPLATES, else apps/ up from the working directory, else the repository's."""
        if self.templates is not None:
            return self.templates
        cwd = Path.cwd().resolve()
        for directory in (cwd, *cwd.parents):
            if (directory / "apps").is_dir():
                return directory / "apps"
        return REPO_ROOT / "apps"


def _require_dns_label(value: str, what: str) -> None:
    if not _DNS_LABEL.match(value):
        raise ConfigError(f"{what} '{value}' is not a DNS label: lowercase letters, digits, '-'")


def _parse_routes(text: str) -> dict[str, str]:
    routes: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        app, sep, route = (part.strip() for part in item.partition("="))
        if not sep or not app or not route:
            raise ConfigError(f"ZDP_K8S_ROUTES entry '{item}' is not app=route")
        routes[app] = route
    return routes


def _parse_gateway(text: str) -> tuple[str | None, str] | None:
    text = text.strip()
    if not text:
        return None
    namespace, _, name = text.rpartition("/")
    if not name:
        raise ConfigError(f"ZDP_K8S_GATEWAY '{text}' is not [namespace/]name")
    return (namespace or None, name)


def _seconds(env: Mapping[str, str], key: str, default: float) -> float:
    raw = env.get(key, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ConfigError(f"{key} must be a number of seconds above 0, not '{raw}'")
    return value


def _port(env: Mapping[str, str], key: str, default: int) -> int:
    raw = env.get(key, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise ConfigError(f"{key} must be a port number between 1 and 65535, not '{raw}'")
    return int(raw)
