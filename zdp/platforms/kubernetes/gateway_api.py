"""The `gateway-api` TrafficRouter: HTTPRoute backendRefs weights (gateway.networking.k8s.io/v1).

The route `<app>` (or the name ZDP_K8S_ROUTES gives) has one rule whose backendRefs are the
app's slot Services with a weight above 0, each on ZDP_K8S_SERVICE_PORT. A canary step is
`stable` 95 / `canary` 5 on that rule; a blue-green switch is the same route going from one
colour to the other at once. With ZDP_K8S_GATEWAY set, zdp also applies the route's parentRefs
and so may create it; without, the route must exist (made by whoever owns the Gateway), and
zdp only ever applies `spec.rules`.

zdp applies `spec.rules` as a whole: the Gateway API CRDs declare it an atomic list, so its
owner owns every match and filter in it. Keep matches, filters and hostnames out of the rules
of a route zdp manages, or zdp refuses to act (see `foreign_weight_owners`).
"""

from __future__ import annotations

from typing import Any, ClassVar

from zdp.errors import PlatformError
from zdp.platforms.kubernetes.api import HTTP_ROUTE, Kind
from zdp.platforms.kubernetes.render import MANAGED_BY, slot_name
from zdp.platforms.kubernetes.routes import RouteWeightsRouter

GATEWAY_GROUP = "gateway.networking.k8s.io"


class GatewayApiRouter(RouteWeightsRouter):
    """TrafficRouter over HTTPRoute backendRefs weights."""

    kind: ClassVar[Kind] = HTTP_ROUTE
    weights_path: ClassVar[tuple[str, ...]] = ("spec", "rules")
    refs_key: ClassVar[str] = "backendRefs"

    def can_create(self) -> bool:
        return self.settings.gateway is not None

    def missing_message(self, app: str, name: str) -> str:
        return (
            f"{self._what(name)} of {app} does not exist: create it with its parentRefs "
            "(docs/kubernetes.md), or set ZDP_K8S_GATEWAY so that zdp creates it"
        )

    def desired(self, app: str, name: str, weights: dict[str, int]) -> dict[str, Any]:
        backends = [
            {
                "group": "",
                "kind": "Service",
                "name": slot_name(app, slot),
                "port": self.settings.service_port,
                "weight": weight,
            }
            for slot, weight in weights.items()
        ]
        spec: dict[str, Any] = {}
        if self.settings.gateway is not None:
            namespace, gateway = self.settings.gateway
            parent = {"group": GATEWAY_GROUP, "kind": "Gateway", "name": gateway}
            if namespace:
                parent["namespace"] = namespace
            spec["parentRefs"] = [parent]
        spec["rules"] = [{"backendRefs": backends}]
        return {
            "apiVersion": self.kind.api_version,
            "kind": self.kind.kind,
            "metadata": {"name": name, "namespace": self.settings.namespace, "labels": MANAGED_BY},
            "spec": spec,
        }

    def raw_splits(self, app: str, name: str, route: dict[str, Any]) -> list[dict[str, int]]:
        splits: list[dict[str, int]] = []
        for rule in (route.get("spec") or {}).get("rules") or []:
            split: dict[str, int] = {}
            for ref in rule.get("backendRefs") or []:
                foreign = (
                    (ref.get("group") or "") != ""
                    or (ref.get("kind") or "Service") != "Service"
                    or ref.get("namespace") not in (None, self.settings.namespace)
                )
                if foreign:
                    raise PlatformError(
                        f"{self._what(name)} has a backendRef to {ref.get('kind')} "
                        f"{ref.get('namespace') or ''}/{ref.get('name')}; zdp splits traffic "
                        f"between {app}'s slot Services in {self.settings.namespace} only"
                    )
                slot = self.slot_of(app, name, str(ref.get("name")))
                split[slot] = split.get(slot, 0) + int(ref.get("weight", 1))  # API default: 1
            splits.append(split)
        return splits
