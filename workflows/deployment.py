"""DeploymentWorkflow: one durable deployment, from signed release to promoted or rolled back.

`run()` reads as the runbook: verify, assess risk, await approval, provision, shift traffic
behind health gates, promote. Anything that goes wrong after the first change to the world runs
the registered compensations, traffic first. Message handlers sit under `run()`; each says
what it may change. Only deterministic code here: time is `workflow.now()`, I/O is activities.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any, Literal

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, FailureError

with workflow.unsafe.imports_passed_through():
    from activities.compliance import AUDIT_STORAGE_FULL, ComplianceActivities
    from activities.health import HealthActivities
    from activities.notify import NotifyActivities
    from activities.release import ReleaseActivities
    from activities.risk import RiskActivities
    from activities.runtime import RuntimeActivities
    from activities.traffic import TrafficActivities
    from workflows.compensation import RUNTIME_HEARTBEAT, Compensation, CompensationStack
    from workflows.state import DeploymentState
    from zdp.compliance.identity import request_digest
    from zdp.metrics import DeploymentObserver
    from zdp.models import (
        DEFAULT_STEPS,
        AbortInput,
        ApprovalInput,
        AssessRiskInput,
        AuditRecordInput,
        Deployed,
        DeploymentRequest,
        DeploymentResult,
        DeploymentStatus,
        DomainCheck,
        GateInput,
        GateResult,
        GateVerdict,
        Outcome,
        Phase,
        PromoteInput,
        ProvisionInput,
        RequestAction,
        RetireInput,
        RiskReport,
        SealEvidenceInput,
        Strategy,
        TimelineEvent,
        VerifiedRelease,
        VerifyReleaseInput,
        WeightsInput,
    )
    from zdp.notify import FINAL_KINDS, MessageRef, Notification, NotificationKind, top_factors
    from zdp.temporal import (
        SA_APP,
        SA_ENVIRONMENT,
        SA_OUTCOME,
        SA_PHASE,
        SA_RISK_SCORE,
        SA_STRATEGY,
        SA_VERSION,
    )
    from zdp.tracing import trace_id_from_headers

# Forward activities give up after a few tries; the deployment then rolls back.
FORWARD_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=5,
)
GATE_HEARTBEAT = timedelta(seconds=5)
# workflow.patched ids: each guards a change that running histories must not see retroactively.
PAUSE_WHEN_BASELINE_DEGRADES = "pause-when-baseline-degrades"
AUDIT_AND_EVIDENCE = "audit-log-and-evidence-bundle"
NOTIFICATIONS = "notifications"
# A rollback returns traffic to what served before the deployment, as far as it still runs, and
# never routes users to nothing; see _roll_back.
ROLLBACK_NEVER_ROUTES_TO_NOTHING = "rollback-never-routes-to-nothing"
# Refused decisions are judged in the update handlers and recorded (see _decide); histories
# recorded before judged them in validators only, and their handlers just applied them.
REFUSALS_ON_THE_RECORD = "refusals-on-the-record"
# A flood of refused requests must not push the history towards Temporal's limits: past this
# many recorded refusals, further ones are refused in the validator, unrecorded (said so).
MAX_RECORDED_REFUSALS = 50
# Proven identities: a pause, resume or abort that arrives before the risk report (and the
# identity registry with it) is judged as soon as the report is in; histories from before
# judged it on arrival.
PROVEN_IDENTITIES = "proven-identities"
# Notifications name their run and release (approval buttons act on exactly that run), the
# approval messages posted are kept, and every final outcome (expired and aborted too) closes
# them; histories from before sent none for expired and aborted and kept no messages.
MESSAGES_BOUND_TO_RUNS = "messages-bound-to-runs"
# An operator's pause shows in ZdpPhase ("paused"), and a resume puts the phase back, so the
# saved query for paused deployments finds them; histories from before left ZdpPhase as it was.
PHASE_SHOWS_PAUSED = "phase-shows-paused"
# A deployment blocked only by work in progress (a batch on a production line) waits for it to
# finish, up to the check's wait_seconds; histories from before ended `blocked` at once.
WAIT_WHILE_WORK_IN_PROGRESS = "wait-while-work-in-progress"
# Each environment acts on its own slots and listener where the platform has them (the
# embedded stack); histories from before used the slots every environment shared.
ENVIRONMENTS_OWN_SLOTS = "environments-own-slots"
# Audit storage that is full fails record_audit at once (not retried): the deployment pauses
# with an alert until an operator frees space and resumes, then appends again (_audit).
AUDIT_STORAGE_FULL_PAUSES = "audit-storage-full-pauses"
NOTIFY_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=500), maximum_attempts=3)
# Evidence must not be lost: the audit and sealing activities retry until they succeed, as
# compensations do; a failing one shows in the Temporal UI with its cause.
EVIDENCE_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
)


class RollbackRequired(Exception):
    """Raised inside run() to stop moving forward and undo what was done."""

    def __init__(self, cause: str, outcome: Outcome = Outcome.rolled_back) -> None:
        super().__init__(cause)
        self.cause = cause
        self.outcome = outcome


# The moments that change what a rollback undoes (DeploymentWorkflow._undo_after).
UndoMoment = Literal[
    "provisioned", "traffic_moved", "switched_for_good", "canary_holds_all", "promoted",
    "rolled_back",
]  # fmt: skip


@workflow.defn
class DeploymentWorkflow:
    @workflow.init
    def __init__(self, request: DeploymentRequest) -> None:
        self.request = request
        self.state = DeploymentState.start(request)
        self.metrics = DeploymentObserver(request.app, request.environment, request.strategy.value)
        self.state.observer = self._observe
        self.undo = CompensationStack()
        self.slots: dict[str, str] = {}
        self.audited = 0  # timeline events already in the audit log
        self.report: RiskReport | None = None
        self.scope: str | None = None
        # What served before this deployment (get_weights at provision: slots with weight and a
        # running version), and whether this run plans and rolls back traffic from it.
        self.before: dict[str, int] = {}
        self.guarded = False
        # pause/resume/abort received before identities could be checked: (name, request,
        # release digest and time at arrival).
        self.pending_controls: list[tuple[str, AbortInput, str, datetime]] = []
        # Approval messages posted (Slack), closed when the deployment ends.
        self.approval_messages: list[MessageRef] = []
        # Paused because the audit log cannot be written (see _hold_for_audit_storage), and
        # whether the metrics have seen the deployment end (held at its end, it ends twice).
        self.audit_held = False
        self.done_observed = False

    # ------------------------------------------------------------------ the runbook

    @workflow.run
    async def run(self, request: DeploymentRequest) -> DeploymentResult:
        # Which environment's own slots the platform activities act on (None: shared slots).
        self.scope = request.environment if workflow.patched(ENVIRONMENTS_OWN_SLOTS) else None
        self.state.record(
            workflow.now(),
            "started",
            self._started_message(),
            data={
                "initiator": request.initiator,
                "change_ref": request.change_ref,
                "reason": request.reason,
                **_trace_of_start(),
            },
        )
        try:
            release = await self._verify()
            report = await self._assess_risk(release)
            await self._await_approval(report)
            await self._provision(release)
            await self._shift(report)
            await self._promote()
            return await self._finish(Outcome.promoted, None)
        except RollbackRequired as stop:
            return await self._roll_back(stop.cause, stop.outcome)
        except ActivityError as err:
            return await self._roll_back(_activity_cause(err), Outcome.rolled_back)

    # ------------------------------------------------------------------ phases

    async def _verify(self) -> VerifiedRelease:
        self._enter(Phase.verify, "checking the release signature against trusted keys")
        try:
            release = await workflow.execute_activity_method(
                ReleaseActivities.verify_release,
                VerifyReleaseInput(
                    app=self.request.app,
                    envelope=self.request.release,
                    environment=self.request.environment,
                    change_ref=self.request.change_ref,
                    reason=self.request.reason,
                    strategy=self.request.strategy,
                ),
                start_to_close_timeout=timedelta(seconds=30),
                heartbeat_timeout=RUNTIME_HEARTBEAT,
                retry_policy=FORWARD_RETRY,
                summary=f"verify signed release of {self.request.app}",
            )
        except ActivityError as err:
            raise RollbackRequired(
                f"release rejected: {_activity_cause(err)}", Outcome.rejected
            ) from None
        self.state.version = release.manifest.version
        self.state.manifest = release.manifest
        workflow.upsert_search_attributes([SA_VERSION.value_set(release.manifest.version)])
        self.state.record(
            workflow.now(),
            "release_verified",
            f"release {release.manifest.version} verified, signed by {release.signer_fingerprint}"
            + _overrides_text(release.manifest.config_overrides),
            data={
                "signer": release.signer_fingerprint,
                "digest": release.manifest.artifact.digest,
                "statement": release.statement_digest,
                "config_overrides": dict(release.manifest.config_overrides),
                # The change record (PCI/SOX fields), for the report an auditor reads.
                "change": release.manifest.change.model_dump(mode="json"),
            },
        )
        self._record_checks(release.checks)
        return release

    async def _assess_risk(self, release: VerifiedRelease) -> RiskReport:
        self._enter(Phase.assess_risk, "scoring change scope, criticality, calendar, history")
        report = await self._score(release)
        self._take_report(report)
        self._record_initiator(report)
        for name, control, digest, at in self.pending_controls:
            self._control(name, control, digest, at)
        self.pending_controls.clear()
        if report.blocked and _waitable(report) and workflow.patched(WAIT_WHILE_WORK_IN_PROGRESS):
            report = await self._wait_until_clear(release, report)
        if report.blocked:
            # Nothing has changed yet: the deployment ends here, with the reason.
            raise RollbackRequired(f"blocked: {report.blocked}", Outcome.blocked)
        if report.emergency_override:
            self.state.record(
                workflow.now(),
                "emergency_override",
                f"emergency override inside a freeze window by {self.request.initiator}: "
                f"{report.emergency_override}; {report.decision.approvals_required} approvals "
                "required",
                actor=self.request.initiator,
                data={"reason": report.emergency_override},
            )
        await self._notify("started")
        return report

    def _record_initiator(self, report: RiskReport) -> None:
        """Who started the deployment, as proven; a start refused ends the deployment here,
        before anything changes."""
        if report.initiator_refused:
            r = self.request
            self.state.refused(
                workflow.now(), "start", r.initiator, r.channel, report.initiator_refused
            )
            raise RollbackRequired(f"refused: {report.initiator_refused}", Outcome.rejected)
        if report.initiator is not None:
            required = "required" if report.identities_required else "not required"
            self.state.record(
                workflow.now(),
                "initiator",
                f"started by {report.initiator.line()}; proven identities {required} here"
                + (f" ({report.identities_reason})" if report.identities_required else ""),
                report.initiator.user,
                {"proof": report.initiator.model_dump(mode="json")},
            )

    async def _score(self, release: VerifiedRelease) -> RiskReport:
        return await workflow.execute_activity_method(
            RiskActivities.assess_risk,
            AssessRiskInput(
                app=self.request.app,
                environment=self.request.environment,
                manifest=release.manifest,
                at=workflow.now(),
                requested_steps=self.request.steps,
                requested_bake_seconds=self.request.bake_seconds,
                emergency_override=self.request.emergency_override,
                started_at=workflow.info().workflow_start_time,
                initiator=self.request.initiator,
                initiator_proof=self.request.proof,
                channel=self.request.channel,
                request_digest=request_digest(self.request),
                run_id=workflow.info().run_id,
                allow_downgrade=self.request.allow_downgrade,
                scope=self.scope,
            ),
            start_to_close_timeout=timedelta(seconds=30),
            heartbeat_timeout=RUNTIME_HEARTBEAT,
            retry_policy=FORWARD_RETRY,
            summary="score risk and apply policy",
        )

    def _take_report(self, report: RiskReport) -> None:
        """Apply a risk report and put it on the record: score, factors, checks."""
        self.state.apply_risk(report)
        workflow.upsert_search_attributes([SA_RISK_SCORE.value_set(report.assessment.score)])
        top = sorted(report.assessment.factors, key=lambda f: -f.points)[:3]
        self.state.record(
            workflow.now(),
            "risk_assessed",
            f"risk {report.assessment.score} ({report.assessment.level}); "
            f"top factors: {', '.join(f'{f.name} +{f.points}' for f in top)}. "
            f"{report.decision.rationale}{_config_changes_text(report)}",
            data={
                "score": report.assessment.score,
                "level": report.assessment.level.value,
                "factors": [f.model_dump() for f in report.assessment.factors],
                "decision": report.decision.model_dump(),
                "running_version": report.running_version,
                "config_changes": [c.model_dump() for c in report.config_changes],
            },
        )
        self._record_checks(report.checks)
        self.report = report

    async def _wait_until_clear(self, release: VerifiedRelease, report: RiskReport) -> RiskReport:
        """Blocked only by what clears by itself (work in progress on a production line): wait,
        durably, asking again every poll interval, until nothing blocks or the deadline passes;
        an abort ends the wait. Returns the report that no longer blocks, or the last one."""
        waiting = [c for c in report.checks if c.blocking]
        limit = min(c.wait_seconds or 0.0 for c in waiting)
        poll = max(c.poll_seconds or 60.0 for c in waiting)
        deadline = workflow.now() + timedelta(seconds=limit)
        reason = report.blocked
        self.state.record(
            workflow.now(),
            "waiting",
            f"waiting, at most until {deadline:%Y-%m-%d %H:%M:%S} UTC and asking again every "
            f"{poll:g} s: {reason}",
            data={"until": deadline.isoformat(), "poll_seconds": poll, "reason": reason},
        )
        self._refresh_details()
        while True:
            try:
                await workflow.wait_condition(
                    lambda: self.state.abort is not None,
                    timeout=min(timedelta(seconds=poll), deadline - workflow.now()),
                    timeout_summary="waiting for the work in progress to finish",
                )
            except TimeoutError:
                pass
            self._check_abort()
            report = await self._score(release)
            if not report.blocked:
                break
            if report.blocked != reason:  # another item, or another cause: on the record
                reason = report.blocked
                self._take_report(report)
            if not _waitable(report):
                return report
            if workflow.now() >= deadline:
                return report.model_copy(
                    update={"blocked": f"{report.blocked} (waited {_duration(limit)}, the limit)"}
                )
        self._take_report(report)
        self.state.record(workflow.now(), "wait_over", "nothing blocks any more: going ahead")
        return report

    def _record_checks(self, checks: list[DomainCheck]) -> None:
        for check in checks:
            verdict = "passed" if check.passed else "BLOCKED" if check.blocking else "failed"
            self.state.record(
                workflow.now(),
                "domain_check",
                f"{check.name}: {verdict} — {check.detail}",
                data=check.model_dump(mode="json"),
            )

    async def _await_approval(self, report: RiskReport) -> None:
        needed = report.decision.approvals_required
        if needed == 0:
            self.state.record(workflow.now(), "approval_skipped", "policy requires no approval")
            await self._audit()
            return
        self._enter(
            Phase.await_approval,
            f"waiting for {needed} approval(s) from {', '.join(report.decision.allowed_approvers)}",
        )
        await self._notify("awaiting_approval")
        try:
            await workflow.wait_condition(
                lambda: self.state.approval_settled() or self.state.abort is not None,
                timeout=timedelta(seconds=self.request.approval_timeout_seconds),
                timeout_summary="approval deadline",
            )
        except TimeoutError:
            raise RollbackRequired(
                f"no decision within {self.request.approval_timeout_seconds:.0f} s: "
                f"{len(self.state.approvers())} of {needed} approvals",
                Outcome.expired,
            ) from None
        self._check_abort()
        rejection = self.state.rejection()
        if rejection is not None:
            raise RollbackRequired(
                f"rejected by {rejection.approver}: {rejection.reason or 'no reason given'}",
                Outcome.rejected,
            )
        self.state.record(
            workflow.now(),
            "approved",
            f"approved by {', '.join(self.state.approvers())}",
            data={"approvers": self.state.approvers()},
        )
        # The approval evidence is logged, and the log's head signed and anchored in this
        # history, before anything changes.
        await self._audit(checkpoint=True)

    def _app_env(self) -> str | None:
        """What the runtime passes the app as APP_ENV: the target environment's."""
        return self.report.app_env if self.report else None

    async def _provision(self, release: VerifiedRelease) -> None:
        self._enter(Phase.provision, "starting the new version")
        current = await workflow.execute_activity_method(
            TrafficActivities.get_weights,
            args=[self.request.app, self.scope],
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=FORWARD_RETRY,
            summary="read the current traffic split",
        )
        self.guarded = workflow.patched(ROLLBACK_NEVER_ROUTES_TO_NOTHING)
        self.before = {slot: weight for slot, weight in current.items() if weight > 0}
        self.slots = _plan_slots(self.request.strategy, current, any_serving_slot=self.guarded)
        self.state.weights = current
        new_slot = self.slots["new"]
        deployed: Deployed = await workflow.execute_activity_method(
            RuntimeActivities.provision_version,
            ProvisionInput(
                manifest=release.manifest,
                slot=new_slot,
                app_env=self._app_env(),
                scope=self.scope,
            ),
            start_to_close_timeout=timedelta(minutes=10),
            heartbeat_timeout=RUNTIME_HEARTBEAT,
            retry_policy=FORWARD_RETRY,
            summary=f"start {release.manifest.version} in slot {new_slot}",
        )
        self._undo_after("provisioned", slot=new_slot, version=release.manifest.version)
        self.state.record(
            workflow.now(),
            "provisioned",
            f"{deployed.version} ready in slot {new_slot} ({len(deployed.endpoints)} endpoints)"
            + "".join(f"; {note}" for note in deployed.notes),
            data={"slot": new_slot, "endpoints": deployed.endpoints, "notes": deployed.notes},
        )
        self._check_abort()

    async def _shift(self, report: RiskReport) -> None:
        self._enter(Phase.shift, "shifting traffic behind health gates")
        if self.request.strategy is Strategy.blue_green:
            await self._shift_blue_green(report)
        else:
            await self._shift_canary(report)

    async def _shift_canary(self, report: RiskReport) -> None:
        steps = report.decision.steps or list(DEFAULT_STEPS)
        if self.slots.get("old") is None:
            # First deployment of this app: no stable version to share traffic with.
            verdict = await self._gate("canary", report, "pre-traffic gate (first deployment)")
            self._require_pass(verdict)
            steps = [100]
        self.state.steps = steps
        for index, weight in enumerate(steps):
            self.state.step_index = index
            await self._set_traffic({"stable": 100 - weight, "canary": weight})
            verdict = await self._gate(
                "canary", report, f"step {index + 1}/{len(steps)}: {weight}%"
            )
            if verdict is None:  # promoted by an operator: skip the remaining steps
                await self._set_traffic({"stable": 0, "canary": 100})
                return
            self._require_pass(verdict)
            await self._notify("step_passed", step=f"{weight}%")
            await self._hold_while_paused()

    async def _shift_blue_green(self, report: RiskReport) -> None:
        idle, live = self.slots["new"], self.slots.get("old")
        self.state.steps = [100]
        self._require_pass(await self._gate(idle, report, f"pre-switch gate on {idle}"))
        await self._hold_while_paused()
        self.state.step_index = 0
        await self._set_traffic({idle: 100, (live or _other_colour(idle)): 0})
        self._require_pass(await self._gate(idle, report, f"post-switch watch on {idle}"))

    async def _promote(self) -> None:
        self._enter(Phase.promote, "making the new version stable")
        version = self.state.version or "?"
        if self.request.strategy is Strategy.blue_green:
            old = self.slots.get("old")
            if old is not None and self.request.standby_seconds > 0:
                self.state.record(
                    workflow.now(),
                    "standby",
                    f"{old} kept on standby for {self.request.standby_seconds:.0f} s",
                )
                try:
                    await workflow.wait_condition(
                        lambda: self.state.abort is not None,
                        timeout=timedelta(seconds=self.request.standby_seconds),
                        timeout_summary="standby window",
                    )
                except TimeoutError:
                    pass
                self._check_abort()
            self._undo_after("switched_for_good")
            if old is not None:
                what = "colour" if old in ("blue", "green") else f"version ({old})"
                await self._retire(old, f"previous {what} retired")
            return
        # Canary: as Flagger promotes its primary. The canary holds 100% while the stable
        # slot is rebuilt on the new version.
        self._undo_after("canary_holds_all")
        if self.slots.get("old") is not None:
            await self._retire("stable", "previous stable version retired")
        manifest = self.state.manifest
        assert manifest is not None
        await workflow.execute_activity_method(
            RuntimeActivities.provision_version,
            # The same target environment as the canary: the promoted stable version must not
            # start with the runtime's default (local) configuration.
            ProvisionInput(
                manifest=manifest, slot="stable", app_env=self._app_env(), scope=self.scope
            ),
            start_to_close_timeout=timedelta(minutes=10),
            heartbeat_timeout=RUNTIME_HEARTBEAT,
            retry_policy=FORWARD_RETRY,
            summary=f"start {version} in slot stable",
        )
        await self._set_traffic({"stable": 100, "canary": 0}, register_undo=False)
        self._undo_after("promoted")
        await self._retire("canary", "canary slot emptied")
        if self.guarded:
            # An app that served from another slot (a colour, after blue-green deployments) now
            # serves from stable: the version that served before is retired like an old stable.
            for slot in self.before:
                if slot not in ("stable", "canary"):
                    await self._retire(slot, "the version that served before is retired")

    # ------------------------------------------------------------------ what a rollback undoes

    def _undo_after(
        self,
        moment: UndoMoment,
        *,
        slot: str = "",
        version: str | None = None,
        weights: dict[str, int] | None = None,
    ) -> None:
        """Every change to what a rollback would undo, in the order a deployment meets them
        (compensations run traffic first, then newest first: see workflows/compensation.py).

        provisioned        the new version runs in `slot`: retire it.
        traffic_moved      at the first traffic change (`weights`, later ones add nothing):
                           traffic goes back to what served before, the deployment's own slots
                           to 0; histories from before that rule return to the split assumed
                           to have served before.
        switched_for_good  blue-green, past the standby window: nothing to undo any more; the
                           old colour is retired going forward.
        canary_holds_all   canary promotion: from here the safe state is the canary at 100%,
                           not the old stable, while stable is rebuilt on the new version.
        promoted           stable serves the new version: nothing to undo.
        rolled_back        the compensations ran.
        """
        app = self.request.app
        match moment:
            case "provisioned":
                self.undo.push(Compensation.retire(app, slot, version, self.scope))
            case "traffic_moved":
                if self.undo.has_traffic():
                    return
                if self.guarded:
                    before = {**dict.fromkeys(weights or {}, 0), self.slots["new"]: 0}
                    before |= self.before
                    self.undo.push(Compensation.restore_traffic(app, before, self.scope))
                else:
                    self.undo.push(Compensation.traffic(app, self._safe_weights(), self.scope))
            case "canary_holds_all":
                self.undo.clear()
                self.undo.push(Compensation.traffic(app, {"stable": 0, "canary": 100}, self.scope))
            case "switched_for_good" | "promoted" | "rolled_back":
                self.undo.clear()

    # ------------------------------------------------------------------ building blocks

    async def _set_traffic(self, weights: dict[str, int], register_undo: bool = True) -> None:
        applied = await workflow.execute_activity_method(
            TrafficActivities.set_weights,
            WeightsInput(app=self.request.app, weights=weights, scope=self.scope),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=FORWARD_RETRY,
            summary="shift traffic to " + _weights_text(weights),
        )
        previous = self.state.weights
        self.state.weights = applied
        self.state.record(
            workflow.now(),
            "weights",
            f"traffic {_weights_text(applied)}",
            data={"weights": applied, "previous": previous},
        )
        if register_undo:
            self._undo_after("traffic_moved", weights=weights)
        self._refresh_details()

    def _safe_weights(self) -> dict[str, int]:
        """Before ROLLBACK_NEVER_ROUTES_TO_NOTHING: the split assumed to have served before.

        Kept for histories recorded before it: on a first deployment it named a slot where
        nothing ran."""
        new, old = self.slots["new"], self.slots.get("old")
        if self.request.strategy is Strategy.canary:
            return {"stable": 100, "canary": 0}
        return {old or _other_colour(new): 100, new: 0}

    async def _gate(self, slot: str, report: RiskReport, label: str) -> GateVerdict | None:
        """Run the health gate; None if an operator promoted while it ran. Abort interrupts it.

        When the gate finds the baseline as sick as the new version, the release is not the
        cause: rolling it back would not help users and would discard a healthy release. The
        deployment then pauses with an alert; `resume` gates this step again, `abort` rolls back.
        """
        while True:
            verdict = await self._gate_once(slot, report, label)
            if verdict is None or verdict.result is GateResult.passed or not verdict.diagnosis:
                return verdict
            if not workflow.patched(PAUSE_WHEN_BASELINE_DEGRADES):
                return verdict
            await self._pause_for_operator(verdict)

    async def _pause_for_operator(self, verdict: GateVerdict) -> None:
        self.state.record(
            workflow.now(),
            "alert",
            f"not rolling back: {verdict.diagnosis}. Paused: resume to gate this step again, "
            "or abort to roll back",
            data={"diagnosis": verdict.diagnosis, "evidence": verdict.evidence},
        )
        self.state.paused = True
        self._enter(Phase.paused, f"waiting for an operator: {verdict.diagnosis}")
        await workflow.wait_condition(lambda: not self.state.paused or self.state.abort is not None)
        self._check_abort()
        self._enter(Phase.shift, "resumed by operator: gating this step again")

    async def _gate_once(self, slot: str, report: RiskReport, label: str) -> GateVerdict | None:
        bake = report.decision.bake_seconds
        handle = workflow.start_activity_method(
            HealthActivities.run_health_gate,
            GateInput(
                app=self.request.app,
                slot=slot,
                version=self.state.version or "",
                bake_seconds=bake,
                thresholds=report.decision.gate,
                label=label,
                baseline_slot=self.slots.get("old"),
                environment=self.request.environment,
                risk_level=report.assessment.level,
                policy=report.decision.gate_policy,
                weight=self.state.weights.get(slot, 0),
                baseline_weight=self.state.weights.get(self.slots.get("old") or "", 0),
                scope=self.scope,
            ),
            start_to_close_timeout=timedelta(seconds=2 * bake + 120),
            heartbeat_timeout=GATE_HEARTBEAT,
            retry_policy=FORWARD_RETRY,
            summary=f"gate {label}: {bake:g} s bake",
        )
        await workflow.wait_condition(
            lambda: handle.done() or self.state.abort is not None or self.state.promote is not None
        )
        if not handle.done():
            handle.cancel()
            try:
                await handle
            except (ActivityError, asyncio.CancelledError):
                pass
            self._check_abort()
            return None
        verdict = handle.result()
        self.state.record(
            workflow.now(),
            "gate_verdict",
            f"{label}: {verdict.result.value} — {verdict.reason}",
            data=verdict.model_dump(mode="json"),
        )
        for transition in verdict.breaker_transitions:
            self.state.record(workflow.now(), "breaker", f"{label}: breaker {transition}")
        return verdict

    def _require_pass(self, verdict: GateVerdict | None) -> None:
        """Stop unless the gate passed; None means an operator promoted while it ran."""
        if verdict is not None and verdict.result is not GateResult.passed:
            raise RollbackRequired(f"health gate {verdict.result.value}: {verdict.reason}")

    async def _hold_while_paused(self) -> None:
        if self.state.paused:
            self._refresh_details()
            await workflow.wait_condition(
                lambda: not self.state.paused or self.state.abort is not None
            )
        self._check_abort()

    def _check_abort(self) -> None:
        abort = self.state.abort
        if abort is not None:
            cause = f"aborted by {abort.actor}: {abort.reason or 'no reason given'}"
            outcome = Outcome.rolled_back if self.undo else Outcome.aborted
            raise RollbackRequired(cause, outcome)

    async def _retire(self, slot: str, message: str) -> None:
        await workflow.execute_activity_method(
            RuntimeActivities.retire_version,
            RetireInput(app=self.request.app, slot=slot, scope=self.scope),
            start_to_close_timeout=timedelta(minutes=5),
            heartbeat_timeout=RUNTIME_HEARTBEAT,
            retry_policy=FORWARD_RETRY,
            summary=f"retire slot {slot}",
        )
        self.state.record(workflow.now(), "retired", f"slot {slot}: {message}")

    async def _roll_back(self, cause: str, outcome: Outcome) -> DeploymentResult:
        """Run compensations traffic first, then newest first; each retries until it succeeds."""
        if not self.undo:
            if outcome is Outcome.rolled_back:
                outcome = Outcome.failed
            return await self._finish(outcome, cause)
        self._enter(Phase.rollback, cause)
        if self.guarded:
            cause = await self._compensate(cause)
        else:
            for step in self.undo.in_rollback_order():
                await step.run()
                if step.kind == "traffic":
                    self.state.weights = dict(step.weights)
                self.state.record(
                    workflow.now(),
                    "compensated",
                    step.description,
                    data={"kind": step.kind, **step.data()},
                )
        self._undo_after("rolled_back")
        return await self._finish(outcome, cause)

    async def _compensate(self, cause: str) -> str:
        """The compensations, never routing users to nothing; returns the cause, with what a
        rollback could not do when there was no previous version to return to.

        Traffic goes back to what served before, as far as it still runs (the set_weights
        activity decides, from what runs now). When nothing of it runs (a first deployment, or
        the previous version is gone), traffic stays where a version runs, and a version that
        still takes traffic is not retired: retiring it would route its users to nothing.
        """
        notes: list[str] = []
        if not self.undo.has_traffic() and not self.before:
            notes.append(
                "no previous version to return to: nothing served before this deployment, and "
                "no traffic was moved"
            )
            self.state.record(
                workflow.now(),
                "no_previous_version",
                f"{notes[-1]}; the failed version is retired and nothing serves the app, as before",
                data={"before": {}},
            )
        for step in self.undo.in_rollback_order():
            if step.kind == "traffic":
                try:
                    applied = await step.run()
                except ActivityError as err:  # refused by the traffic guard: nothing changed
                    notes.append(
                        f"traffic not moved ({_activity_cause(err)}); it stays "
                        f"{_weights_text(self.state.weights)}"
                    )
                    self.state.record(
                        workflow.now(),
                        "compensation_refused",
                        f"{step.description}: refused: {notes[-1]}",
                        data={"kind": "traffic", "weights": dict(self.state.weights)},
                    )
                    continue
                self.state.weights = dict(applied if applied is not None else step.weights)
                if not step.restore:
                    self.state.record(
                        workflow.now(),
                        "compensated",
                        step.description,
                        data={"kind": step.kind, **step.data()},
                    )
                elif self._returned(self.state.weights):
                    self.state.record(
                        workflow.now(),
                        "compensated",
                        self._restored_text(self.state.weights),
                        data={"kind": "traffic", "weights": dict(self.state.weights)},
                    )
                else:
                    notes.append(f"no previous version to return to: {self._left_text()}")
                    self.state.record(
                        workflow.now(),
                        "no_previous_version",
                        f"{notes[-1]}; moving it would route users to nothing",
                        data={"weights": dict(self.state.weights), "before": dict(self.before)},
                    )
                continue
            held = self.state.weights.get(step.slot, 0)
            if held > 0:
                self.state.record(
                    workflow.now(),
                    "not_retired",
                    f"version {step.version} not retired from slot {step.slot}: it still takes "
                    f"{held}% of the traffic, and retiring it would route those users to "
                    "nothing. Deploy a fixed release, or retire it by hand",
                    data={
                        "slot": step.slot,
                        "version": step.version,
                        "weights": dict(self.state.weights),
                    },
                )
                continue
            await step.run()
            self.state.record(
                workflow.now(),
                "compensated",
                step.description,
                data={"kind": step.kind, **step.data()},
            )
        return "; ".join([cause, *notes])

    def _returned(self, applied: dict[str, int]) -> bool:
        """Whether all traffic is back on slots that served before."""
        held = [slot for slot, weight in applied.items() if weight > 0]
        return bool(held) and all(slot in self.before for slot in held)

    def _restored_text(self, applied: dict[str, int]) -> str:
        text = " ".join(f"{s}={w}%" for s, w in sorted(applied.items()))
        gone = sorted(s for s in self.before if applied.get(s, 0) == 0)
        if gone:
            text += f" ({', '.join(gone)}, which served before, no longer runs)"
        return f"traffic restored: {text}"

    def _left_text(self) -> str:
        """Where traffic was left, and why there was no previous version to return to."""
        applied = self.state.weights
        if self.before:
            why = f"what served before ({_weights_text(self.before)}) no longer runs"
        else:
            why = "nothing served before this deployment"
        held = {slot: weight for slot, weight in applied.items() if weight > 0}
        if not held:
            return f"{why}, and no slot takes traffic"
        where = ", ".join(
            f"{slot} ({weight}%"
            + (f", this release {self.state.version}" if slot == self.slots.get("new") else "")
            + ")"
            for slot, weight in sorted(held.items())
        )
        return f"{why}; traffic left on {where}"

    async def _finish(self, outcome: Outcome, cause: str | None) -> DeploymentResult:
        self.state.outcome = outcome
        self.state.cause = cause
        self._enter(Phase.done, f"{outcome.value}" + (f": {cause}" if cause else ""))
        workflow.upsert_search_attributes([SA_OUTCOME.value_set(outcome.value)])
        # Updates that are still running must not be cut off by the workflow completing.
        await workflow.wait_condition(workflow.all_handlers_finished)
        final: dict[Outcome, NotificationKind] = {
            Outcome.promoted: "promoted",
            Outcome.rolled_back: "rolled_back",
            Outcome.blocked: "blocked",
            Outcome.rejected: "rejected",
            Outcome.failed: "failed",
        }
        if outcome in final:
            await self._notify(final[outcome], cause=cause)
        elif outcome in (Outcome.expired, Outcome.aborted) and self.approval_messages:
            await self._notify("expired" if outcome is Outcome.expired else "aborted", cause=cause)
        if workflow.patched(AUDIT_AND_EVIDENCE):
            await self._audit(checkpoint=True)
            await self._seal_evidence(outcome, cause)
        return DeploymentResult(
            outcome=outcome,
            cause=cause,
            status=self.state.status(workflow.info().run_id),
            timeline=list(self.state.timeline),
        )

    async def _notify(
        self, kind: NotificationKind, step: str | None = None, cause: str | None = None
    ) -> None:
        """Best effort: a notifier that keeps failing is recorded, never blocks the deployment."""
        if not workflow.patched(NOTIFICATIONS):
            return
        report, r = self.report, self.request
        notification = Notification(
            kind=kind,
            deployment_id=workflow.info().workflow_id,
            app=r.app,
            environment=r.environment,
            version=self.state.version,
            initiator=r.initiator,
            change_ref=r.change_ref,
            risk_score=report.assessment.score if report else None,
            risk_level=report.assessment.level if report else None,
            top_factors=top_factors(report.assessment) if report else [],
            running_version=report.running_version if report else None,
            config_changes=[c.describe() for c in report.config_changes] if report else [],
            approvals_required=report.decision.approvals_required if report else 0,
            allowed_approvers=list(report.decision.allowed_approvers) if report else [],
            signature_required=self.state.signers is not None,
            step=step,
            cause=cause,
            at=workflow.now(),
        )
        summary = f"notify: {kind}" + (f" {step}" if step else "")
        try:
            if not workflow.patched(MESSAGES_BOUND_TO_RUNS):
                await workflow.execute_activity_method(
                    NotifyActivities.notify,
                    notification,
                    start_to_close_timeout=timedelta(seconds=15),
                    retry_policy=NOTIFY_RETRY,
                    summary=summary,
                )
                return
            final = kind in FINAL_KINDS
            notification = notification.model_copy(
                update={
                    "run_id": workflow.info().run_id,
                    "release_digest": self.state.release_digest() or None,
                    "close": list(self.approval_messages) if final else [],
                }
            )
            receipt = await workflow.execute_activity_method(
                NotifyActivities.post_notification,
                notification,
                start_to_close_timeout=timedelta(seconds=15),
                retry_policy=NOTIFY_RETRY,
                summary=summary,
            )
            self.approval_messages.extend(receipt.messages)
        except ActivityError as err:
            self.state.record(
                workflow.now(),
                "notification_failed",
                f"{kind} notification not delivered: {_activity_cause(err)}",
            )

    async def _audit(self, checkpoint: bool = False, hold: bool = True) -> None:
        """Append the timeline events not yet in the audit log (idempotent per event). Every
        append is signed at once: the log's checkpoint comes back as this deployment's anchor
        and stays in its history, so no append can be cut from the log unnoticed. `checkpoint`
        signs even when there is nothing new (the end of a deployment).

        When the audit storage is full, the runbook (`hold`) pauses with an alert until an
        operator frees space and resumes, then appends again: it neither goes on nor ends with
        events missing from the log. An update handler (not `hold`) leaves its events to the
        runbook's next append instead of pausing."""
        if not workflow.patched(AUDIT_AND_EVIDENCE):
            return
        start = self.audited
        events = self.state.timeline[start:]
        if not events and not checkpoint:
            return
        while True:
            try:
                receipt = await workflow.execute_activity_method(
                    ComplianceActivities.record_audit,
                    AuditRecordInput(
                        workflow_id=workflow.info().workflow_id,
                        run_id=workflow.info().run_id,
                        start_index=start,
                        events=events,
                        checkpoint=True,
                    ),
                    start_to_close_timeout=timedelta(seconds=60),
                    retry_policy=EVIDENCE_RETRY,
                    summary=f"audit log: {len(events)} events"
                    + (" + checkpoint" if checkpoint else ""),
                )
                break
            except ActivityError as err:
                full = _error_type(err) == AUDIT_STORAGE_FULL
                if not full or not workflow.patched(AUDIT_STORAGE_FULL_PAUSES):
                    raise
                if not hold:
                    return
                await self._hold_for_audit_storage(_activity_cause(err))
                events = self.state.timeline[start:]  # the alert and the resume as well
        # max: an update handler may log refusals while the runbook logs too (both idempotent)
        self.audited = max(self.audited, start + len(events))
        if receipt.anchor is not None:
            self.state.audit_anchor = receipt.anchor

    async def _hold_for_audit_storage(self, cause: str) -> None:
        """Paused with an alert while the audit log cannot be written; nothing moves traffic.

        `resume` (once space is free) returns to the phase it was in, and the append is tried
        again. `abort` rolls back a deployment that has not ended (its rollback restores
        traffic first, and its final append holds again if the storage is still full). Once
        the outcome is decided only `resume` moves it on: the evidence must still be written.
        """
        self.state.record(
            workflow.now(),
            "alert",
            f"audit log cannot be written: {cause}; paused: free space, then resume",
            data={"audit": "storage_full", "cause": cause},
        )
        where = self.state.phase
        self.state.paused = True
        self.audit_held = True
        self._enter(Phase.paused, "waiting for an operator: the audit log cannot be written")
        await workflow.wait_condition(
            lambda: (
                not self.state.paused
                or (self.state.abort is not None and self.state.outcome is None)
            )
        )
        self.audit_held = False
        if self.state.paused:  # aborted: the rollback goes ahead
            self.state.paused = False
            self._check_abort()
        self._enter(where, "resumed by operator: writing the audit log again")

    async def _seal_evidence(self, outcome: Outcome, cause: str | None) -> None:
        receipt = await workflow.execute_activity_method(
            ComplianceActivities.seal_evidence,
            SealEvidenceInput(
                workflow_id=workflow.info().workflow_id,
                run_id=workflow.info().run_id,
                result=DeploymentResult(
                    outcome=outcome,
                    cause=cause,
                    status=self.state.status(workflow.info().run_id),
                    timeline=list(self.state.timeline),
                ),
                release=self.request.release,
            ),
            start_to_close_timeout=timedelta(minutes=2),
            retry_policy=EVIDENCE_RETRY,
            summary="seal the evidence bundle",
        )
        self.state.record(
            workflow.now(),
            "evidence_sealed",
            f"evidence bundle sealed: {receipt.path} ({receipt.files} files, manifest sha256 "
            f"{receipt.manifest_sha256[:16]}…, key {receipt.key_fingerprint})",
            data=receipt.model_dump(mode="json"),
        )

    def _enter(self, phase: Phase, message: str) -> None:
        self.state.enter(phase, workflow.now(), message)
        workflow.upsert_search_attributes(
            [
                SA_APP.value_set(self.request.app),
                SA_ENVIRONMENT.value_set(self.request.environment),
                SA_STRATEGY.value_set(self.request.strategy.value),
                self.state.phase_attribute(),
            ]
        )
        self._refresh_details()

    def _observe(self, event: TimelineEvent) -> None:
        """The engine's metrics (zdp.metrics) from each event: counters only when live, never
        while the history replays. Records nothing and sends no command."""
        deadline = None
        if event.kind == "phase" and event.phase is Phase.await_approval:
            deadline = event.at + timedelta(seconds=self.request.approval_timeout_seconds)
        # Held at its end (audit storage full), a deployment enters `done` again when resumed:
        # counted once.
        ends = event.kind == "phase" and event.phase is Phase.done
        again = ends and self.done_observed
        self.done_observed = self.done_observed or ends
        self.metrics.observe(
            event.kind,
            event.phase.value,
            event.at,
            event.data,
            live=not workflow.unsafe.is_replaying() and not again,
            outcome=self.state.outcome.value if self.state.outcome else None,
            approval_deadline=deadline,
        )

    def _refresh_details(self) -> None:
        workflow.set_current_details(self.state.runbook_markdown())

    def _started_message(self) -> str:
        r = self.request
        return (
            f"deployment of {r.app} to {r.environment} ({r.strategy.value}) started by "
            f"{r.initiator}"
            + (f", change {r.change_ref}" if r.change_ref else "")
            + (f": {r.reason}" if r.reason else "")
        )

    # ------------------------------------------------------------------ messages

    # Refusals are decided in the handlers, not in validators: a validator's rejection leaves
    # no trace in the history, and every refused decision (self-approval, an approver who is
    # not allowed, a duplicate, a stale or foreign signature, a decision nobody awaits) must be
    # on the record. The handler records it, logs it to the audit log, then fails the update
    # with the reason; nothing else changes. Validators refuse only once the deployment has
    # ended, when there is no record left to write to.

    @workflow.update
    async def approve(self, decision: ApprovalInput) -> str:
        """Adds one approval. Refused: initiator, unknown approver, duplicate, wrong phase."""
        return await self._decide(decision, "approve")

    @approve.validator
    def _validate_approve(self, decision: ApprovalInput) -> None:
        self._refuse_if(self._ended())

    @workflow.update
    async def reject(self, decision: ApprovalInput) -> str:
        """Rejects the release; the workflow ends `rejected`. Same refusals as approve."""
        return await self._decide(decision, "reject")

    @reject.validator
    def _validate_reject(self, decision: ApprovalInput) -> None:
        self._refuse_if(self._ended())

    @workflow.signal(name="approve_signal")
    def approve_signal(self, decision: ApprovalInput) -> None:
        """Fire-and-forget twin of `approve`; a refusal is written to the timeline."""
        self._signal_decision(decision, "approve")

    @workflow.signal(name="reject_signal")
    def reject_signal(self, decision: ApprovalInput) -> None:
        """Fire-and-forget twin of `reject`; a refusal is written to the timeline."""
        self._signal_decision(decision, "reject")

    @workflow.update
    async def promote(self, request: PromoteInput) -> str:
        """Skips the remaining steps: traffic goes to 100% and the release is promoted."""
        run_id, now = workflow.info().run_id, workflow.now()
        refusal = self.state.promote_refusal(request, run_id, now)
        if refusal and workflow.patched(REFUSALS_ON_THE_RECORD):
            await self._refuse("promote", request.approver, request.channel, refusal)
        proven, _ = self.state.prove(
            request.proof, "promote", request.approver, request.channel, run_id, now
        )
        self.state.use(proven)
        manifestation = None
        if self.state.identities is not None:
            manifestation, _ = self.state.signature_for(
                request.approver, request.signature, "promote", run_id, now
            )
        data: dict[str, Any] = {"proof": proven.model_dump(mode="json")} if proven else {}
        signed = ""
        if manifestation is not None:
            self.state.used_signatures.add(manifestation.signature)
            data["signature"] = manifestation.model_dump(mode="json")
            signed = f"; {manifestation.line()}"
        self.state.promote = request
        self.state.record(
            now,
            "promote_requested",
            f"{proven.line() if proven and proven.proven else request.approver} promoted early: "
            f"{request.reason or 'no reason given'}{signed}",
            request.approver,
            data or None,
        )
        return "remaining steps skipped; promoting"

    @promote.validator
    def _validate_promote(self, request: PromoteInput) -> None:
        self._refuse_if(self._ended())

    @workflow.signal
    def pause(self, request: AbortInput | None = None) -> None:
        """Holds at the current weight after the running gate; gates and abort still work.

        `request` names who paused and why; older clients send none ("operator")."""
        self._on_control("pause", request or AbortInput())

    @workflow.signal
    def resume(self, request: AbortInput | None = None) -> None:
        """Lets a paused deployment continue with its next step."""
        self._on_control("resume", request or AbortInput())

    @workflow.signal
    def abort(self, request: AbortInput) -> None:
        """Stops the deployment; anything already changed is rolled back, traffic first."""
        self._on_control("abort", request)

    def _on_control(self, name: str, request: AbortInput) -> None:
        """pause, resume, abort: judged now, or once identities can be checked."""
        if (
            self.state.identities is None
            and self.report is None
            and self.state.outcome is None
            and workflow.patched(PROVEN_IDENTITIES)
        ):
            self.pending_controls.append(
                (name, request, self.state.release_digest(), workflow.now())
            )
            return
        self._control(name, request, self.state.release_digest(), workflow.now())

    def _control(self, name: str, who: AbortInput, digest: str, at: datetime) -> None:
        """Apply a pause, resume or abort whose sender is proven (or need not be); a refusal
        is written to the timeline and changes nothing."""
        action: RequestAction = (
            "pause" if name == "pause" else ("resume" if name == "resume" else "abort")
        )
        live = {
            "pause": not self.state.paused and self.state.outcome is None,
            "resume": self.state.paused,
            "abort": self.state.abort is None and self.state.outcome is None,
        }[name]
        if not live and self.state.identities is None:
            return  # histories from before proven identities ignored it unchecked
        held = name == "resume" and self.audit_held  # a deployment that ended may wait so
        if self.state.identities is not None and self._ended() is not None and not held:
            return  # ended, or a flood of refusals already on the record: nothing recorded
        proven, refusal = self.state.prove(
            who.proof, action, who.actor, who.channel, workflow.info().run_id, at, digest
        )
        if refusal is None:
            refusal = self.state.control_refusal(name, proven.user if proven else who.actor)
        if refusal is not None:
            self.state.refused(workflow.now(), name, who.actor, who.channel, refusal)
            return
        self.state.use(proven)  # spent even when it changes nothing: never replayable later
        if not live:
            return
        actor = proven.line() if proven and proven.proven else who.actor
        data = {**_why(who), **({"proof": proven.model_dump(mode="json")} if proven else {})}
        if name == "pause":
            self.state.paused = True
            self.state.record(workflow.now(), "paused", _by("paused", who, actor), who.actor, data)
            if workflow.patched(PHASE_SHOWS_PAUSED):
                workflow.upsert_search_attributes([SA_PHASE.value_set(Phase.paused.value)])
        elif name == "resume":
            self.state.paused = False
            self.state.record(
                workflow.now(), "resumed", _by("resumed", who, actor), who.actor, data
            )
            if workflow.patched(PHASE_SHOWS_PAUSED):
                workflow.upsert_search_attributes([self.state.phase_attribute()])
        else:
            self.state.abort = who
            self.state.record(
                workflow.now(),
                "abort_requested",
                f"abort requested by {actor}: {who.reason or 'no reason given'}",
                who.actor,
                data if proven else None,
            )

    @workflow.query
    def status(self) -> DeploymentStatus:
        """Where the deployment is now."""
        return self.state.status(workflow.info().run_id)

    @workflow.query
    def timeline(self) -> list[TimelineEvent]:
        """The forensic record so far."""
        return list(self.state.timeline)

    def _decision_refusal(self, decision: ApprovalInput, kind: str) -> str | None:
        return self.state.decision_refusal(
            decision, self.request.initiator, kind, workflow.info().run_id, workflow.now()
        )

    async def _decide(self, decision: ApprovalInput, kind: str) -> str:
        refusal = self._decision_refusal(decision, kind)
        if refusal and workflow.patched(REFUSALS_ON_THE_RECORD):
            await self._refuse(kind, decision.approver, decision.channel, refusal)
        try:
            return self.state.decide(decision, kind, workflow.now(), workflow.info().run_id)
        except ValueError as refused:  # histories from before REFUSALS_ON_THE_RECORD only
            raise ApplicationError(str(refused), type="Refused", non_retryable=True) from None

    async def _refuse(self, kind: str, actor: str, channel: str, reason: str) -> None:
        """Record the refusal, log it to the audit log, then fail the update with the reason."""
        self.state.refused(workflow.now(), kind, actor, channel, reason)
        self._refresh_details()
        await self._audit(hold=False)
        raise ApplicationError(reason, type="Refused", non_retryable=True)

    def _ended(self) -> str | None:
        """Why a decision cannot even be recorded: the deployment has ended, or it has already
        recorded MAX_RECORDED_REFUSALS refusals (a flood)."""
        if self.state.outcome is not None:
            return (
                f"deployment has finished ({self.state.outcome.value}); there is nothing to decide"
            )
        refused = sum(1 for e in self.state.timeline if e.kind == "decision_refused")
        if refused >= MAX_RECORDED_REFUSALS:
            return (
                f"{refused} refused requests are already on this deployment's record; further "
                "ones are refused without being recorded"
            )
        return None

    def _signal_decision(self, decision: ApprovalInput, kind: str) -> None:
        if self.state.identities is not None and self._ended() is not None:
            return  # a flood of refused signals is not recorded past the cap
        refusal = self._decision_refusal(decision, kind)
        if refusal:
            self.state.refused(workflow.now(), kind, decision.approver, "signal", refusal)
            return
        self.state.decide(decision, kind, workflow.now(), workflow.info().run_id)

    @staticmethod
    def _refuse_if(refusal: str | None) -> None:
        if refusal:
            raise ApplicationError(refusal, type="Refused", non_retryable=True)


