"""Backends by name: a new backend is a new module and one entry here, nothing else.

The worker asks for a runtime and a router by the names in its environment (`ZDP_RUNTIME`,
`ZDP_ROUTER`; `zdp up` sets `local` and `envoy`, and both default to `memory`; on a cluster,
`kubernetes` with `gateway-api` or `istio`, see docs/kubernetes.md). The health probe follows
the runtime: memory endpoints are probed in memory, real ones over HTTP.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from zdp.domain import AppQuery, HttpAppQuery
from zdp.errors import ConfigError
from zdp.platforms.base import HealthProbe, Runtime, TrafficRouter
from zdp.platforms.memory.platform import MemoryAppQuery, MemoryProbe, MemoryRouter, MemoryRuntime
from zdp.settings import settings


def _local_runtime() -> Runtime:
    from zdp.platforms.local.runtime import LocalRuntime

    return LocalRuntime()


def _envoy_router() -> TrafficRouter:
    from zdp.platforms.envoy.router import EnvoyRouter

    return EnvoyRouter()


def _kubernetes_runtime() -> Runtime:
    from zdp.platforms.kubernetes.runtime import KubernetesRuntime

    return KubernetesRuntime()


def _gateway_api_router() -> TrafficRouter:
    from zdp.platforms.kubernetes.gateway_api import GatewayApiRouter

    return GatewayApiRouter()


def _istio_router() -> TrafficRouter:
    from zdp.platforms.kubernetes.istio import IstioRouter

    return IstioRouter()


def _http_probe() -> HealthProbe:
    from zdp.health.http_probe import HttpProbe

    # A ceiling only: each gate bounds its probes by its policy's probe_timeout_ms.
    return HttpProbe(timeout=2.0)


RUNTIMES: dict[str, Callable[[], Runtime]] = {
    "memory": MemoryRuntime,
    "local": _local_runtime,
    "kubernetes": _kubernetes_runtime,
}
ROUTERS: dict[str, Callable[[], TrafficRouter]] = {
    "memory": MemoryRouter,
    "envoy": _envoy_router,
    "gateway-api": _gateway_api_router,
    "istio": _istio_router,
}
# Keyed by runtime name: the probe that understands that runtime's endpoints.
PROBES: dict[str, Callable[[], HealthProbe]] = {
    "memory": MemoryProbe,
    "local": _http_probe,
    "kubernetes": _http_probe,
}
# Keyed by runtime name too: how the domain checks ask a running version a question.
APP_QUERIES: dict[str, Callable[[], AppQuery]] = {
    "memory": MemoryAppQuery,
    "local": HttpAppQuery,
    "kubernetes": HttpAppQuery,
}

T = TypeVar("T")


def _pick(kind: str, table: dict[str, Callable[[], T]], name: str) -> T:
    factory = table.get(name)
    if factory is None:
        raise ConfigError(f"unknown {kind} '{name}': choose one of {', '.join(sorted(table))}")
    return factory()


def build_runtime(name: str | None = None) -> Runtime:
    return _pick("runtime", RUNTIMES, name or settings().RUNTIME)


def build_router(name: str | None = None) -> TrafficRouter:
    return _pick("router", ROUTERS, name or settings().ROUTER)


def build_probe(runtime_name: str | None = None) -> HealthProbe:
    return _pick("probe", PROBES, runtime_name or settings().RUNTIME)


def build_app_query(runtime_name: str | None = None) -> AppQuery:
    return _pick("app query", APP_QUERIES, runtime_name or settings().RUNTIME)
