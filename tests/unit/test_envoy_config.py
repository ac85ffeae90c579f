"""Envoy's generated configuration: clusters with fallback, file-based routes, scoped retries."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from zdp.errors import ConfigError
from zdp.platforms.envoy.config import (
    bootstrap,
    cluster_name,
    route_configuration,
    routes_path,
    write_bootstrap,
    write_routes,
)
from zdp.platforms.layout import (
    ENVIRONMENT_BLOCKS,
    LOCAL_APPS,
    SLOTS,
    environment_block,
    local_instances,
)

BASE = 40000
FINANCE = LOCAL_APPS["finance-trading"]


def _clusters(home: Path) -> dict[str, dict[str, Any]]:
    clusters = bootstrap(BASE, home)["static_resources"]["clusters"]
    return {c["name"]: c for c in clusters}


def _ports_by_priority(cluster: dict[str, Any]) -> dict[int, list[int]]:
    return {
        group.get("priority", 0): [
            e["endpoint"]["address"]["socket_address"]["port_value"] for e in group["lb_endpoints"]
        ]
        for group in cluster["load_assignment"]["endpoints"]
    }


def _routes(weights: dict[str, int]) -> list[dict[str, Any]]:
    """The routes that carry traffic (after the one that keeps drills off the listener)."""
    resource = route_configuration(FINANCE, weights)["resources"][0]
    [host] = resource["virtual_hosts"]
    assert host["domains"] == ["*"]
    drills, *routes = host["routes"]
    assert drills["name"] == "no-drills"
    return routes


def test_every_app_has_one_static_cluster_per_slot_named_app_bar_slot(tmp_path: Path) -> None:
    clusters = _clusters(tmp_path)
    keys = [app if env == "staging" else f"{app}@{env}" for env in ENVIRONMENT_BLOCKS
            for app in LOCAL_APPS]  # fmt: skip
    assert set(clusters) == {f"{key}|{slot}" for key in keys for slot in SLOTS}
    assert cluster_name(FINANCE, "canary") == "finance-trading|canary"
    production = FINANCE.in_environment("production")
    assert cluster_name(production, "canary") == "finance-trading@production|canary"
    for cluster in clusters.values():
        assert cluster["type"] == "STATIC"
        assert cluster["connect_timeout"] == "0.25s"
        assert cluster["circuit_breakers"]["thresholds"][0]["max_retries"] >= 1000


def test_new_version_slots_fall_back_to_the_serving_slot_at_priority_1(tmp_path: Path) -> None:
    clusters = _clusters(tmp_path)
    port = FINANCE.slot_port
    fallbacks = {"canary": "stable", "green": "blue", "blue": "green"}
    for slot, fallback in fallbacks.items():
        cluster = clusters[cluster_name(FINANCE, slot)]
        assert _ports_by_priority(cluster) == {0: [port(slot, BASE)], 1: [port(fallback, BASE)]}
        assert cluster["outlier_detection"]["consecutive_5xx"] == 5
        assert cluster["outlier_detection"]["max_ejection_percent"] == 100
    stable = clusters[cluster_name(FINANCE, "stable")]
    assert _ports_by_priority(stable) == {0: [port("stable", BASE)]}
    assert "outlier_detection" not in stable


def test_listeners_and_admin_use_the_fixed_ports_and_watch_one_route_folder_per_app(
    tmp_path: Path,
) -> None:
    config = bootstrap(BASE, tmp_path)
    assert config["admin"]["address"]["socket_address"] == {
        "address": "127.0.0.1",
        "port_value": BASE + 1,
    }
    listeners = {item["name"]: item for item in config["static_resources"]["listeners"]}
    instances = {app.key: app for app in local_instances()}
    assert set(listeners) == set(instances)
    assert len(instances) == len(LOCAL_APPS) * len(ENVIRONMENT_BLOCKS)
    for name, app in instances.items():
        item = listeners[name]
        assert item["address"]["socket_address"]["port_value"] == app.listener_port(BASE)
        manager = item["filter_chains"][0]["filters"][0]["typed_config"]
        source = manager["rds"]["config_source"]["path_config_source"]
        assert source["path"] == str(tmp_path / "envoy" / "routes" / name / "routes.yaml")
        assert source["watched_directory"]["path"] == str(tmp_path / "envoy" / "routes" / name)
        assert manager["rds"]["route_config_name"] == name


def test_route_file_is_a_route_configuration_resource_with_the_weighted_split() -> None:
    config = route_configuration(FINANCE, {"stable": 75, "canary": 25})
    [resource] = config["resources"]
    assert resource["@type"] == "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
    assert resource["name"] == "finance-trading"
    for route in _routes({"stable": 75, "canary": 25}):
        assert route["route"]["weighted_clusters"]["clusters"] == [
            {"name": "finance-trading|stable", "weight": 75},
            {"name": "finance-trading|canary", "weight": 25},
        ]


def test_zero_weight_slots_are_left_out_of_the_route() -> None:
    for route in _routes({"stable": 100, "canary": 0}):
        assert route["route"]["weighted_clusters"]["clusters"] == [
            {"name": "finance-trading|stable", "weight": 100}
        ]


def test_only_idempotent_methods_and_idempotency_keyed_requests_are_retried() -> None:
    idempotent, keyed, default = _routes({"blue": 0, "green": 100})
    [method] = idempotent["match"]["headers"]
    assert method["name"] == ":method"
    assert method["string_match"]["safe_regex"]["regex"] == "GET|HEAD|OPTIONS"
    assert keyed["match"]["headers"] == [{"name": "idempotency-key", "present_match": True}]
    assert default["match"] == {"prefix": "/"}
    assert "retry_policy" not in default["route"]
    for route in (idempotent, keyed):
        policy = route["route"]["retry_policy"]
        assert policy["retry_on"] == "5xx,reset,connect-failure"
        assert policy["num_retries"] == 2
        assert policy["retry_priority"]["name"] == "envoy.retry_priorities.previous_priorities"
        assert policy["retry_priority"]["typed_config"]["update_frequency"] == 1
        assert [p["name"] for p in policy["retry_host_predicate"]] == [
            "envoy.retry_host_predicates.previous_hosts"
        ]


@pytest.mark.parametrize(
    ("weights", "reason"),
    [
        ({"stable": 75, "canary": 20}, "sum to 100"),
        ({"stable": 0, "canary": 0}, "sum to 100"),
        ({"stable": 50, "purple": 50}, "unknown slot"),
        ({"stable": 150, "canary": -50}, ">= 0"),
        ({"stable": 99.5, "canary": 0.5}, "whole number"),
        ({"stable": True}, "whole number"),
        ({}, "no weights"),
    ],
)
def test_bad_weights_are_refused(weights: dict[str, Any], reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        route_configuration(FINANCE, weights)


def test_bootstrap_writes_100_percent_stable_routes_only_where_none_exist(tmp_path: Path) -> None:
    pharma = LOCAL_APPS["pharma-manufacturing"]
    write_routes(tmp_path, pharma, {"blue": 0, "green": 100})
    path = write_bootstrap(tmp_path, BASE)
    assert json.loads(path.read_text()) == bootstrap(BASE, tmp_path)
    finance_routes = json.loads(routes_path(tmp_path, FINANCE).read_text())
    assert finance_routes == route_configuration(FINANCE, {"stable": 100})
    pharma_routes = json.loads(routes_path(tmp_path, pharma).read_text())
    assert pharma_routes == route_configuration(pharma, {"green": 100})
    leftovers = [p.name for p in routes_path(tmp_path, FINANCE).parent.iterdir()]
    assert leftovers == ["routes.yaml"]  # no temp file left behind


def test_each_environment_has_its_own_ports_and_staging_keeps_the_documented_ones() -> None:
    """Staging is block 0: the ports every earlier stack used (finance 18100-18104). Each
    other environment adds 10 per block; no port is used twice, and all stay below BASE+300."""
    assert FINANCE.in_environment("staging") == FINANCE
    assert FINANCE.listener_port(18000) == 18100
    production = FINANCE.in_environment("production")
    assert production.listener_port(18000) == 18110
    assert [production.slot_port(slot, 18000) for slot in SLOTS] == [18111, 18112, 18113, 18114]
    ports = [app.listener_port(BASE) for app in local_instances()] + [
        app.slot_port(slot, BASE) for app in local_instances() for slot in SLOTS
    ]
    assert len(ports) == len(set(ports))
    assert max(ports) < BASE + 300 and min(ports) > BASE + 1  # the admin port is BASE + 1
    with pytest.raises(ConfigError, match="'perf' has no place on the embedded stack"):
        environment_block("perf")
