"""Activity: the health gate over a slot, through the gate engine, heartbeating its progress."""

from __future__ import annotations

from temporalio import activity

from activities._support import scoped
from zdp.health.cache import HealthCache, health_cache_from_env
from zdp.health.engine import GateEngine
from zdp.models import GateInput, GateVerdict
from zdp.platforms.base import HealthProbe, Runtime, TrafficRouter


class HealthActivities:
    def __init__(
        self,
        runtime: Runtime,
        probe: HealthProbe,
        router: TrafficRouter | None = None,
        cache: HealthCache | None = None,
    ) -> None:
        self.runtime, self.probe, self.router = runtime, probe, router
        self.cache = cache if cache is not None else health_cache_from_env()
        self.engine = GateEngine(runtime, probe, router, cache=self.cache)
        self._engines: dict[str, GateEngine] = {}

    def engine_for(self, environment: str | None) -> GateEngine:
        """The gate engine over `environment`'s own slots (one per environment, kept: its
        circuit breakers outlive a gate)."""
        if not environment or not hasattr(self.runtime, "for_environment"):
            return self.engine
        engine = self._engines.get(environment)
        if engine is None:
            router = scoped(self.router, environment) if self.router is not None else None
            engine = GateEngine(
                scoped(self.runtime, environment), self.probe, router, cache=self.cache
            )
            self._engines[environment] = engine
        return engine

    @activity.defn
    async def run_health_gate(self, request: GateInput) -> GateVerdict:
        """Judge the slot over the bake window; return at the first decisive breach."""

        def progress(evidence: dict[str, float]) -> None:
            activity.heartbeat(evidence)

        return await self.engine_for(request.scope).run(request, progress)
