"""The `istio` TrafficRouter: route weights of a VirtualService (networking.istio.io/v1).

The VirtualService `<app>` (or the name ZDP_K8S_ROUTES gives) routes the mesh host `<app>`
(the app's own Service, from apps/<app>/k8s/service.yaml) to the slot Services with a weight
above 0. zdp applies `spec.hosts` and `spec.http` as a whole, the same way every time, so it
may create the VirtualService; another manager owning `spec.http` weights makes it refuse.
"""

from __future__ import annotations

from typing import Any, ClassVar

from zdp.platforms.kubernetes.api import VIRTUAL_SERVICE, Kind
from zdp.platforms.kubernetes.render import MANAGED_BY, slot_name
from zdp.platforms.kubernetes.routes import RouteWeightsRouter


class IstioRouter(RouteWeightsRouter):
    """TrafficRouter over VirtualService http route weights."""

    kind: ClassVar[Kind] = VIRTUAL_SERVICE
    weights_path: ClassVar[tuple[str, ...]] = ("spec", "http")
    refs_key: ClassVar[str] = "route"

    def desired(self, app: str, name: str, weights: dict[str, int]) -> dict[str, Any]:
        destinations = [
            {
                "destination": {
                    "host": slot_name(app, slot),
                    "port": {"number": self.settings.service_port},
                },
                "weight": weight,
            }
            for slot, weight in weights.items()
        ]
        return {
            "apiVersion": self.kind.api_version,
            "kind": self.kind.kind,
            "metadata": {"name": name, "namespace": self.settings.namespace, "labels": MANAGED_BY},
            "spec": {"hosts": [app], "http": [{"route": destinations}]},
        }

    def raw_splits(self, app: str, name: str, route: dict[str, Any]) -> list[dict[str, int]]:
        splits: list[dict[str, int]] = []
        for http in (route.get("spec") or {}).get("http") or []:
            routes = http.get("route") or []
            split: dict[str, int] = {}
            for item in routes:
                slot = self.slot_of(app, name, str((item.get("destination") or {}).get("host")))
                # Istio: a lone destination without a weight takes everything.
                weight = int(item.get("weight", 100 if len(routes) == 1 else 0))
                split[slot] = split.get(slot, 0) + weight
            splits.append(split)
        return splits
