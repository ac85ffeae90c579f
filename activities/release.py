"""Activity: verify a signed release against the engine's trusted keys."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from temporalio import activity

from activities._support import to_application_error, with_heartbeats
from zdp.acceptance import Target, accept_release
from zdp.compliance.registry import load_registry, registry_dir
from zdp.config import EngineConfig, load_config
from zdp.errors import ReleaseVerificationError, ZdpError
from zdp.models import VerifiedRelease, VerifyReleaseInput
from zdp.release import verify_envelope
from zdp.settings import settings
from zdp.signing import load_trusted_keys


class ReleaseActivities:
    def __init__(
        self, trusted_keys_dir: Path | None = None, config: EngineConfig | None = None
    ) -> None:
        self.trusted_keys_dir = trusted_keys_dir or settings().trusted_keys
        self._config = config

    @activity.defn
    async def verify_release(self, request: VerifyReleaseInput) -> VerifiedRelease:
        """Trust the release only if a trusted key signed it, it names this app, and (for a GxP
        environment) it names its approved validation document. Heartbeats every second: a
        worker lost meanwhile is noticed by its heartbeat timeout."""
        return await with_heartbeats(self._verify_release(request))

    async def _verify_release(self, request: VerifyReleaseInput) -> VerifiedRelease:
        try:
            verified = verify_envelope(request.envelope, load_trusted_keys(self.trusted_keys_dir))
        except ZdpError as err:
            raise to_application_error(err) from None
        if request.environment is None:
            if verified.manifest.app != request.app:
                raise to_application_error(
                    ReleaseVerificationError(
                        f"release is for app '{verified.manifest.app}', not '{request.app}'"
                    )
                )
            return verified
        try:
            config = self._config if self._config is not None else load_config()
            checks = accept_release(
                verified.manifest,
                Target.of(request, request.environment),
                config,
                load_registry(registry_dir()),
                datetime.now(UTC),
            )
        except ZdpError as err:
            raise to_application_error(err) from None
        return verified.model_copy(update={"checks": checks})
