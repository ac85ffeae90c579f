"""Activity: score a release's risk and turn it into policy (approvals, steps, bakes, gates)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities._support import scoped, to_application_error, with_heartbeats
from zdp.compliance.identity import (
    Expected,
    claim_start,
    identities_required,
    prove,
    requirement_text,
)
from zdp.compliance.registry import load_registry, registry_dir
from zdp.config import EngineConfig, load_config
from zdp.domain import AppQuery, HttpAppQuery, freeze_check, work_in_progress_check
from zdp.errors import ZdpError
from zdp.health.policy import load_gate_policies
from zdp.models import (
    ApproverIdentity,
    AssessRiskInput,
    Deployed,
    ProvenActor,
    RiskReport,
)
from zdp.platforms.base import Runtime, TrafficRouter
from zdp.policy import decide, part11_signers, with_approvals_floor
from zdp.risk import assess_risk, config_changes, downgrade_check
from zdp.settings import zdp_home


class RiskActivities:
    def __init__(
        self,
        config: EngineConfig | None = None,
        runtime: Runtime | None = None,
        router: TrafficRouter | None = None,
        app_query: AppQuery | None = None,
        approver_registry: Path | None = None,
        home: Path | None = None,
    ) -> None:
        self._config = config
        self.approver_registry = approver_registry
        self.home = home
        self.runtime = runtime
        self.router = router
        self.app_query = app_query or HttpAppQuery()

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

    async def serving(self, app: str, environment: str | None) -> list[Deployed]:
        """The versions taking traffic now (in `environment`'s own slots where the platform has
        them), the one with the most traffic first."""
        if self.runtime is None or self.router is None:
            return []
        runtime, router = scoped(self.runtime, environment), scoped(self.router, environment)
        weights = await router.get_weights(app)
        found: list[Deployed] = []
        for slot, weight in sorted(weights.items(), key=lambda kv: -kv[1]):
            if weight > 0 and (deployed := await runtime.deployed(app, slot)) is not None:
                found.append(deployed)
        return found

    @activity.defn
    async def assess_risk(self, request: AssessRiskInput) -> RiskReport:
        """`_assess_risk`, heartbeating every second: a worker lost meanwhile is noticed by its
        heartbeat timeout."""
        return await with_heartbeats(self._assess_risk(request))

    async def _assess_risk(self, request: AssessRiskInput) -> RiskReport:
        """Domain checks, the deterministic score with every factor, and the policy decision.

        A blocking domain check does not raise: the report says why (`blocked`) and the workflow
        ends the deployment before anything changes, with the checks in its timeline.
        """
        try:
            config = self.config()
            app = config.app(request.app)
            failures = await self.recent_failures(
                request.app, request.environment, config.recent_failure_window_days
            )
            freeze = freeze_check(app, request.environment, request.at, request.emergency_override)
            serving = await self.serving(request.app, request.scope)
            progress = await work_in_progress_check(
                app.work_in_progress,
                request.environment,
                [endpoint for deployed in serving for endpoint in deployed.endpoints],
                self.app_query,
            )
            running = serving[0] if serving else None
            changes = config_changes(
                request.manifest.config_overrides, running.config if running else {}
            )
            assessment = assess_risk(
                request.manifest,
                app,
                request.environment,
                request.at,
                failures,
                domain_factors=[progress.factor],
                changes=changes,
            )
            decision = decide(
                assessment,
                config,
                request.app,
                request.environment,
                request.requested_steps,
                request.requested_bake_seconds,
                # Re-read with the config: a policy change applies to the next deployment.
                load_gate_policies(config.gate_policies_path()),
            )
            decision = with_approvals_floor(
                decision, freeze.approvals_floor, request.app, request.environment
            )
            env = app.environment(request.environment)
            registry = load_registry(self.approver_registry or registry_dir(self.home))
            signers = part11_signers(env, decision, registry)
            required = identities_required(
                request.environment, env.compliance_profiles, env.require_proven_identities
            )
            why_required = requirement_text(request.environment, env.compliance_profiles)
            initiator, refused = self.initiator(request, registry, required, why_required)
            downgrade = downgrade_check(
                request.manifest.version,
                running.version if running else None,
                request.allow_downgrade,
                request.initiator,
                {*env.operators, *env.approvers},
            )
        except ZdpError as err:
            raise to_application_error(err) from None
        except ValueError as err:  # malformed input: retrying cannot fix it
            raise ApplicationError(str(err), type="BadInput", non_retryable=True) from None
        checks = [freeze.check, progress.check, *([downgrade] if downgrade else [])]
        blocked = "; ".join(c.detail for c in checks if c.blocking) or None
        return RiskReport(
            assessment=assessment,
            decision=decision,
            checks=checks,
            blocked=blocked,
            emergency_override=request.emergency_override if freeze.approvals_floor else None,
            signers=signers,
            identities=registry,
            identities_required=required,
            identities_reason=why_required,
            initiator=initiator,
            initiator_refused=refused,
            app_env=env.app_env or request.environment,
            operators=list(env.operators),
            running_version=running.version if running else None,
            config_changes=changes,
        )

    def initiator(
        self,
        request: AssessRiskInput,
        registry: dict[str, ApproverIdentity],
        required: bool,
        why_required: str,
    ) -> tuple[ProvenActor | None, str | None]:
        """Who started the deployment, proven by their signed start (claimed for this run
        only), or the typed name where that is allowed; (None, why) when refused."""
        if request.initiator is None:  # an older workflow that does not send it
            return None, None
        expected = Expected.start(
            request.app,
            request.environment,
            request.initiator,
            request.channel,
            request.manifest.artifact.digest,
            request.request_digest,
        )
        at = request.started_at or request.at
        proven, refused = prove(
            request.initiator_proof, expected, registry, at, set(), required, why_required
        )
        if proven is not None and proven.proven and request.initiator_proof is not None:
            refused = claim_start(
                (self.home or zdp_home()) / "identities" / "used-starts",
                request.initiator_proof,
                request.run_id or "",
            )
            if refused:
                return None, refused
        return proven, refused