def _plan_slots(
    strategy: Strategy, current: dict[str, int], any_serving_slot: bool = False
) -> dict[str, str]:
    """Which slot the new version goes to, and which one serves now (None on first deploy).

    `current` holds the slots that serve (weight and a running version). With
    `any_serving_slot` (ROLLBACK_NEVER_ROUTES_TO_NOTHING), a blue-green deployment of an app
    that serves from another slot (stable, after canary deployments) takes that slot as the
    old one: it is the baseline, the switch takes its traffic and promotion retires it.
    """
    if strategy is Strategy.canary:
        return {"new": "canary", "old": "stable"} if current.get("stable") else {"new": "canary"}
    live = max(("blue", "green"), key=lambda c: current.get(c, 0))
    if current.get(live, 0) == 0:
        serving = sorted((s for s, w in current.items() if w > 0), key=lambda s: -current[s])
        if any_serving_slot and serving:
            return {"new": "blue", "old": serving[0]}
        return {"new": "blue"}
    return {"new": _other_colour(live), "old": live}


def _trace_of_start() -> dict[str, str]:
    """The trace the client started this run in (`trace_id`, from the start's headers), if any.

    The headers are in the history, so a replay records the same id; it changes no command,
    and a run started without one (every recorded history) records nothing."""
    trace_id = trace_id_from_headers(workflow.info().headers)
    return {"trace_id": trace_id} if trace_id else {}


