"""Activity: score a release's risk and turn it into policy (approvals, steps, bakes, gates)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities._support import to_application_error
from zdp.config import EngineConfig, load_config
from zdp.errors import ZdpError
from zdp.models import AssessRiskInput, RiskReport
from zdp.policy import decide
from zdp.risk import assess_risk


class RiskActivities:
    def __init__(self, config: EngineConfig | None = None) -> None:
        self._config = config

    def config(self) -> EngineConfig:
        # Loaded lazily and re-read on every call when not injected, so a policy change
        # applies to the next deployment without restarting the worker.
        return self._config if self._config is not None else load_config()

    async def recent_failures(self, app: str, environment: str, window_days: int) -> int:
        """Deployments of this app and environment that rolled back or failed in the window.

        Temporal's visibility store is the record: every deployment upserts ZdpOutcome.
        """
        since = activity.info().current_attempt_scheduled_time - timedelta(days=window_days)
        query = (
            f'WorkflowType = "DeploymentWorkflow" AND ZdpApp = "{app}" '
            f'AND ZdpEnvironment = "{environment}" '
            f'AND ZdpOutcome IN ("rolled_back", "failed") '
            f'AND CloseTime > "{since.isoformat()}"'
        )
        result = await activity.client().count_workflows(query)
        return result.count

    @activity.defn
    async def assess_risk(self, request: AssessRiskInput) -> RiskReport:
        """Deterministic score with every factor, and the policy decision it leads to."""
        try:
            config = self.config()
            app = config.app(request.app)
            failures = await self.recent_failures(
                request.app, request.environment, config.recent_failure_window_days
            )
            assessment = assess_risk(
                request.manifest, app, request.environment, request.at, failures
            )
            decision = decide(
                assessment,
                config,
                request.app,
                request.environment,
                request.requested_steps,
                request.requested_bake_seconds,
            )
        except ZdpError as err:
            raise to_application_error(err) from None
        except ValueError as err:  # malformed input: retrying cannot fix it
            raise ApplicationError(str(err), type="BadInput", non_retryable=True) from None
        return RiskReport(assessment=assessment, decision=decision)
