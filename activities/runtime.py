"""Activities: start a version in a slot and retire it, through the configured Runtime."""

from __future__ import annotations

from temporalio import activity

from activities._support import scoped, to_application_error, with_heartbeats
from zdp.errors import ZdpError
from zdp.models import Deployed, ProvisionInput, RetireInput
from zdp.platforms.base import Runtime


class RuntimeActivities:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @activity.defn
    async def provision_version(self, request: ProvisionInput) -> Deployed:
        """Start the release in its slot and return once it is ready (idempotent)."""
        try:
            return await with_heartbeats(
                scoped(self.runtime, request.scope).provision(
                    request.manifest, request.slot, request.app_env
                ),
                detail=f"waiting for {request.manifest.version} in {request.slot} to be ready",
            )
        except ZdpError as err:
            raise to_application_error(err) from None

    @activity.defn
    async def retire_version(self, request: RetireInput) -> None:
        """Stop what runs in the slot; retiring an empty slot succeeds (idempotent)."""
        try:
            await with_heartbeats(
                scoped(self.runtime, request.scope).retire(request.app, request.slot),
                detail=f"retiring {request.slot}",
            )
        except ZdpError as err:
            raise to_application_error(err) from None
