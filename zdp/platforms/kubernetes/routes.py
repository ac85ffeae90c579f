"""What the Kubernetes routers share: weights set on one route object by server-side apply.

A router owns one object per app (an HTTPRoute, a VirtualService), named by ZDP_K8S_ROUTES or
after the app. `set_weights` reads it, refuses to act if another field manager owns the
weights (its managedFields say so), applies zdp's whole intent for the object (field manager
`zdp`, force=false; applying the same split again changes nothing) and returns the split the
server answered with. Only slots with a weight above 0 are listed as backends: a retired slot's
Service no longer exists, and a reference to it would mark the route unresolved.

`get_weights` reads the object back. Every backend must be one of the app's slot Services
(`<app>-<slot>`): a route that also sends traffic elsewhere is an error, not a guess.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from zdp.errors import PlatformError
from zdp.platforms.base import validate_weights
from zdp.platforms.kubernetes.api import K8sApi, Kind
from zdp.platforms.kubernetes.config import FIELD_MANAGER, K8sSettings
from zdp.platforms.kubernetes.render import SLOTS, slot_name


class RouteWeightsRouter:
    """TrafficRouter over one route object per app; subclasses say how weights are written."""

    kind: ClassVar[Kind]
    weights_path: ClassVar[tuple[str, ...]]  # the list holding the weighted backends
    refs_key: ClassVar[str]  # the key of the weighted backends inside each item of that list

    def __init__(self, settings: K8sSettings | None = None, api: K8sApi | None = None) -> None:
        self.settings = settings or K8sSettings.from_settings()
        self.api = api or K8sApi(self.settings)
        self._locks: dict[str, asyncio.Lock] = {}

    # ------------------------------------------------------------------ TrafficRouter

    async def set_weights(self, app: str, weights: dict[str, int]) -> dict[str, int]:
        """Apply `weights` (slot -> int >= 0, summing to 100); every requested slot is in the
        result, a zero-weight one as 0, as read back from the server's answer."""
        requested = validate_weights(weights)
        wanted = {slot: weight for slot, weight in requested.items() if weight}
        name = self.settings.route_name(app)
        async with self._locks.setdefault(app, asyncio.Lock()):
            current = await self.api.read(self.kind, name)
            if current is None and not self.can_create():
                raise PlatformError(self.missing_message(app, name))
            if current is not None:
                self._refuse_foreign_owner(current, name)
            applied = await self.api.apply(self.kind, name, self.desired(app, name, wanted))
            split = self._split(app, name, applied)
            if split != wanted:
                raise PlatformError(
                    f"{self._what(name)} holds {_text(split)} after the apply, not {_text(wanted)}"
                )
        return {**{slot: 0 for slot in requested}, **split}

    async def get_weights(self, app: str) -> dict[str, int]:
        """The split on the route now (slots with a weight above 0); empty without a route."""
        name = self.settings.route_name(app)
        current = await self.api.read(self.kind, name)
        return {} if current is None else self._split(app, name, current)

    async def aclose(self) -> None:
        await self.api.aclose()

    # ------------------------------------------------------------------ for subclasses

    def can_create(self) -> bool:
        """Whether zdp may create the route when it does not exist."""
        return True

    def missing_message(self, app: str, name: str) -> str:
        return f"{self._what(name)} of {app} does not exist"

    def desired(self, app: str, name: str, weights: dict[str, int]) -> dict[str, Any]:
        """The whole object as zdp applies it (the same fields every time: SSA removes fields
        a manager stops applying)."""
        raise NotImplementedError

    def raw_splits(self, app: str, name: str, route: dict[str, Any]) -> list[dict[str, int]]:
        """For each rule of the route, slot -> weight as written (before normalising)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ shared helpers

    def slot_of(self, app: str, route: str, service: str) -> str:
        for slot in SLOTS:
            if service == slot_name(app, slot):
                return slot
        services = ", ".join(slot_name(app, slot) for slot in SLOTS)
        raise PlatformError(
            f"{self._what(route)} sends traffic to {service!r}, which is not a slot Service of "
            f"{app} ({services}); zdp splits traffic between its own slots only"
        )

    def _split(self, app: str, name: str, route: dict[str, Any]) -> dict[str, int]:
        splits = [_percentages(raw) for raw in self.raw_splits(app, name, route)]
        if any(split != splits[0] for split in splits[1:]):
            texts = " / ".join(dict.fromkeys(map(_text, splits)))
            raise PlatformError(
                f"the rules of {self._what(name)} split traffic differently ({texts}); "
                "set the weights again to make them agree"
            )
        return splits[0] if splits else {}

    def _refuse_foreign_owner(self, route: dict[str, Any], name: str) -> None:
        owners = foreign_weight_owners(route, self.weights_path, self.refs_key)
        if owners:
            path = ".".join(self.weights_path)
            raise PlatformError(
                f"{self._what(name)}: the weights in {path} are managed by {', '.join(owners)}, "
                f"not {FIELD_MANAGER}; zdp will not fight over them: remove them from that "
                "manager's manifest (or hand the route to zdp) and retry"
            )

    def _what(self, name: str) -> str:
        return f"{self.kind.kind} {self.settings.namespace}/{name}"


def foreign_weight_owners(
    route: dict[str, Any], weights_path: tuple[str, ...], refs_key: str
) -> list[str]:
    """Field managers other than zdp whose managedFields cover the route's weights.

    Built on the object as read, so that it works wherever managedFields are returned. A
    manager covers the weights when it owns the whole list at `weights_path` (an atomic list,
    `{}` in fieldsV1) or, below it, a `refs_key` list as a whole or any `weight` field.
    """
    owners: list[str] = []
    for entry in (route.get("metadata") or {}).get("managedFields") or []:
        if entry.get("manager") == FIELD_MANAGER or entry.get("subresource"):
            continue
        node: Any = entry.get("fieldsV1") or {}
        for part in weights_path:
            node = node.get(f"f:{part}") if isinstance(node, dict) else None
        if node is not None and (not node or _covers_weights(node, refs_key)):
            manager = str(entry.get("manager") or "?")
            owners.append(f"'{manager}' ({entry.get('operation', '?')})")
    return owners


def _covers_weights(node: dict[str, Any], refs_key: str) -> bool:
    for key, child in node.items():
        if key == f"f:{refs_key}" and (not child or _mentions_weight(child)):
            return True
        if isinstance(child, dict) and _covers_weights(child, refs_key):
            return True
    return False


def _mentions_weight(node: dict[str, Any]) -> bool:
    return "f:weight" in node or any(
        isinstance(child, dict) and _mentions_weight(child) for child in node.values()
    )


def _percentages(raw: dict[str, int]) -> dict[str, int]:
    """Weights as whole percentages in slot order, zeros left out (largest remainder)."""
    total = sum(raw.values())
    if total <= 0:
        return {}
    exact = {slot: weight * 100 / total for slot, weight in raw.items()}
    shares = {slot: int(value) for slot, value in exact.items()}
    for slot in sorted(exact, key=lambda s: exact[s] - shares[s], reverse=True)[
        : 100 - sum(shares.values())
    ]:
        shares[slot] += 1
    return {slot: shares[slot] for slot in SLOTS if shares.get(slot)}


def _text(weights: dict[str, int]) -> str:
    return ", ".join(f"{slot}={weight}" for slot, weight in weights.items()) or "no backends"
