"""The worker's egress, as Kubernetes evaluates its NetworkPolicies: nothing reaches every
address (no 0.0.0.0/0 or ::/0, no rule without destinations, no peer that is every namespace),
and what the worker needs stays reachable: DNS, the Temporal frontend, the API server,
Prometheus, the app pods, and in production Temporal Cloud, each by its own selector or address.

`allowed` below implements the NetworkPolicy semantics these manifests use (policies add up;
a rule allows a connection when one of its ports and one of its peers match; a peer without a
namespaceSelector means the policy's namespace), and is itself checked against the policy the
worker had before (egress to any address on 443), so a policy that reopens it fails here.
No connection is made: destinations are data.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.k8s.kubectl import render

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
FOLDERS = {"base": "default", "overlays/staging": "staging", "overlays/production": "production"}
WORKER = {"app.kubernetes.io/name": "zdp-worker"}
NAMESPACE_LABEL = "kubernetes.io/metadata.name"
# Addresses across the IPv4 and IPv6 space, public and private: none may be reachable unless a
# policy names it. They are only compared with CIDRs.
ELSEWHERE = [
    "1.1.1.1",
    "8.8.8.8",
    "52.94.236.248",
    "140.82.112.3",
    "10.0.0.1",
    "172.16.0.1",
    "192.168.1.1",
    "2001:4860:4860::8888",
    "fd00::1",
]


@dataclass(frozen=True)
class Destination:
    port: int
    protocol: str = "TCP"
    ip: str | None = None  # an address (outside the cluster, or the API server)
    namespace: str | None = None  # else a pod: its namespace and labels
    labels: dict[str, str] = field(default_factory=dict)


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values")
        present = key in labels
        ok = {
            "Exists": present,
            "DoesNotExist": not present,
            "In": present and labels[key] in (values or []),
            "NotIn": not present or labels[key] not in (values or []),
        }[operator]
        if not ok:
            return False
    return True


def peer_matches(peer: dict[str, Any], to: Destination, namespace: str) -> bool:
    if "ipBlock" in peer:
        if to.ip is None:
            return False
        address = ipaddress.ip_address(to.ip)
        block = peer["ipBlock"]
        networks = [ipaddress.ip_network(block["cidr"])]
        excepted = [ipaddress.ip_network(e) for e in block.get("except") or []]
        return any(address in n for n in networks) and not any(address in e for e in excepted)
    if to.namespace is None:
        return False
    if "namespaceSelector" in peer:
        in_namespace = selects(peer["namespaceSelector"], {NAMESPACE_LABEL: to.namespace})
    else:
        in_namespace = to.namespace == namespace
    return in_namespace and selects(peer.get("podSelector") or {}, to.labels)


def port_matches(ports: list[dict[str, Any]] | None, to: Destination) -> bool:
    if not ports:
        return True
    for port in ports:
        if port.get("protocol", "TCP") != to.protocol:
            continue
        number = port.get("port")
        if number is None or number == to.port:
            return True
        if isinstance(number, int) and "endPort" in port and number <= to.port <= port["endPort"]:
            return True
    return False


def allowed(policies: list[dict[str, Any]], namespace: str, to: Destination) -> bool:
    """Whether the worker pod (in `namespace`) may open a connection to `to`."""
    isolating = [
        p
        for p in policies
        if p["metadata"].get("namespace", namespace) == namespace
        and "Egress" in p["spec"].get("policyTypes", [])
        and selects(p["spec"]["podSelector"], WORKER)
    ]
    if not isolating:
        return True  # no policy selects it for egress: everything is allowed
    return any(
        port_matches(rule.get("ports"), to)
        and (not rule.get("to") or any(peer_matches(peer, to, namespace) for peer in rule["to"]))
        for policy in isolating
        for rule in policy["spec"].get("egress") or []
    )


def open_rules(policies: list[dict[str, Any]]) -> list[str]:
    """Egress rules that reach every address, or every pod of every namespace."""
    found = []
    for policy in policies:
        for i, rule in enumerate(policy["spec"].get("egress") or []):
            where = f"{policy['metadata']['name']} egress[{i}]"
            if not rule.get("to"):
                found.append(f"{where}: no destinations (every address)")
            for peer in rule.get("to") or []:
                cidr = peer.get("ipBlock", {}).get("cidr")
                if cidr is not None and ipaddress.ip_network(cidr).prefixlen == 0:
                    found.append(f"{where}: {cidr}")
                selector = peer.get("namespaceSelector")
                if selector is not None and not selector:
                    found.append(f"{where}: every namespace")
    return found


def network_policies(folder: str) -> list[dict[str, Any]]:
    return [item for item in render(K8S / folder) if item["kind"] == "NetworkPolicy"]


def config(folder: str) -> dict[str, str]:
    (configmap,) = [item for item in render(K8S / folder) if item["kind"] == "ConfigMap"]
    data: dict[str, str] = configmap["data"]
    return data


def api_server_addresses(policies: list[dict[str, Any]]) -> list[str]:
    (policy,) = [p for p in policies if p["metadata"]["name"] == "zdp-worker-api-server"]
    return [
        str(ipaddress.ip_network(peer["ipBlock"]["cidr"]).network_address)
        for rule in policy["spec"]["egress"]
        for peer in rule["to"]
    ]


# --------------------------------------------------------------------------- the checker itself

BEFORE = """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: zdp-worker}
spec:
  podSelector: {matchLabels: {app.kubernetes.io/name: zdp-worker}}
  policyTypes: ["Ingress", "Egress"]
  ingress: []
  egress:
    - ports: [{protocol: TCP, port: 7233}]
    - ports: [{protocol: TCP, port: 443}, {protocol: TCP, port: 6443}]
