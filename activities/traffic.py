"""Activities: read and set an app's traffic split through the configured TrafficRouter."""

from __future__ import annotations

from temporalio import activity

from activities._support import to_application_error
from zdp.errors import PlatformError, ZdpError
from zdp.models import WeightsInput
from zdp.platforms.base import Runtime, TrafficRouter


class TrafficActivities:
    def __init__(self, router: TrafficRouter, runtime: Runtime | None = None) -> None:
        self.router = router
        self.runtime = runtime

    @activity.defn
    async def set_weights(self, request: WeightsInput) -> dict[str, int]:
        """Apply the split and confirm it by reading it back (idempotent)."""
        try:
            applied = await self.router.set_weights(request.app, request.weights)
        except ZdpError as err:
            raise to_application_error(err) from None
        wanted = {s: w for s, w in request.weights.items() if w}
        if {s: w for s, w in applied.items() if w} != wanted:
            raise to_application_error(
                PlatformError(f"router applied {applied}, not the requested {request.weights}")
            )
        return applied

    @activity.defn
    async def get_weights(self, app: str) -> dict[str, int]:
        """The split that serves users now: slots with weight AND a running version.

        A route can name a slot where nothing runs (a fresh router defaults to 100% stable);
        such weight serves nobody, so it is left out: before the first deployment this is empty.
        """
        try:
            weights = await self.router.get_weights(app)
            if self.runtime is None:
                return weights
            return {
                slot: w
                for slot, w in weights.items()
                if await self.runtime.deployed(app, slot) is not None
            }
        except ZdpError as err:
            raise to_application_error(err) from None
