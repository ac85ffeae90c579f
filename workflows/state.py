"""The deployment's state and forensic timeline, and the approval rules that read it.

Pure, deterministic bookkeeping used by DeploymentWorkflow: no Temporal calls except building
the ZdpPhase search attribute update. Validators call the `*_refusal` methods, which only read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from temporalio.common import SearchAttributeUpdate

from zdp.compliance.esign import Binding, verify_approval
from zdp.compliance.identity import Expected, prove
from zdp.models import (
    AbortInput,
    ApprovalInput,
    ApprovalRecord,
    ApprovalSignature,
    ApproverIdentity,
    AuditAnchor,
    DeploymentRequest,
    DeploymentStatus,
    Outcome,
    Phase,
    PolicyDecision,
    PromoteInput,
    ProvenActor,
    ReleaseManifest,
    RequestAction,
    RiskAssessment,
    RiskReport,
    SignatureManifestation,
    TimelineEvent,
    deployment_id,
)
from zdp.temporal import SA_PHASE


@dataclass
class DeploymentState:
    request: DeploymentRequest
    phase: Phase = Phase.verify
    version: str | None = None
    manifest: ReleaseManifest | None = None
    risk: RiskAssessment | None = None
    decision: PolicyDecision | None = None
    approvals: list[ApprovalRecord] = field(default_factory=list)
    weights: dict[str, int] = field(default_factory=dict)
    steps: list[int] = field(default_factory=list)
    step_index: int | None = None
    paused: bool = False
    abort: AbortInput | None = None
    promote: PromoteInput | None = None
    outcome: Outcome | None = None
    cause: str | None = None
    timeline: list[TimelineEvent] = field(default_factory=list)
    # Part 11: the registered signers (None: signatures not required) and signatures used.
    signers: dict[str, ApproverIdentity] | None = None
    used_signatures: set[str] = field(default_factory=set)
    # The latest signed checkpoint of the audit log this deployment took (approval, end).
    audit_anchor: AuditAnchor | None = None
    # Proven identities (from the risk report): the registry snapshot requests are checked
    # against (None: histories from before proven identities, or not assessed yet), whether
    # unsigned requests are refused and why, and who started the deployment.
    identities: dict[str, ApproverIdentity] | None = None
    identities_required: bool = False
    identities_reason: str = ""
    initiator: ProvenActor | None = None
    # Who may pause, resume and abort besides the approvers and the initiator; None: not
    # checked (histories from before it was).
    operators: list[str] | None = None
    # Told of every event recorded (the engine's metrics); it never changes the state.
    observer: Callable[[TimelineEvent], None] | None = field(
        default=None, repr=False, compare=False
    )

    @classmethod
    def start(cls, request: DeploymentRequest) -> DeploymentState:
        return cls(request=request)

    # -------------------------------------------------------------- timeline

    def record(
        self,
        at: datetime,
        kind: str,
        message: str,
        actor: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        event = TimelineEvent(
            at=at, phase=self.phase, kind=kind, message=message, actor=actor, data=data or {}
        )
        self.timeline.append(event)
        if self.observer is not None:
            self.observer(event)

    def enter(self, phase: Phase, at: datetime, message: str) -> None:
        self.phase = phase
        self.record(at, "phase", f"{phase.value}: {message}")

    def phase_attribute(self) -> SearchAttributeUpdate[str]:
        return SA_PHASE.value_set(self.phase.value)

    def apply_risk(self, report: RiskReport) -> None:
        self.risk = report.assessment
        self.decision = report.decision
        self.steps = list(report.decision.steps)
        self.signers = report.signers
        self.identities = report.identities
        self.identities_required = report.identities_required
        self.identities_reason = report.identities_reason
        self.initiator = report.initiator
        self.operators = report.operators

    def initiator_user(self) -> str:
        """Who started the deployment: the proven identity where there is one."""
        return self.initiator.user if self.initiator else self.request.initiator

    def prove(
        self,
        proof: ApprovalSignature | None,
        action: RequestAction,
        actor: str,
        channel: str,
        run_id: str,
        now: datetime,
        release_digest: str | None = None,
    ) -> tuple[ProvenActor | None, str | None]:
        """Who sent this request, checked against the registry snapshot; (None, None) when
        this run does not check identities (a history from before they were proven)."""
        if self.identities is None:
            return None, None
        expected = Expected(
            action=action,
            actor=actor,
            channel=channel,
            deployment_id=deployment_id(self.request.app, self.request.environment),
            run_id=run_id,
            release_digest=self.release_digest() if release_digest is None else release_digest,
        )
        return prove(
            proof,
            expected,
            self.identities,
            now,
            self.used_signatures,
            self.identities_required,
            self.identities_reason,
        )

    def control_refusal(self, name: str, who: str) -> str | None:
        """Why `who` may not pause, resume or abort this deployment: only its approvers, the
        environment's operators and whoever started it may."""
        if self.operators is None:
            return None
        allowed = [
            *(self.decision.allowed_approvers if self.decision else []),
            *self.operators,
            self.initiator_user(),
        ]
        if who in allowed:
            return None
        r = self.request
        return (
            f"{who} may not {name} {r.app} in {r.environment}: its approvers, operators and "
            f"initiator may ({', '.join(dict.fromkeys(allowed))})"
        )

    def release_digest(self) -> str:
        return self.manifest.artifact.digest if self.manifest else ""

    def use(self, proven: ProvenActor | None) -> None:
        """A proof is good for one request only."""
        if proven is not None and proven.signature:
            self.used_signatures.add(proven.signature)

    # -------------------------------------------------------------- approvals

    def approvers(self) -> list[str]:
        return [a.approver for a in self.approvals if a.decision == "approve"]

    def rejection(self) -> ApprovalRecord | None:
        return next((a for a in self.approvals if a.decision == "reject"), None)

    def approval_settled(self) -> bool:
        needed = self.decision.approvals_required if self.decision else 0
        return self.rejection() is not None or len(self.approvers()) >= needed

    def decision_refusal(
        self,
        decision: ApprovalInput,
        initiator: str,
        kind: str = "approve",
        run_id: str = "",
        now: datetime | None = None,
    ) -> str | None:
        """Why this approve/reject must be refused, in words for the person who sent it."""
        if self.phase is not Phase.await_approval or self.approval_settled():
            return f"deployment is not awaiting approval (phase: {self.phase.value})"
        who = decision.approver
        if self.identities is not None and now is not None:
            # Proven identities: separation of duties compares who signed the start with
            # who signed this decision, not the names typed.
            proven, refusal = self.decision_actor(decision, kind, run_id, now)
            if refusal is not None or proven is None:
                return refusal or "the sender could not be proven"
            if proven.user == self.initiator_user():
                both = proven.proven and self.initiator is not None and self.initiator.proven
                return f"{proven.user} started this deployment, so someone else must approve it" + (
                    " (both proven by their signatures)" if both else ""
                )
        elif who == initiator:
            return f"{who} started this deployment, so someone else must approve it"
        allowed = self.decision.allowed_approvers if self.decision else []
        if who not in allowed:
            return (
                f"{who} is not an approver for {self.request.app} in "
                f"{self.request.environment}; allowed: {', '.join(allowed) or 'nobody'}"
            )
        if any(a.approver == who for a in self.approvals):
            return f"{who} has already decided on this deployment"
        if self.signers is not None and now is not None:
            return self.signature(decision, kind, run_id, now)[1]
        return None

    def decision_actor(
        self, decision: ApprovalInput, kind: str, run_id: str, now: datetime
    ) -> tuple[ProvenActor | None, str | None]:
        """Who sent this approve/reject: where Part 11 applies, its e-signature proves it;
        elsewhere the signed request (`proof`)."""
        action: RequestAction = "approve" if kind == "approve" else "reject"
        if self.signers is not None:
            manifestation, refusal = self.signature(decision, kind, run_id, now)
            if manifestation is None:
                return None, refusal
            return (
                ProvenActor(
                    user=decision.approver,
                    channel=decision.channel,
                    proven=True,
                    key_fingerprint=manifestation.key_fingerprint,
                    signed_at=manifestation.signed_at,
                    signature=manifestation.signature,
                ),
                None,
            )
        return self.prove(decision.proof, action, decision.approver, decision.channel, run_id, now)

    def signature(
        self, decision: ApprovalInput, kind: str, run_id: str, now: datetime
    ) -> tuple[SignatureManifestation | None, str | None]:
        """The Part 11 signature on this decision checked against this deployment."""
        action = "approve" if kind == "approve" else "reject"
        return self.signature_for(decision.approver, decision.signature, action, run_id, now)

    def signature_for(
        self,
        who: str,
        signature: ApprovalSignature | None,
        decision: str,
        run_id: str,
        now: datetime,
    ) -> tuple[SignatureManifestation | None, str | None]:
        """A Part 11 signature by `who` on `decision` (approve, reject, promote)."""
        if self.signers is None:
            return None, None
        expected = Binding(
            deployment_id=deployment_id(self.request.app, self.request.environment),
            run_id=run_id,
            release_digest=self.manifest.artifact.digest if self.manifest else "",
            decision=decision,
            signer=who,
        )
        return verify_approval(
            signature, self.signers.get(who), expected, now, self.used_signatures
        )

    def decide(self, decision: ApprovalInput, kind: str, at: datetime, run_id: str = "") -> str:
        proven: ProvenActor | None = None
        if self.identities is not None:
            proven, refusal = self.decision_actor(decision, kind, run_id, at)
            if refusal is not None:  # the handler refuses first; a signal may get here
                raise ValueError(refusal)
        manifestation, refusal = self.signature(decision, kind, run_id, at)
        if refusal is not None:
            raise ValueError(refusal)
        if manifestation is not None:
            self.used_signatures.add(manifestation.signature)
        self.use(proven)
        record = ApprovalRecord(
            approver=decision.approver,
            decision="approve" if kind == "approve" else "reject",
            at=at,
            reason=decision.reason,
            signature=manifestation,
            proof=proven,
        )
        self.approvals.append(record)
        needed = self.decision.approvals_required if self.decision else 0
        who = decision.approver
        if proven is not None and proven.proven and manifestation is None:
            who = proven.line()
        if kind == "approve":
            message = f"approved by {who} ({len(self.approvers())} of {needed})"
        else:
            message = f"rejected by {who}: {decision.reason or 'no reason given'}"
        data: dict[str, Any] = {"reason": decision.reason}
        if manifestation is not None:
            message = f"{message}; {manifestation.line()}"
            data["signature"] = manifestation.model_dump(mode="json")
        if proven is not None:
            data["proof"] = proven.model_dump(mode="json")
        self.record(at, "decision", message, decision.approver, data)
        return message

    def refused(self, at: datetime, kind: str, actor: str, channel: str, reason: str) -> None:
        """Put a refused decision on the record: who, what, through which channel, and why."""
        self.record(
            at,
            "decision_refused",
            f"{kind} by {actor} via {channel} refused: {reason}",
            actor,
            {"decision": kind, "channel": channel, "reason": reason},
        )

    def promote_refusal(
        self, request: PromoteInput, run_id: str = "", now: datetime | None = None
    ) -> str | None:
        if self.phase is not Phase.shift:
            return (
                "only a deployment that is shifting traffic can be promoted "
                f"(phase: {self.phase.value})"
            )
        if self.promote is not None or self.abort is not None:
            return "deployment is already being promoted or aborted"
        allowed = self.decision.allowed_approvers if self.decision else []
        if request.approver not in allowed:
            return (
                f"{request.approver} may not promote {self.request.app} in "
                f"{self.request.environment}; allowed: {', '.join(allowed) or 'nobody'}"
            )
        if now is None:
            return None
        if self.identities is not None:
            # Promoting skips the remaining gates: it follows the approval rules (runs from
            # before proven identities did not check these).
            if self.signers is not None:
                refusal = self.signature_for(
                    request.approver, request.signature, "promote", run_id, now
                )[1]
                if refusal is not None:
                    return refusal
            proven, refusal = self.prove(
                request.proof, "promote", request.approver, request.channel, run_id, now
            )
            if refusal is not None or proven is None:
                return refusal or "the sender could not be proven"
            if proven.user == self.initiator_user():
                return f"{proven.user} started this deployment, so someone else must promote it"
            return None
        return self.prove(request.proof, "promote", request.approver, request.channel, run_id, now)[
            1
        ]

    # -------------------------------------------------------------- views

    def status(self, run_id: str | None = None) -> DeploymentStatus:
        r = self.request
        return DeploymentStatus(
            deployment_id=deployment_id(r.app, r.environment),
            app=r.app,
            environment=r.environment,
            version=self.version,
            strategy=r.strategy,
            phase=self.phase,
            paused=self.paused,
            outcome=self.outcome,
            cause=self.cause,
            weights=dict(self.weights),
            step_index=self.step_index,
            steps=list(self.steps),
            risk=self.risk,
            approvals_required=self.decision.approvals_required if self.decision else 0,
            approvals=list(self.approvals),
            release_digest=self.manifest.artifact.digest if self.manifest else None,
            signature_required=self.signers is not None,
            identities_required=self.identities_required,
            initiator=self.initiator,
            run_id=run_id,
            printed_names={u: i.printed_name for u, i in (self.signers or {}).items()},
            audit_anchor=self.audit_anchor,
        )

    def runbook_markdown(self) -> str:
        """Current details for the Temporal UI: where the deployment is and what comes next."""
        r = self.request
        lines = [
            f"**{r.app}** → **{r.environment}** · {r.strategy.value} · "
            f"version `{self.version or 'unverified'}` · started by {r.initiator}",
            f"**Phase:** {self.phase.value}" + (" (paused)" if self.paused else ""),
        ]
        if self.risk is not None:
            lines.append(f"**Risk:** {self.risk.score} ({self.risk.level.value})")
        if self.decision is not None and self.decision.approvals_required:
            lines.append(
                f"**Approvals:** {len(self.approvers())} of {self.decision.approvals_required}"
                f" ({', '.join(self.approvers()) or 'none yet'}); who may approve: "
                f"{', '.join(self.decision.allowed_approvers)}"
                + (" (Part 11 signature required)" if self.signers is not None else "")
            )
        if self.weights:
            lines.append(
                "**Traffic:** " + ", ".join(f"{s} {w}%" for s, w in sorted(self.weights.items()))
            )
        if self.step_index is not None and self.steps:
            lines.append(f"**Step:** {self.step_index + 1} of {len(self.steps)} ({self.steps})")
        verdict = next((e for e in reversed(self.timeline) if e.kind == "gate_verdict"), None)
        if verdict is not None:
            lines.append(f"**Last gate verdict:** {verdict.message}")
        if self.outcome is not None:
            lines.append(
                f"**Outcome:** {self.outcome.value}" + (f" — {self.cause}" if self.cause else "")
            )
        return "  \n".join(lines)
