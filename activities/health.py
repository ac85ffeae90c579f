"""Activity: the health gate over a slot, through the gate engine, heartbeating its progress."""

from __future__ import annotations

from temporalio import activity

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
        self.engine = GateEngine(
            runtime, probe, router, cache=cache if cache is not None else health_cache_from_env()
        )

    @activity.defn
    async def run_health_gate(self, request: GateInput) -> GateVerdict:
        """Judge the slot over the bake window; return at the first decisive breach."""

        def progress(evidence: dict[str, float]) -> None:
            activity.heartbeat(evidence)

        return await self.engine.run(request, progress)
