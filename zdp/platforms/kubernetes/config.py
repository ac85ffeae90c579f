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

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from zdp.config import apps_source_dir
from zdp.errors import ConfigError
from zdp.settings import Settings, settings

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
    def from_settings(cls, found: Settings | None = None) -> K8sSettings:
        """From the ZDP_K8S_* settings (zdp/settings.py); ConfigError names a bad one."""
        found = found or settings()
        _require_dns_label(found.K8S_NAMESPACE, "ZDP_K8S_NAMESPACE")
        return cls(
            namespace=found.K8S_NAMESPACE,
            api=found.K8S_API,
            context=found.K8S_CONTEXT,
            routes=_parse_routes(found.K8S_ROUTES),
            gateway=_parse_gateway(found.K8S_GATEWAY),
            service_port=found.K8S_SERVICE_PORT,
            templates=found.K8S_TEMPLATES,
            ready_timeout=found.K8S_READY_TIMEOUT,
            drain_timeout=found.K8S_DRAIN_TIMEOUT,
        )

    def route_name(self, app: str) -> str:
        return self.routes.get(app, app)

    def templates_dir(self) -> Path:
        """ZDP_K8S_TEMPLATES, else apps/ up from the working directory, else the repository's."""
        if self.templates is not None:
            return self.templates
        return apps_source_dir()


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