def _other_colour(colour: str) -> str:
    return "green" if colour == "blue" else "blue"


def _by(what: str, who: AbortInput, actor: str | None = None) -> str:
    return f"{what} by {actor or who.actor}" + (f": {who.reason}" if who.reason else "")


def _why(who: AbortInput) -> dict[str, Any]:
    return {"reason": who.reason} if who.reason else {}


def _weights_text(weights: dict[str, int]) -> str:
    return " ".join(f"{slot}={w}%" for slot, w in sorted(weights.items()))


def _error_type(err: ActivityError) -> str | None:
    """The type of the application error the activity raised, if it raised one."""
    cause = err.cause
    return cause.type if isinstance(cause, ApplicationError) else None


def _activity_cause(err: ActivityError) -> str:
    """The innermost useful message: the application error the activity raised, if any."""
    cause: BaseException | None = err.cause
    while (
        isinstance(cause, FailureError)
        and not isinstance(cause, ApplicationError)
        and cause.cause is not None
    ):
        cause = cause.cause
    if isinstance(cause, FailureError):
        return cause.message
    return str(cause) if cause is not None else err.message


def _overrides_text(overrides: dict[str, str]) -> str:
    """ "; sets K=V, ..." for a release that sets config, else nothing."""
    if not overrides:
        return ""
    return "; sets " + ", ".join(f"{k}={v}" for k, v in sorted(overrides.items()))


def _config_changes_text(report: RiskReport) -> str:
    """'; config against the running 1.4.0: K: a -> b; ...' when the release changes config."""
    if not report.config_changes:
        return ""
    changes = "; ".join(c.describe() for c in report.config_changes)
    return f"; config against the running {report.running_version or 'version'}: {changes}"


def _waitable(report: RiskReport) -> bool:
    """Whether every check that blocks may clear by itself (it says how long to wait)."""
    blocking = [c for c in report.checks if c.blocking]
    return bool(blocking) and all(c.wait_seconds for c in blocking)


def _duration(seconds: float) -> str:
    """ "90 s", "15 min", "4 h": how long, as a person would say it."""
    if seconds < 120:
        return f"{seconds:g} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:g} h"
