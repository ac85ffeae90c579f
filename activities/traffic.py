"""Activities: read and set an app's traffic split through the configured TrafficRouter.

`set_weights` is the one place every weight change passes through, forward or in a rollback,
so it is where the traffic guard (`zdp.platforms.traffic_guard`) is enforced: no split is
applied that routes users to a slot where nothing runs, or newly to one that does not answer
readiness.
"""

from __future__ import annotations

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities._support import scoped, to_application_error
from zdp.errors import PlatformError, ZdpError
from zdp.models import WeightsInput
from zdp.platforms.base import HealthProbe, Runtime, TrafficRouter
from zdp.platforms.traffic_guard import (
    probe_where_it_matters,
    read_slots,
    refusal,
    restore_split,
)


class TrafficActivities:
    def __init__(
        self, router: TrafficRouter, runtime: Runtime, probe: HealthProbe | None = None
    ) -> None:
        self.router = router
        self.runtime = runtime
        self.probe = probe  # None: a slot that runs a version with endpoints counts as ready

    @activity.defn
    async def set_weights(self, request: WeightsInput) -> dict[str, int]:
        """Apply the split and confirm it by reading it back (idempotent).

        Refused (ApplicationError, nothing applied): a slot to hold weight where nothing runs
        (`EmptySlot`, not retried), or a slot newly taking traffic that answers no readiness
        probe (`SlotNotReady`, retried). With `restore`, the split is the one to return to, and
        the result says what was applied: see `restore_split`.
        """
        app = request.app
        router = scoped(self.router, request.scope)
        runtime = scoped(self.runtime, request.scope)
        try:
            current = await router.get_weights(app)
            slots = await read_slots(runtime, None, app, [*request.weights, *current])
            wanted = dict(request.weights)
            if request.restore:
                target = restore_split(request.weights, current, slots)
                if target is None:  # nowhere better to go: traffic stays as it is
                    return {**{slot: 0 for slot in request.weights}, **current}
                wanted = target
            slots = await probe_where_it_matters(runtime, self.probe, app, wanted, current, slots)
            refused = refusal(app, wanted, current, slots)
            if refused is not None:
                raise ApplicationError(
                    refused.message, type=refused.kind, non_retryable=not refused.retryable
                )
            applied = await router.set_weights(app, wanted)
        except ZdpError as err:
            raise to_application_error(err) from None
        if _nonzero(applied) != _nonzero(wanted):
            raise to_application_error(
                PlatformError(f"router applied {applied}, not the requested {wanted}")
            )
        return applied

    @activity.defn
    async def get_weights(self, app: str, scope: str | None = None) -> dict[str, int]:
        """The split that serves users now: slots with weight AND a running version (in the
        `scope` environment's own slots where the platform has them).

        A route can name a slot where nothing runs (a fresh router defaults to 100% stable);
        such weight serves nobody, so it is left out: before the first deployment this is empty.
        """
        router, runtime = scoped(self.router, scope), scoped(self.runtime, scope)
        try:
            weights = await router.get_weights(app)
            return {
                slot: w
                for slot, w in weights.items()
                if await runtime.deployed(app, slot) is not None
            }
        except ZdpError as err:
            raise to_application_error(err) from None


def _nonzero(weights: dict[str, int]) -> dict[str, int]:
    return {slot: w for slot, w in weights.items() if w}
