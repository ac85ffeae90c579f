"""Activity: the health gate over a slot's endpoints, heartbeating its progress."""

from __future__ import annotations

from temporalio import activity

from zdp.health.gate import run_gate
from zdp.models import GateInput, GateVerdict
from zdp.platforms.base import HealthProbe, Runtime


class HealthActivities:
    def __init__(self, runtime: Runtime, probe: HealthProbe) -> None:
        self.runtime = runtime
        self.probe = probe

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
        )
