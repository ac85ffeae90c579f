"""The gateway-api and istio routers against kmock: the calls they make and the routes they leave.

kmock does not fill managedFields, so the refusal to fight another field manager is tested on
routes seeded with the managedFields a real API server would show.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import kmock
import pytest

from tests.k8s.cluster import APPLY, NAMESPACE, RESOURCES, Cluster
from zdp.errors import ConfigError, PlatformError
from zdp.platforms.kubernetes.config import K8sSettings
from zdp.platforms.kubernetes.gateway_api import GatewayApiRouter
from zdp.platforms.kubernetes.istio import IstioRouter

ROUTES = f"/apis/gateway.networking.k8s.io/v1/namespaces/{NAMESPACE}/httproutes"
VIRTUAL_SERVICES = f"/apis/networking.istio.io/v1/namespaces/{NAMESPACE}/virtualservices"
PARENT = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "public"}


def backends(**weights: int) -> list[dict[str, Any]]:
    return [
        {"group": "", "kind": "Service", "name": f"webshop-{slot}", "port": 80, "weight": weight}
        for slot, weight in weights.items()
    ]


async def seed_route(cluster: Cluster, managed_fields: list[dict[str, Any]] | None = None) -> None:
    """The route as the platform team creates it: attached to the Gateway, no rules of its own."""
    metadata: dict[str, Any] = {"name": "webshop"}
    if managed_fields is not None:
        metadata["managedFields"] = managed_fields
    await cluster.create(
        "httproutes",
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": metadata,
            "spec": {"parentRefs": [PARENT], "hostnames": ["shop.example.com"]},
        },
    )


def route_rules(cluster: Cluster) -> Any:
    route = cluster.stored("httproutes", "webshop")
    assert route is not None
    return route["spec"]["rules"]


# --------------------------------------------------------------------------- gateway-api


async def test_set_weights_applies_the_backend_refs_of_the_route(
    cluster: Cluster, gateway: GatewayApiRouter
) -> None:
    await seed_route(cluster)
    applied = await gateway.set_weights("webshop", {"stable": 95, "canary": 5})
    assert applied == {"stable": 95, "canary": 5}

    get, patch = cluster.calls()
    assert (get.method, get.path) == ("GET", f"{ROUTES}/webshop")
    assert (patch.method, patch.path, patch.content_type) == ("PATCH", f"{ROUTES}/webshop", APPLY)
    assert patch.params == {"fieldManager": "zdp", "force": "false"}
    assert patch.body == {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {
            "name": "webshop",
            "namespace": NAMESPACE,
            "labels": {"app.kubernetes.io/managed-by": "zdp"},
        },
        "spec": {"rules": [{"backendRefs": backends(stable=95, canary=5)}]},
    }
    route = cluster.stored("httproutes", "webshop")
    assert route is not None
    assert route["spec"]["parentRefs"] == [PARENT]  # the platform's fields are left alone
    assert route["spec"]["rules"] == [{"backendRefs": backends(stable=95, canary=5)}]
    assert await gateway.get_weights("webshop") == {"stable": 95, "canary": 5}


async def test_a_canary_walk_ends_with_the_stable_slot_alone_on_the_route(
    cluster: Cluster, gateway: GatewayApiRouter
) -> None:
    await seed_route(cluster)
    for weight in (1, 5, 25, 100):
        await gateway.set_weights("webshop", {"stable": 100 - weight, "canary": weight})
        assert await gateway.get_weights("webshop") == {
            slot: w for slot, w in (("stable", 100 - weight), ("canary", weight)) if w
        }
    assert route_rules(cluster) == [{"backendRefs": backends(canary=100)}]
    assert await gateway.set_weights("webshop", {"stable": 100, "canary": 0}) == {
        "stable": 100,
        "canary": 0,
    }
    # A weight of 0 is left out: the retired slot's Service is about to disappear.
    assert route_rules(cluster) == [{"backendRefs": backends(stable=100)}]


async def test_blue_green_is_a_0_100_switch_of_the_same_route(
    cluster: Cluster, gateway: GatewayApiRouter
) -> None:
    await seed_route(cluster)
    await gateway.set_weights("webshop", {"blue": 100, "green": 0})
    await gateway.set_weights("webshop", {"blue": 0, "green": 100})
    assert route_rules(cluster) == [{"backendRefs": backends(green=100)}]
    assert await gateway.get_weights("webshop") == {"green": 100}
    assert {c.path for c in cluster.calls()} == {f"{ROUTES}/webshop"}


async def test_setting_the_same_weights_again_is_the_same_apply_and_the_same_route(
    cluster: Cluster, gateway: GatewayApiRouter
) -> None:
    await seed_route(cluster)
    await gateway.set_weights("webshop", {"stable": 75, "canary": 25})
    before = cluster.stored("httproutes", "webshop")
    await gateway.set_weights("webshop", {"stable": 75, "canary": 25})
    assert cluster.stored("httproutes", "webshop") == before
    first, second = (c.body for c in cluster.calls() if c.method == "PATCH")
    assert first == second


async def test_a_missing_route_is_refused_unless_zdp_may_create_it(
    cluster: Cluster, gateway: GatewayApiRouter, settings: K8sSettings
) -> None:
    assert await gateway.get_weights("webshop") == {}
    with pytest.raises(PlatformError) as caught:
        await gateway.set_weights("webshop", {"stable": 100})
    assert str(caught.value) == (
        f"HTTPRoute {NAMESPACE}/webshop of webshop does not exist: create it with its "
        "parentRefs (docs/kubernetes.md), or set ZDP_K8S_GATEWAY so that zdp creates it"
    )
    assert [c.method for c in cluster.calls()] == ["GET", "GET"]  # get_weights, set_weights

    creator = GatewayApiRouter(replace(settings, gateway=("infra", "public")))
    await creator.set_weights("webshop", {"stable": 100})
    await creator.aclose()
    route = cluster.stored("httproutes", "webshop")
    assert route is not None
    assert route["spec"]["parentRefs"] == [{**PARENT, "namespace": "infra"}]
    assert route["spec"]["rules"] == [{"backendRefs": backends(stable=100)}]


@pytest.mark.parametrize(
    ("manager", "operation", "fields"),
    [
        ("kubectl-client-side-apply", "Update", {"f:spec": {"f:rules": {}}}),  # atomic list
        (
            "flagger",
            "Update",
            {"f:spec": {"f:rules": {'k:{"name":"main"}': {"f:backendRefs": {}}}}},
        ),
        (
            "argocd-controller",
            "Apply",
            {"f:spec": {"f:rules": {".": {}, "f:backendRefs": {"k:{}": {"f:weight": {}}}}}},
        ),
    ],
)
async def test_weights_owned_by_another_field_manager_are_not_touched(
    cluster: Cluster, gateway: GatewayApiRouter, manager: str, operation: str, fields: Any
) -> None:
    await seed_route(
        cluster,
        [
            {
                "manager": manager,
                "operation": operation,
                "fieldsType": "FieldsV1",
                "fieldsV1": fields,
            }
        ],
    )
    with pytest.raises(PlatformError) as caught:
        await gateway.set_weights("webshop", {"stable": 100})
    assert str(caught.value) == (
        f"HTTPRoute {NAMESPACE}/webshop: the weights in spec.rules are managed by '{manager}' "
        f"({operation}), not zdp; zdp will not fight over them: remove them from that "
        "manager's manifest (or hand the route to zdp) and retry"
    )
    assert [c.method for c in cluster.calls()] == ["GET"]


async def test_other_managers_of_other_fields_do_not_stop_zdp(
    cluster: Cluster, gateway: GatewayApiRouter
) -> None:
    await seed_route(
        cluster,
        [
            {
                "manager": "platform-team",
                "operation": "Apply",
                "fieldsV1": {"f:spec": {"f:parentRefs": {}, "f:hostnames": {}}},
            },
            {
                "manager": "gateway-controller",
                "operation": "Update",
                "subresource": "status",
                "fieldsV1": {"f:status": {"f:parents": {}}},
            },
            {"manager": "zdp", "operation": "Apply", "fieldsV1": {"f:spec": {"f:rules": {}}}},
        ],
    )
    assert await gateway.set_weights("webshop", {"stable": 100}) == {"stable": 100}


async def test_an_apply_conflict_from_the_server_is_one_line(
    cluster: Cluster, gateway: GatewayApiRouter
) -> None:
    """What a real API server answers when force=false meets a field another manager owns."""
    await seed_route(cluster)
    conflict = (
        'Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using '
        "gateway.networking.k8s.io/v1: .spec.rules"
    )
    cluster.emulator[kmock.resource(RESOURCES["httproutes"]), kmock.method.PATCH] << (
        kmock.KubernetesError(status=409, reason="Conflict", message=conflict)
    )
    with pytest.raises(PlatformError) as caught:
        await gateway.set_weights("webshop", {"stable": 100})
    assert str(caught.value) == (
        f"apply HTTPRoute {NAMESPACE}/webshop failed: HTTP 409 Conflict: {conflict}"
    )


async def test_a_route_to_something_else_than_the_slots_is_an_error(
    cluster: Cluster, gateway: GatewayApiRouter
) -> None:
    await cluster.create(
        "httproutes",
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "webshop"},
            "spec": {"rules": [{"backendRefs": [{"name": "legacy-shop", "port": 80}]}]},
        },
    )
    with pytest.raises(PlatformError) as caught:
        await gateway.get_weights("webshop")
    assert "sends traffic to 'legacy-shop', which is not a slot Service of webshop" in str(
        caught.value
    )


async def test_weights_written_by_hand_are_read_as_percentages(
    cluster: Cluster, gateway: GatewayApiRouter
) -> None:
    await cluster.create(
        "httproutes",
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "webshop"},
            "spec": {
                "rules": [
                    {
                        "backendRefs": [
                            {"name": "webshop-stable", "port": 80, "weight": 3},
                            {"name": "webshop-canary", "port": 80},
                        ]
                    }
                ]
            },
        },
    )
    assert await gateway.get_weights("webshop") == {"stable": 75, "canary": 25}


async def test_bad_weights_are_refused_before_any_call(
    cluster: Cluster, gateway: GatewayApiRouter
) -> None:
    with pytest.raises(ConfigError, match="weights must sum to 100"):
        await gateway.set_weights("webshop", {"stable": 90, "canary": 5})
    with pytest.raises(ConfigError, match="unknown slot"):
        await gateway.set_weights("webshop", {"primary": 100})
    assert cluster.calls() == []


async def test_route_names_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZDP_K8S_ROUTES", "webshop=shop-web, other=o")
    settings = K8sSettings.from_settings()
    assert settings.route_name("webshop") == "shop-web"
    assert settings.route_name("finance-trading") == "finance-trading"
    monkeypatch.setenv("ZDP_K8S_ROUTES", "webshop")
    with pytest.raises(ConfigError, match="is not app=route"):
        K8sSettings.from_settings()


# --------------------------------------------------------------------------- istio


async def test_istio_sets_virtual_service_route_weights(
    cluster: Cluster, istio: IstioRouter
) -> None:
    assert await istio.set_weights("webshop", {"stable": 75, "canary": 25}) == {
        "stable": 75,
        "canary": 25,
    }
    get, patch = cluster.calls()
    assert (get.method, get.path) == ("GET", f"{VIRTUAL_SERVICES}/webshop")
    assert (patch.path, patch.content_type, patch.params) == (
        f"{VIRTUAL_SERVICES}/webshop",
        APPLY,
        {"fieldManager": "zdp", "force": "false"},
    )
    service = cluster.stored("virtualservices", "webshop")
    assert service is not None
    assert service["spec"] == {
        "hosts": ["webshop"],
        "http": [
            {
                "route": [
                    {
                        "destination": {"host": "webshop-stable", "port": {"number": 80}},
                        "weight": 75,
                    },
                    {
                        "destination": {"host": "webshop-canary", "port": {"number": 80}},
                        "weight": 25,
                    },
                ]
            }
        ],
    }
    await istio.set_weights("webshop", {"stable": 0, "canary": 100})
    assert await istio.get_weights("webshop") == {"canary": 100}


async def test_istio_refuses_weights_another_manager_owns(
    cluster: Cluster, istio: IstioRouter
) -> None:
    await cluster.create(
        "virtualservices",
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {
                "name": "webshop",
                "managedFields": [
                    {
                        "manager": "kiali",
                        "operation": "Update",
                        "fieldsV1": {"f:spec": {"f:http": {}}},
                    }
                ],
            },
            "spec": {
                "hosts": ["webshop"],
                "http": [{"route": [{"destination": {"host": "webshop-stable"}}]}],
            },
        },
    )
    assert await istio.get_weights("webshop") == {"stable": 100}
    with pytest.raises(PlatformError, match=r"managed by 'kiali' \(Update\), not zdp"):
        await istio.set_weights("webshop", {"stable": 100})