"""


def test_the_checker_sees_the_policy_that_allowed_any_address_on_443() -> None:
    before = [yaml.safe_load(BEFORE)]
    assert open_rules(before) == [
        "zdp-worker egress[0]: no destinations (every address)",
        "zdp-worker egress[1]: no destinations (every address)",
    ]
    assert allowed(before, "default", Destination(443, ip="8.8.8.8"))
    assert not allowed(before, "default", Destination(22, ip="8.8.8.8"))
    everywhere = yaml.safe_load(BEFORE)
    everywhere["spec"]["egress"] = [
        {"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}, {"ipBlock": {"cidr": "::/0"}}]},
        {"to": [{"namespaceSelector": {}}]},
    ]
    assert open_rules([everywhere]) == [
        "zdp-worker egress[0]: 0.0.0.0/0",
        "zdp-worker egress[0]: ::/0",
        "zdp-worker egress[1]: every namespace",
    ]
    assert allowed([everywhere], "default", Destination(5432, ip="2001:4860:4860::8888"))
    assert allowed([], "default", Destination(443, ip="8.8.8.8"))  # no policy: not isolated


# --------------------------------------------------------------------------- the manifests


@pytest.mark.parametrize("folder", FOLDERS)
def test_no_egress_rule_reaches_every_address(folder: str) -> None:
    policies = network_policies(folder)
    assert policies
    assert open_rules(policies) == []
    namespace = FOLDERS[folder]
    for address in ELSEWHERE:
        for port in (22, 53, 80, 443, 5432, 6443, 7233):
            assert not allowed(policies, namespace, Destination(port, ip=address)), (address, port)
    for policy in policies:  # and nothing may connect to the worker
        assert not policy["spec"].get("ingress")


@pytest.mark.parametrize("folder", FOLDERS)
def test_the_worker_still_reaches_dns_temporal_the_api_server_prometheus_and_its_apps(
    folder: str,
) -> None:
    policies, namespace = network_policies(folder), FOLDERS[folder]

    def reaches(to: Destination) -> bool:
        return allowed(policies, namespace, to)

    dns = {"k8s-app": "kube-dns"}
    assert reaches(Destination(53, "UDP", namespace="kube-system", labels=dns))
    assert reaches(Destination(53, "TCP", namespace="kube-system", labels=dns))
    assert not reaches(Destination(53, "UDP", namespace="default", labels=dns))

    frontend = {"app.kubernetes.io/name": "temporal", "app.kubernetes.io/component": "frontend"}
    history = {**frontend, "app.kubernetes.io/component": "history"}
    assert reaches(Destination(7233, namespace="temporal", labels=frontend))
    assert not reaches(Destination(7234, namespace="temporal", labels=history))
    assert not reaches(Destination(7233, namespace="elsewhere", labels=frontend))

    (api_server,) = api_server_addresses(policies)
    assert reaches(Destination(443, ip=api_server)) and reaches(Destination(6443, ip=api_server))
    assert not reaches(Destination(22, ip=api_server))

    assert reaches(Destination(9090, namespace="monitoring"))
    assert not reaches(Destination(9091, namespace="monitoring"))

    app = {"app": "webshop", "zdp.io/slot": "canary"}
    assert reaches(Destination(8080, namespace=namespace, labels=app))
    assert not reaches(Destination(8080, namespace="elsewhere", labels=app))
    assert not reaches(Destination(8080, namespace=namespace, labels={"app": "webshop"}))


def test_only_production_reaches_outside_the_cluster_and_only_temporal_cloud() -> None:
    production = network_policies("overlays/production")
    (external,) = [p for p in production if p["metadata"]["name"] == "zdp-worker-external"]
    (rule,) = external["spec"]["egress"]
    assert [p["port"] for p in rule["ports"]] == [7233]
    (peer,) = rule["to"]
    cloud = str(ipaddress.ip_network(peer["ipBlock"]["cidr"]).network_address)
    assert ipaddress.ip_network(peer["ipBlock"]["cidr"]).num_addresses <= 256
    assert allowed(production, "production", Destination(7233, ip=cloud))
    assert not allowed(production, "production", Destination(443, ip=cloud))
    for folder in ("base", "overlays/staging"):
        policies = network_policies(folder)
        assert "zdp-worker-external" not in {p["metadata"]["name"] for p in policies}
        assert not allowed(policies, FOLDERS[folder], Destination(7233, ip=cloud))


@pytest.mark.parametrize("folder", FOLDERS)
def test_the_configured_temporal_and_prometheus_are_what_the_policy_allows(folder: str) -> None:
    policies, namespace, data = network_policies(folder), FOLDERS[folder], config(folder)
    host, port = data["TEMPORAL_ADDRESS"].rsplit(":", 1)
    in_cluster = re.fullmatch(r"([a-z0-9-]+)\.([a-z0-9-]+)\.svc(\.cluster\.local)?", host)
    if in_cluster:
        labels = {"app.kubernetes.io/name": "temporal", "app.kubernetes.io/component": "frontend"}
        to = Destination(int(port), namespace=in_cluster.group(2), labels=labels)
        assert allowed(policies, namespace, to), data["TEMPORAL_ADDRESS"]
    else:  # Temporal Cloud: reachable only through the external policy's addresses
        assert folder == "overlays/production" and port == "7233"
        assert any(p["metadata"]["name"] == "zdp-worker-external" for p in policies)
    prometheus = re.fullmatch(
        r"http://[a-z0-9-]+\.([a-z0-9-]+)\.svc\.cluster\.local:(\d+)", data["ZDP_PROMETHEUS_URL"]
    )
    assert prometheus, data["ZDP_PROMETHEUS_URL"]
    to = Destination(int(prometheus.group(2)), namespace=prometheus.group(1))
    assert allowed(policies, namespace, to)
