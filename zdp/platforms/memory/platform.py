"""The in-memory platform: a Runtime, a TrafficRouter and a HealthProbe over one shared state.

It exists for tests and for trying the workflow without infrastructure. Everything a real
backend does that the workflow relies on is kept: idempotent operations, weights read back
after they are set, endpoints per slot. Faults can be injected (an unhealthy version, a
version that fails once it takes a given share of traffic, a router that fails transiently)
so that tests exercise the same paths a real outage would. State lives in this process only.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from zdp.errors import PlatformError, ZdpError
from zdp.models import Deployed, ProbeResult, ReleaseManifest


@dataclass
class MemoryState:
    """What runs where, the applied weights, the injected faults and a log of every operation."""

    deployed: dict[tuple[str, str], Deployed] = field(default_factory=dict)
    weights: dict[str, dict[str, int]] = field(default_factory=dict)
    unhealthy_versions: set[tuple[str, str]] = field(default_factory=set)
    dead_endpoints: set[str] = field(default_factory=set)
    # What a running version answers to a domain check: (app, path) -> JSON document.
    app_answers: dict[tuple[str, str], Any] = field(default_factory=dict)
    fail_at_weight: dict[tuple[str, str], int] = field(default_factory=dict)
    router_failures: int = 0
    # weights text ("canary=0,stable=100") -> how many more times setting it fails
    fail_weights: dict[str, int] = field(default_factory=dict)
    provision_delay_seconds: float = 0.0
    operations: list[tuple[str, str, str]] = field(default_factory=list)
    # The APP_ENV each (app, slot) was last provisioned for.
    app_envs: dict[tuple[str, str], str] = field(default_factory=dict)
    # What the runtime reports with each start (as the local runtime reports its confinement).
    provision_notes: list[str] = field(default_factory=list)
    # (operation, environment) for each provision, retire and weights change made through an
    # environment's view (`for_environment`): the memory platform shares one set of slots, but
    # records which environment asked, as the embedded stack would give it its own.
    scopes: list[tuple[str, str | None]] = field(default_factory=list)

    def reset(self) -> None:
        self.deployed.clear()
        self.weights.clear()
        self.unhealthy_versions.clear()
        self.dead_endpoints.clear()
        self.app_answers.clear()
        self.fail_at_weight.clear()
        self.router_failures = 0
        self.fail_weights.clear()
        self.provision_delay_seconds = 0.0
        self.app_envs.clear()
        self.provision_notes.clear()
        self.scopes.clear()
        self.operations.clear()

    def log(self, op: str, app: str, detail: str) -> None:
        self.operations.append((op, app, detail))

    def ops(self, app: str) -> list[tuple[str, str]]:
        """(operation, detail) pairs for one app, in the order they happened."""
        return [(op, detail) for op, a, detail in self.operations if a == app]

    def slot_of(self, app: str, version: str) -> str | None:
        for (a, slot), dep in self.deployed.items():
            if a == app and dep.version == version:
                return slot
        return None


# One state per process, shared by the runtime, the router and the probe.
STATE = MemoryState()


class MemoryRuntime:
    """Runtime whose versions are entries in `MemoryState.deployed`."""

    def __init__(self, state: MemoryState = STATE, scope: str | None = None) -> None:
        self.state = state
        self.scope = scope

    def for_environment(self, environment: str) -> MemoryRuntime:
        """The same slots, with the environment that acts on them recorded (state.scopes)."""
        return MemoryRuntime(self.state, environment)

    async def provision(
        self, release: ReleaseManifest, slot: str, app_env: str | None = None
    ) -> Deployed:
        key = (release.app, slot)
        current = self.state.deployed.get(key)
        if current is not None and current.version == release.version:
            return current  # already running: idempotent
        if current is not None:
            raise PlatformError(
                f"slot {slot} of {release.app} runs {current.version}; retire it before "
                f"provisioning {release.version}"
            )
        if self.state.provision_delay_seconds:
            await asyncio.sleep(self.state.provision_delay_seconds)
        dep = Deployed(
            app=release.app,
            slot=slot,
            version=release.version,
            endpoints=[f"memory://{release.app}/{slot}/{release.version}/{i}" for i in range(2)],
            config=dict(release.config_overrides),
            notes=list(self.state.provision_notes),
        )
        self.state.deployed[key] = dep
        self.state.log("provision", release.app, f"{slot}={release.version}")
        self.state.scopes.append(("provision", self.scope))
        self.state.app_envs[key] = app_env or "local"
        return dep

    async def retire(self, app: str, slot: str) -> None:
        dep = self.state.deployed.pop((app, slot), None)
        if dep is not None:
            self.state.log("retire", app, f"{slot}={dep.version}")
            self.state.scopes.append(("retire", self.scope))

    async def endpoints(self, app: str, slot: str) -> list[str]:
        dep = self.state.deployed.get((app, slot))
        return list(dep.endpoints) if dep else []

    async def deployed(self, app: str, slot: str) -> Deployed | None:
        return self.state.deployed.get((app, slot))


class MemoryRouter:
    """TrafficRouter whose route table is `MemoryState.weights`."""

    def __init__(self, state: MemoryState = STATE, scope: str | None = None) -> None:
        self.state = state
        self.scope = scope

    def for_environment(self, environment: str) -> MemoryRouter:
        """The same routes, with the environment that changes them recorded (state.scopes)."""
        return MemoryRouter(self.state, environment)

    async def set_weights(self, app: str, weights: dict[str, int]) -> dict[str, int]:
        if self.state.router_failures > 0:
            self.state.router_failures -= 1
            self.state.log("router_error", app, "injected transient failure")
            raise PlatformError("router unavailable (injected transient failure)")
        applied = {slot: w for slot, w in sorted(weights.items())}
        text = ",".join(f"{s}={w}" for s, w in applied.items())
        if self.state.fail_weights.get(text, 0) > 0:
            self.state.fail_weights[text] -= 1
            self.state.log("router_error", app, f"injected transient failure setting {text}")
            raise PlatformError(f"router unavailable setting {text} (injected transient failure)")
        if self.state.weights.get(app) != applied:
            self.state.weights[app] = applied
            self.state.log("weights", app, text)
            self.state.scopes.append(("weights", self.scope))
        return dict(applied)

    async def get_weights(self, app: str) -> dict[str, int]:
        return dict(self.state.weights.get(app, {}))


class MemoryProbe:
    """HealthProbe for `memory://app/slot/version/n` endpoints, honouring injected faults."""

    def __init__(self, state: MemoryState = STATE) -> None:
        self.state = state

    async def probe(self, endpoint: str) -> ProbeResult:
        started = time.perf_counter()
        try:
            app, slot, version, _ = endpoint.removeprefix("memory://").split("/")
        except ValueError:
            return ProbeResult(endpoint=endpoint, ok=False, latency_ms=0.0, error="bad endpoint")
        error = (
            "connection refused: endpoint down"
            if endpoint in self.state.dead_endpoints
            else self._fault(app, slot, version)
        )
        latency = (time.perf_counter() - started) * 1000
        if error:
            return ProbeResult(
                endpoint=endpoint, ok=False, latency_ms=latency, status_code=503, error=error
            )
        return ProbeResult(endpoint=endpoint, ok=True, latency_ms=latency, status_code=200)

    def _fault(self, app: str, slot: str, version: str) -> str | None:
        dep = self.state.deployed.get((app, slot))
        if dep is None or dep.version != version:
            return "connection refused: version not running"
        if (app, version) in self.state.unhealthy_versions:
            return "injected fault: version unhealthy"
        threshold = self.state.fail_at_weight.get((app, version))
        if threshold is not None and self.state.weights.get(app, {}).get(slot, 0) >= threshold:
            return f"injected fault: fails at weight >= {threshold}"
        return None


class MemoryAppQuery:
    """AppQuery for memory endpoints: the answer set in `MemoryState.app_answers`."""

    def __init__(self, state: MemoryState = STATE) -> None:
        self.state = state

    async def get_json(self, endpoint: str, path: str, timeout: float) -> Any:
        app, slot, _version, _ = endpoint.removeprefix("memory://").split("/")
        if endpoint in self.state.dead_endpoints or self.state.deployed.get((app, slot)) is None:
            raise ZdpError(f"{endpoint}{path}: connection refused")
        try:
            return self.state.app_answers[(app, path)]
        except KeyError:
            raise ZdpError(f"{endpoint}{path} answered HTTP 404") from None
