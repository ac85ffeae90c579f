"""Activity: the health gate over a slot's endpoints and traffic, heartbeating its progress."""

from __future__ import annotations

from temporalio import activity

from zdp.health.gate import TrafficCounter, run_gate
from zdp.models import GateInput, GateVerdict
from zdp.platforms.base import HealthProbe, Runtime, TrafficRouter, TrafficStats


class HealthActivities:
    def __init__(
        self, runtime: Runtime, probe: HealthProbe, router: TrafficRouter | None = None
    ) -> None:
        self.runtime = runtime
        self.probe = probe
        self.router = router

    @activity.defn
    async def run_health_gate(self, request: GateInput) -> GateVerdict:
        """Probe the slot over the bake window; return at the first decisive breach."""

        async def endpoints() -> list[str]:
            return await self.runtime.endpoints(request.app, request.slot)

        def progress(evidence: dict[str, float]) -> None:
            activity.heartbeat(evidence)

        return await run_gate(
            self.probe,
            endpoints,
            request.thresholds,
            request.slot,
            request.bake_seconds,
            progress=progress,
            traffic=self._traffic_counter(request.app, request.slot),
        )

    def _traffic_counter(self, app: str, slot: str) -> TrafficCounter | None:
        router = self.router
        if not isinstance(router, TrafficStats):
            return None

        async def counts() -> tuple[int, int]:
            stats = (await router.slot_stats(app)).get(slot)
            return (stats.requests, stats.failures) if stats is not None else (0, 0)

        return counts
