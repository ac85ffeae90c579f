"""Backends by name: a new backend is a new module and one entry here, nothing else.

The worker asks for a runtime and a router by the names in its configuration
(`ZDP_RUNTIME`, `ZDP_ROUTER`; both default to `memory` until the local platform lands).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

from zdp.errors import ConfigError
from zdp.platforms.base import HealthProbe, Runtime, TrafficRouter
from zdp.platforms.memory import MemoryProbe, MemoryRouter, MemoryRuntime

RUNTIMES: dict[str, Callable[[], Runtime]] = {"memory": MemoryRuntime}
ROUTERS: dict[str, Callable[[], TrafficRouter]] = {"memory": MemoryRouter}
PROBES: dict[str, Callable[[], HealthProbe]] = {"memory": MemoryProbe}

T = TypeVar("T")


def _pick(kind: str, table: dict[str, Callable[[], T]], name: str) -> T:
    factory = table.get(name)
    if factory is None:
        raise ConfigError(f"unknown {kind} '{name}': choose one of {', '.join(sorted(table))}")
    return factory()


def build_runtime(name: str | None = None) -> Runtime:
    return _pick("runtime", RUNTIMES, name or os.environ.get("ZDP_RUNTIME", "memory"))


def build_router(name: str | None = None) -> TrafficRouter:
    return _pick("router", ROUTERS, name or os.environ.get("ZDP_ROUTER", "memory"))


def build_probe(name: str | None = None) -> HealthProbe:
    return _pick("probe", PROBES, name or os.environ.get("ZDP_RUNTIME", "memory"))
