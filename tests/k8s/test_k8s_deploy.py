"""Done when: `zdp deploy` with ZDP_RUNTIME=kubernetes and ZDP_ROUTER=gateway-api runs a full
canary to promotion, and a bad release to rollback, against the emulated API server.

Real parts: the Temporal dev server, the worker (in this process, its platform built from the
environment exactly as `zdp worker` builds it), the `zdp` CLI as a subprocess, the kubernetes
runtime and gateway-api router over HTTP to kmock, and HTTP probes of real loopback servers.
Played by the test: the controllers (tests/k8s/controllers.py) and the platform team, who
creates the HTTPRoute with its parentRefs before the first deployment.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from tests.k8s.cluster import DATA, NAMESPACE, Cluster, oci_release
from tests.k8s.controllers import Controllers, VersionServer
from tests.kit import Harness
from workers.worker import Platform, build_worker
from zdp.health.http_probe import HttpProbe
from zdp.models import TASK_QUEUE
from zdp.platforms.kubernetes.gateway_api import GatewayApiRouter
from zdp.platforms.kubernetes.runtime import KubernetesRuntime
from zdp.release import sign_manifest

ZDP = str(Path(sys.executable).parent / "zdp")
ROUTE = {
    "apiVersion": "gateway.networking.k8s.io/v1",
    "kind": "HTTPRoute",
    "metadata": {"name": "webshop"},
    "spec": {"parentRefs": [{"name": "public"}], "hostnames": ["shop.example.com"]},
}


@pytest.fixture
def versions() -> Iterator[dict[str, VersionServer]]:
    servers = {"1.0.0": VersionServer(True), "2.0.0": VersionServer(True)}
    servers["3.0.0"] = VersionServer(False)  # answers 503 everywhere, readiness included
    yield servers
    for server in servers.values():
        server.close()


@pytest.fixture
def k8s_env(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """What an operator sets for the worker: the backends by name, and where the cluster is."""
    env = {
        "ZDP_RUNTIME": "kubernetes",
        "ZDP_ROUTER": "gateway-api",
        "ZDP_K8S_API": cluster.url,
        "ZDP_K8S_NAMESPACE": NAMESPACE,
        "ZDP_K8S_TEMPLATES": str(DATA / "apps"),
        "ZDP_K8S_READY_TIMEOUT": "20",
        "ZDP_K8S_DRAIN_TIMEOUT": "5",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest_asyncio.fixture
async def on_kubernetes(
    kit: Harness,
    cluster: Cluster,
    versions: dict[str, VersionServer],
    k8s_env: dict[str, str],
) -> AsyncIterator[Platform]:
    """The worker on the real task queue, the controllers running, v1 serving from stable."""
    platform = Platform.from_environment()
    # Same probe, more patience: this one event loop also serves the emulated API server and
    # the worker, and a 50 ms timeout on a shared 2-core machine would fail a good release.
    platform.probe = HttpProbe(timeout=1.0)
    assert isinstance(platform.runtime, KubernetesRuntime)
    assert isinstance(platform.router, GatewayApiRouter)
    kit.task_queue = TASK_QUEUE
    await cluster.create("httproutes", ROUTE)
    try:
        async with Controllers(cluster, versions):
            await asyncio.wait_for(platform.runtime.provision(oci_release("1.0.0"), "stable"), 20)
            await platform.router.set_weights("webshop", {"stable": 100})
            worker = build_worker(
                kit.client,
                platform,
                config=kit.config,
                trusted_keys_dir=kit.signer.trusted_dir,
                task_queue=TASK_QUEUE,
                home=kit.home,
            )
            async with worker:
                yield platform
    finally:
        for backend in (platform.runtime, platform.router, platform.probe):
            await backend.aclose()  # type: ignore[attr-defined]


async def zdp_deploy(
    kit: Harness,
    version: str,
    tmp_path: Path,
    temporal_env: WorkflowEnvironment,
    env: dict[str, str],
) -> tuple[int, dict[str, Any], str]:
    """`zdp deploy webshop --env dev --release release.json --wait --json`, as CI runs it."""
    manifest = oci_release(version)
    folder = tmp_path / version
    folder.mkdir()
    (folder / "release.json").write_text(manifest.model_dump_json())
    (folder / "release.dsse.json").write_text(
        sign_manifest(manifest, kit.signer.key).model_dump_json()
    )
    cli_env = {k: v for k, v in os.environ.items() if not k.startswith("TEMPORAL_")}
    cli_env.update(
        env,
        TEMPORAL_ADDRESS=temporal_env.client.service_client.config.target_host,
        ZDP_HOME=str(tmp_path / ".zdp"),
        ZDP_USER="ci-bot",
        COLUMNS="200",
        # The worker runs with the test engine config; the CLI checks requests against it.
        ZDP_CONFIG=str(Path(__file__).parents[1] / "workflows" / "engine.yaml"),
    )
    proc = await asyncio.create_subprocess_exec(
        ZDP, "deploy", "webshop", "--env", "dev", "--release", str(folder / "release.json"),
        "--wait", "--json", env=cli_env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, json.loads(out or b"{}"), err.decode()


def route_backends(cluster: Cluster) -> list[tuple[str, int]]:
    route = cluster.stored("httproutes", "webshop")
    assert route is not None
    (rule,) = route["spec"]["rules"]
    return [(ref["name"], ref["weight"]) for ref in rule["backendRefs"]]


def applied_splits(cluster: Cluster, since: int) -> list[list[tuple[str, int]]]:
    """Every split the router applied to the route, in order."""
    return [
        [(ref["name"], ref["weight"]) for ref in call.body["spec"]["rules"][0]["backendRefs"]]
        for call in cluster.calls(since)
        if call.method == "PATCH" and call.path.endswith("/httproutes/webshop")
    ]


def running_version(cluster: Cluster, slot: str) -> str | None:
    deployment = cluster.stored("deployments", f"webshop-{slot}")
    return None if deployment is None else deployment["metadata"]["annotations"]["zdp.io/version"]


async def test_zdp_deploy_on_kubernetes_promotes_a_good_release_and_rolls_back_a_bad_one(
    kit: Harness,
    cluster: Cluster,
    on_kubernetes: Platform,
    k8s_env: dict[str, str],
    temporal_env: WorkflowEnvironment,
    tmp_path: Path,
) -> None:
    # 1. A good release walks the canary steps and is promoted: stable runs it at 100%.
    mark = cluster.mark()
    code, result, err = await zdp_deploy(kit, "2.0.0", tmp_path, temporal_env, k8s_env)
    assert code == 0, err
    assert result["outcome"] == "promoted", err
    assert applied_splits(cluster, mark) == [
        [("webshop-stable", 99), ("webshop-canary", 1)],
        [("webshop-stable", 95), ("webshop-canary", 5)],
        [("webshop-stable", 75), ("webshop-canary", 25)],
        [("webshop-canary", 100)],
        [("webshop-stable", 100)],  # after stable was rebuilt on 2.0.0
    ]
    assert route_backends(cluster) == [("webshop-stable", 100)]
    assert running_version(cluster, "stable") == "2.0.0"
    assert running_version(cluster, "canary") is None
    assert cluster.stored("services", "webshop-canary") is None
    assert await on_kubernetes.router.get_weights("webshop") == {"stable": 100}
    assert "traffic canary=5% stable=95%" in err

    # 2. A bad release (every answer 503, readiness too) never takes traffic: the traffic
    # guard refuses its first weight, and the canary goes.
    mark = cluster.mark()
    code, result, err = await zdp_deploy(kit, "3.0.0", tmp_path, temporal_env, k8s_env)
    assert code == 10, err
    assert result["outcome"] == "rolled_back", err
    cause = result["cause"] or ""
    assert "refusing to route 1% of webshop to slot canary" in cause, cause
    assert "none of its 2 endpoint(s) answers readiness (HTTP 503)" in cause, cause
    assert applied_splits(cluster, mark) == []
    assert route_backends(cluster) == [("webshop-stable", 100)]
    assert running_version(cluster, "stable") == "2.0.0"
    assert running_version(cluster, "canary") is None
    assert cluster.stored("services", "webshop-canary") is None
    deletes = [c.path for c in cluster.calls(mark) if c.method == "DELETE"]
    assert deletes == [
        f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/webshop-canary",
        f"/api/v1/namespaces/{NAMESPACE}/services/webshop-canary",
    ]
