"""Fixtures of the Kubernetes tests: an emulated API server per test, and backends pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import kmock
import pytest
import pytest_asyncio

from tests.k8s.cluster import DATA, NAMESPACE, RESOURCES, ApplyingEmulator, Cluster
from zdp.platforms.kubernetes.config import K8sSettings
from zdp.platforms.kubernetes.gateway_api import GatewayApiRouter
from zdp.platforms.kubernetes.istio import IstioRouter
from zdp.platforms.kubernetes.runtime import KubernetesRuntime


@pytest_asyncio.fixture
async def cluster() -> AsyncIterator[Cluster]:
    emulator = ApplyingEmulator()
    for resource in RESOURCES.values():
        emulator.resources[resource] = {}
    async with emulator, kmock.Server(emulator) as server:
        hands = Cluster(emulator, server)
        try:
            yield hands
        finally:
            await hands.aclose()


@pytest.fixture
def settings(cluster: Cluster) -> K8sSettings:
    return K8sSettings(
        namespace=NAMESPACE,
        api=cluster.url,
        templates=DATA / "apps",
        ready_timeout=5.0,
        drain_timeout=2.0,
    )


@pytest_asyncio.fixture
async def runtime(settings: K8sSettings) -> AsyncIterator[KubernetesRuntime]:
    backend = KubernetesRuntime(settings, pod_check_seconds=0.1, endpoints_ttl=0.0)
    try:
        yield backend
    finally:
        await backend.aclose()


@pytest_asyncio.fixture
async def gateway(settings: K8sSettings) -> AsyncIterator[GatewayApiRouter]:
    router = GatewayApiRouter(settings)
    try:
        yield router
    finally:
        await router.aclose()


@pytest_asyncio.fixture
async def istio(settings: K8sSettings) -> AsyncIterator[IstioRouter]:
    router = IstioRouter(settings)
    try:
        yield router
    finally:
        await router.aclose()
