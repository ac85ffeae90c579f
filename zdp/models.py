"""Data that crosses Temporal and the CLI: releases, requests, risk, verdicts and the timeline.

Every model here is pydantic v2 and travels through `pydantic_data_converter`, so workflows,
activities, the CLI and tests all speak the same types. Nothing in this module does I/O.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from zdp.gates import GatePolicy

TASK_QUEUE = "zdp-deployments"
DEFAULT_STEPS: tuple[int, ...] = (1, 5, 25, 100)

_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
# A release version (SemVer, PEP 440 and the like: 2.0.0, 2.0.0-rc.1, 2.0.0+build.5,
# 2.0.0rc1): it names folders and labels, so it starts with a digit and holds no separator.
_VERSION = re.compile(r"^[0-9][0-9A-Za-z.+_-]{0,63}$")


def check_version(value: str) -> str:
    """`value` if it is a version that is safe as a path segment; ValueError otherwise."""
    if not _VERSION.match(value) or ".." in value:
        raise ValueError(
            f"version {value[:80]!r} is not a release version: start with a digit, then "
            "letters, digits, '.', '+', '_' or '-' (at most 64, no '..'), e.g. 2.0.0 or 2.0.0-rc.1"
        )
    return value


_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def deployment_id(app: str, environment: str) -> str:
    """The workflow id: one deployment at a time per app and environment."""
    return f"deploy-{app}-{environment}"


class Strategy(StrEnum):
    canary = "canary"
    blue_green = "blue-green"


class Phase(StrEnum):
    verify = "verify"
    assess_risk = "assess_risk"
    await_approval = "await_approval"
    provision = "provision"
    shift = "shift"
    promote = "promote"
    rollback = "rollback"
    paused = "paused"
    done = "done"


class Outcome(StrEnum):
    promoted = "promoted"
    rolled_back = "rolled_back"
    rejected = "rejected"
    expired = "expired"
    aborted = "aborted"
    failed = "failed"
    # A domain check refused the deployment before anything changed (a freeze window, a batch
    # in progress on the line): nothing was provisioned, nothing to roll back.
    blocked = "blocked"


class RiskLevel(StrEnum):
    low = "low"
    medium = "medium"
    high = "high"
    critical = "critical"


class Criticality(StrEnum):
    low = "low"
    medium = "medium"
    high = "high"
    critical = "critical"


# Where a request came from: the zdp CLI, the Slack bot, a UI, or any other API client.
Channel = Literal["cli", "slack", "ui", "api"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


# --------------------------------------------------------------------------- releases


class Artifact(_Model):
    """What runs: an OCI image pinned by digest (Kubernetes) or a built wheel (local runtime)."""

    kind: Literal["oci-image", "wheel"]
    reference: str = Field(min_length=1)
    digest: str

    @field_validator("digest")
    @classmethod
    def _digest_is_sha256(cls, value: str) -> str:
        if not _DIGEST.match(value):
            raise ValueError("digest must be 'sha256:' followed by 64 lowercase hex digits")
        return value


class ChangeMetadata(_Model):
    """What changed, as risk scoring sees it. Filled from git by `zdp release create`."""

    commit: str | None = None
    lines_changed: int = Field(default=0, ge=0)
    files_changed: int = Field(default=0, ge=0)
    migrations: bool = False
    config_changed: bool = False
    dependencies_changed: bool = False
    ticket: str | None = None
    author: str | None = None
    # PCI DSS 6.5.1 change record (required by the pci-dss compliance profile).
    description: str | None = None
    security_impact: str | None = None
    test_evidence: str | None = None
    backout_procedure: str | None = None
    # GDPR Art. 35: a release that changes personal-data processing names its DPIA.
    personal_data_change: bool = False
    dpia_ref: str | None = None


Qualification = Literal["IQ", "OQ", "PQ"]


def _all_qualifications() -> list[Qualification]:
    return ["IQ", "OQ", "PQ"]


class ValidationReference(_Model):
    """The computer-system validation record a GxP release is covered by (IQ/OQ/PQ)."""

    document_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]{2,63}$")
    qualifications: list[Qualification] = Field(default_factory=_all_qualifications, min_length=1)
    status: Literal["approved", "pending"] = "approved"
    # The approval: a Part 11 e-signature over a SignedValidation by a registered validation
    # approver who did not author the release (`zdp release approve-validation`).
    signature: ApprovalSignature | None = None


class SignedValidation(_Model):
    """What a validation approver signs: this release (by artifact digest) is covered by this
    validation document's qualifications. Bound to the document, the app and the digest, so
    it cannot be moved to another release."""

    type: Literal["zdp-validation/v1"] = "zdp-validation/v1"
    document_id: str
    app: str
    release_digest: str
    qualifications: list[Qualification]
    meaning: str = Field(min_length=3, max_length=200)
    signer: str
    printed_name: str
    signed_at: datetime


class ReleaseManifest(_Model):
    """A release: exactly what gets deployed, and what changed since the last one."""

    app: str
    version: str = Field(min_length=1, max_length=128)
    artifact: Artifact
    config_overrides: dict[str, str] = Field(default_factory=dict)
    change: ChangeMetadata = Field(default_factory=ChangeMetadata)
    created_at: datetime | None = None
    # Required by environments with `requires_validation` (a pharma production line).
    validation: ValidationReference | None = None
    # The environments this release may be deployed to, as signed (empty: any).
    environments: list[str] = Field(default_factory=list)

    @field_validator("app")
    @classmethod
    def _app_is_a_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("app must be a DNS-style name: lowercase letters, digits and '-'")
        return value

    @field_validator("version")
    @classmethod
    def _version_is_safe(cls, value: str) -> str:
        return check_version(value)


class DsseSignature(_Model):
    keyid: str = ""
    sig: str


class DsseEnvelope(_Model):
    """A DSSE envelope (secure-systems-lab/dsse v1.0.0): payload and signatures base64-encoded."""

    payloadType: str
    payload: str
    signatures: list[DsseSignature] = Field(default_factory=list)


class VerifiedRelease(_Model):
    """A release whose envelope verified against a trusted key; the manifest is the signed one."""

    manifest: ReleaseManifest
    signer_fingerprint: str
    statement_digest: str
    checks: list[DomainCheck] = Field(default_factory=list)


class DomainCheck(_Model):
    """One business rule asked before anything changes: its verdict and why, for the timeline.

    `blocking` means it failed and stops the deployment (a freeze window without an emergency
    override, a batch in progress on a production line, a GxP release without validation).
    """

    name: str
    passed: bool
    detail: str
    blocking: bool = False
    # A blocking check that may clear by itself (work in progress finishing): the deployment
    # waits up to `wait_seconds`, asking again every `poll_seconds`, instead of ending.
    wait_seconds: float | None = None
    poll_seconds: float | None = None


# --------------------------------------------------------------------------- risk and policy


class RiskFactor(_Model):
    name: str
    detail: str
    points: int


class RiskAssessment(_Model):
    score: int = Field(ge=0, le=100)
    level: RiskLevel
    factors: list[RiskFactor]


class GateThresholds(_Model):
    """How strict the health gate is at each step. Stricter means a lower error budget."""

    max_error_ratio: float = Field(default=0.01, ge=0.0, le=1.0)
    min_samples: int = Field(default=3, ge=1)
    probe_interval_seconds: float = Field(default=0.05, gt=0.0)
    max_latency_ms: float = Field(default=250.0, gt=0.0)
    # A breach needs at least this many failures as well as a ratio over budget: one probe
    # that timed out on a busy machine is not a verdict on a release.
    min_failures: int = Field(default=3, ge=1)


class PolicyDecision(_Model):
    """What the policy makes of a risk assessment for one app and environment."""

    approvals_required: int = Field(ge=0)
    allowed_approvers: list[str]
    steps: list[int]
    bake_seconds: float = Field(ge=0.0)
    # The gate's main thresholds, as recorded since the first histories; `gate_policy` (newer
    # histories) is the whole policy the tier named, with the app/environment's overrides.
    gate: GateThresholds
    rationale: str = ""
    gate_policy_name: str | None = None
    gate_policy: GatePolicy | None = None


class ConfigChange(_Model):
    """One config key a release sets differently from the running version. `before` is None
    when the running version does not set it (or its config is unknown: `known` False);
    `after` is None when the new release no longer sets it."""

    key: str
    before: str | None = None
    after: str | None = None
    known: bool = True

    def describe(self) -> str:
        if not self.known:
            return f"{self.key}={self.after} (the running version's config is not known)"
        if self.before is None:
            return f"{self.key}={self.after} (new)"
        if self.after is None:
            return f"{self.key} no longer set (was {self.before})"
        return f"{self.key}: {self.before} -> {self.after}"


class RiskReport(_Model):
    assessment: RiskAssessment
    decision: PolicyDecision
    checks: list[DomainCheck] = Field(default_factory=list)
    # Set when approvals must be Part 11 e-signatures: the allowed approvers' registered
    # identities, so the workflow can verify signatures deterministically (and keep them).
    signers: dict[str, ApproverIdentity] | None = None
    # Why the deployment may not go ahead at all; None when it may.
    blocked: str | None = None
    emergency_override: str | None = None
    # Proven identities: the registry snapshot every later request is checked against,
    # whether unsigned requests are refused, who started the deployment (None: refused, see
    # `initiator_refused`). Absent in histories from before proven identities.
    identities: dict[str, ApproverIdentity] | None = None
    identities_required: bool = False
    identities_reason: str = ""
    initiator: ProvenActor | None = None
    initiator_refused: str | None = None
    # What the runtime passes the app as APP_ENV: the environment's `app_env`, else its name.
    app_env: str | None = None
    # Who may pause, resume and abort besides the approvers and the initiator (None in older
    # histories, which did not check it).
    operators: list[str] | None = None
    # The version serving now (None: nothing serves, or older histories), and how the release's
    # config overrides differ from the ones it runs with.
    running_version: str | None = None
    config_changes: list[ConfigChange] = Field(default_factory=list)


# --------------------------------------------------------------------------- runtime and health


class Deployed(_Model):
    app: str
    slot: str
    version: str
    endpoints: list[str]
    # The config overrides of the release it runs; None when the runtime cannot tell.
    config: dict[str, str] | None = None
    # What the runtime wants on the record about this start: how the process is confined,
    # code that had to be unpacked again because it differed from its signed wheel.
    notes: list[str] = Field(default_factory=list)


class ProbeResult(_Model):
    endpoint: str
    ok: bool
    latency_ms: float
    status_code: int | None = None
    error: str | None = None
    # The answer did not come within the deadline: evidence of slowness, not an error.
    timed_out: bool = False


class GateResult(StrEnum):
    passed = "pass"
    failed = "fail"
    inconclusive = "inconclusive"


class GateVerdict(_Model):
    result: GateResult
    reason: str
    slot: str
    samples: int
    evidence: dict[str, float] = Field(default_factory=dict)
    thresholds: dict[str, float] = Field(default_factory=dict)
    # Set when the baseline (stable) degrades as much as the new version: the release is not
    # the cause, so the workflow pauses and alerts instead of rolling back.
    diagnosis: str | None = None
    # What decided a failure: errors, latency or template (None: nothing failed, or a verdict
    # from before it was recorded). The engine's metrics count verdicts by it.
    dimension: str | None = None
    details: list[str] = Field(default_factory=list)
    # Circuit-breaker transitions seen during this gate ("endpoint: closed -> open (reason)");
    # the workflow records each as a `breaker` event in the timeline.
    breaker_transitions: list[str] = Field(default_factory=list)


# --------------------------------------------------------------------------- the deployment


class DeploymentRequest(_Model):
    """Input of DeploymentWorkflow. The release is trusted only after the verify phase."""

    app: str
    environment: str
    release: DsseEnvelope
    strategy: Strategy = Strategy.canary
    steps: list[int] | None = None
    bake_seconds: float | None = Field(default=None, ge=0.0)
    initiator: str = Field(min_length=1)
    change_ref: str | None = None
    reason: str | None = None
    approval_timeout_seconds: float = Field(default=4 * 3600.0, gt=0.0)
    standby_seconds: float = Field(default=0.0, ge=0.0)
    # The reason for deploying inside a freeze window; it raises the approvals needed.
    emergency_override: str | None = Field(default=None, min_length=10, max_length=500)
    # The initiator's signature over a SignedRequest for "start" (zdp.compliance.identity),
    # and the channel it came through.
    proof: ApprovalSignature | None = None
    channel: Channel = "api"
    # Deploy a version older than the one running (a downgrade is refused otherwise). Only the
    # environment's operators and approvers may; the start's signature covers it.
    allow_downgrade: bool = False

    @field_validator("steps")
    @classmethod
    def _steps_rise_to_100(cls, value: list[int] | None) -> list[int] | None:
        if value is None:
            return value
        if not value or value[-1] != 100:
            raise ValueError("steps must end at 100")
        if any(not 0 < s <= 100 for s in value) or value != sorted(set(value)):
            raise ValueError("steps must be strictly increasing percentages between 1 and 100")
        return value

    @model_validator(mode="after")
    def _names(self) -> DeploymentRequest:
        for label, value in (("app", self.app), ("environment", self.environment)):
            if not _NAME.match(value):
                raise ValueError(
                    f"{label} must be a DNS-style name: lowercase letters, digits, '-'"
                )
        return self


# --------------------------------------------------------------------------- e-signatures
# 21 CFR Part 11 signatures on approvals; how they are made and checked: zdp/compliance/esign.py


class ApprovalSignature(_Model):
    """The signed payload (canonical JSON, base64), the Ed25519 signature and the key's id."""

    payload: str
    sig: str
    key_fingerprint: str


IdentityKind = Literal["person", "ci", "bot"]


class ApproverIdentity(_Model):
    """A registered identity (a person, a CI system or a bot): who they are in print, the
    public key that speaks for them, and the administrator's signed registration."""

    user: str
    printed_name: str = Field(min_length=2, max_length=200)
    public_key_pem: str
    fingerprint: str
    registered_at: datetime
    kind: IdentityKind = "person"
    administrator: bool = False
    # Registered with proof that the private key is passphrase-encrypted (Part 11's second
    # identification component): only such people sign Part 11 approvals and validations.
    encrypted_key: bool = False
    # The administrator's signature over a SignedRegistration of exactly these fields.
    registration: ApprovalSignature | None = None


class SignedRegistration(_Model):
    """What an administrator signs to register (or remove) an identity."""

    type: Literal["zdp-registration/v1"] = "zdp-registration/v1"
    action: Literal["register", "remove"]
    user: str
    kind: IdentityKind
    administrator: bool
    printed_name: str
    fingerprint: str
    admin: str
    signed_at: datetime
    encrypted_key: bool = False


RequestAction = Literal["start", "approve", "reject", "promote", "pause", "resume", "abort"]


class SignedRequest(_Model):
    """What an actor (or a bot attesting for one) signs to send a state-changing request."""

    type: Literal["zdp-request/v1"] = "zdp-request/v1"
    action: RequestAction
    actor: str
    deployment_id: str
    # Empty for a start (no run exists yet): a start binds the digest of its request instead.
    run_id: str
    release_digest: str
    request_digest: str | None = None
    channel: str
    signed_at: datetime
    # A bot that authenticated the actor its own way, and how (e.g. Slack workspace and user).
    attested_by: str | None = None
    via: dict[str, str] = Field(default_factory=dict)


class ProvenActor(_Model):
    """Who sent a request, and how that is known: a verified signature (`proven`), possibly a
    bot's attestation, or only a typed name where identities need not be proven."""

    user: str
    channel: str
    proven: bool
    key_fingerprint: str | None = None
    attested_by: str | None = None
    via: dict[str, str] = Field(default_factory=dict)
    signed_at: datetime | None = None
    signature: str | None = None

    def line(self) -> str:
        """ "bob via Slack (workspace T1, user U1), attested by slack-bot"."""
        if not self.proven:
            return f"{self.user} via {self.channel} (typed name, not proven)"
        if self.attested_by:
            order = ["workspace", "user", *sorted(set(self.via) - {"workspace", "user"})]
            how = ", ".join(f"{k} {self.via[k]}" for k in order if k in self.via)
            where = "Slack" if self.channel == "slack" else self.channel
            return (
                f"{self.user} via {where}" + (f" ({how})" if how else "")
                + f", attested by {self.attested_by}"
            )  # fmt: skip
        return f"{self.user} via {self.channel} (signed with key {self.key_fingerprint})"


class SignedApproval(_Model):
    """What an approver signs. Every field is checked against the deployment it is sent to."""

    type: Literal["zdp-approval/v1"] = "zdp-approval/v1"
    deployment_id: str
    run_id: str
    release_digest: str
    decision: Literal["approve", "reject", "promote"]
    meaning: str = Field(min_length=3, max_length=200)
    signer: str
    printed_name: str
    signed_at: datetime


class SignatureManifestation(_Model):
    """§11.50: printed name, date and time, meaning; shown wherever the approval is shown."""

    printed_name: str
    meaning: str
    signed_at: datetime
    key_fingerprint: str
    signature: str

    def line(self) -> str:
        return (
            f"signed by {self.printed_name} — {self.meaning} — "
            f"{self.signed_at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
        )


# Where a decision came from, recorded with it and with its refusal.
class ApprovalInput(_Model):
    """An approve or reject message, from the CLI, Slack, or a signal-only client."""

    approver: str = Field(min_length=1, max_length=128)
    reason: str | None = Field(default=None, max_length=2000)
    # Required where the environment's compliance profile asks for Part 11 signatures.
    signature: ApprovalSignature | None = None
    channel: Channel = "api"
    # The approver's signature over a SignedRequest (zdp.compliance.identity): who decided.
    proof: ApprovalSignature | None = None


class PromoteInput(_Model):
    approver: str = Field(min_length=1, max_length=128)
    reason: str | None = Field(default=None, max_length=2000)
    channel: Channel = "api"
    proof: ApprovalSignature | None = None
    # Where Part 11 applies: promoting skips the remaining gates, so it is signed like an
    # approval (decision "promote").
    signature: ApprovalSignature | None = None


class AbortInput(_Model):
    """Who pauses, resumes or aborts, and why."""

    actor: str = Field(default="operator", min_length=1, max_length=128)
    reason: str | None = Field(default=None, max_length=2000)
    channel: Channel = "api"
    proof: ApprovalSignature | None = None


class ApprovalRecord(_Model):
    approver: str
    decision: Literal["approve", "reject"]
    at: datetime
    reason: str | None = None
    signature: SignatureManifestation | None = None
    # Who decided and how that is known (None in histories from before proven identities).
    proof: ProvenActor | None = None


class TimelineEvent(_Model):
    """One line of the forensic record."""

    at: datetime
    phase: Phase
    kind: str
    message: str
    actor: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class DeploymentStatus(_Model):
    deployment_id: str
    app: str
    environment: str
    version: str | None
    strategy: Strategy
    phase: Phase
    paused: bool = False
    outcome: Outcome | None = None
    cause: str | None = None
    weights: dict[str, int] = Field(default_factory=dict)
    step_index: int | None = None
    steps: list[int] = Field(default_factory=list)
    risk: RiskAssessment | None = None
    approvals_required: int = 0
    approvals: list[ApprovalRecord] = Field(default_factory=list)
    # What an approver needs to sign a decision (zdp approve --key): the release digest, and
    # the printed name per approver when signatures are required.
    release_digest: str | None = None
    signature_required: bool = False
    printed_names: dict[str, str] = Field(default_factory=dict)
    # The latest signed checkpoint of the audit log this deployment took (approval, end).
    audit_anchor: AuditAnchor | None = None
    # Proven identities: whether unsigned requests are refused, and who started it.
    identities_required: bool = False
    initiator: ProvenActor | None = None
    # The Temporal run this status is of: a decision signed or clicked for it acts on it only.
    run_id: str | None = None


class DeploymentResult(_Model):
    outcome: Outcome
    cause: str | None = None
    status: DeploymentStatus
    timeline: list[TimelineEvent]


# --------------------------------------------------------------------------- activity inputs


class VerifyReleaseInput(_Model):
    app: str
    envelope: DsseEnvelope
    environment: str | None = None
    # From the deployment request, for the compliance profiles' evidence checks.
    change_ref: str | None = None
    reason: str | None = None
    strategy: Strategy | None = None  # checked against the environment's allowed strategies


class AssessRiskInput(_Model):
    app: str
    environment: str
    manifest: ReleaseManifest
    at: datetime
    requested_steps: list[int] | None = None
    requested_bake_seconds: float | None = None
    emergency_override: str | None = None
    # The start's proof, checked by assess_risk against the registry, as of when the
    # deployment started (a worker that was down does not make a good start stale).
    started_at: datetime | None = None
    initiator: str | None = None
    initiator_proof: ApprovalSignature | None = None
    channel: str = "api"
    request_digest: str | None = None
    allow_downgrade: bool = False
    # The environment whose own slots to act on (the embedded stack gives each environment its
    # own; zdp.platforms.layout). None in histories from before: the shared slots.
    scope: str | None = None
    run_id: str | None = None


class ProvisionInput(_Model):
    manifest: ReleaseManifest
    slot: str
    # The target environment as the app reads it (APP_ENV); None in older histories.
    app_env: str | None = None
    # The environment whose own slots to act on (the embedded stack gives each environment its
    # own; zdp.platforms.layout). None in histories from before: the shared slots.
    scope: str | None = None


class RetireInput(_Model):
    app: str
    slot: str
    version: str | None = None
    # The environment whose own slots to act on (the embedded stack gives each environment its
    # own; zdp.platforms.layout). None in histories from before: the shared slots.
    scope: str | None = None


class WeightsInput(_Model):
    app: str
    weights: dict[str, int]
    # A rollback: `weights` is what served before the deployment (empty when nothing did), with
    # the slots the deployment used at 0. The activity routes back to the part of it that still
    # runs, or, when none does, leaves traffic where a version runs (zdp.platforms.traffic_guard).
    restore: bool = False
    # The environment whose own slots to act on (the embedded stack gives each environment its
    # own; zdp.platforms.layout). None in histories from before: the shared slots.
    scope: str | None = None

    @model_validator(mode="after")
    def _weights_sum_to_100(self) -> WeightsInput:
        value = self.weights
        if any(w < 0 for w in value.values()):
            raise ValueError(f"weights must be non-negative, got {value}")
        if not self.restore and sum(value.values()) != 100:
            raise ValueError(f"weights must be non-negative and sum to 100, got {value}")
        return self


class GateInput(_Model):
    app: str
    slot: str
    version: str
    bake_seconds: float
    thresholds: GateThresholds
    label: str = ""
    # What the new slot is compared with (stable for a canary, the live colour for
    # blue-green), and what the gate policy is chosen by. Absent in older histories.
    baseline_slot: str | None = None
    environment: str | None = None
    risk_level: RiskLevel | None = None
    # The resolved gate policy (from the policy decision), and the traffic weights of the slot
    # and of its baseline while the gate runs; absent in older histories, where the policy was
    # looked up by risk level.
    policy: GatePolicy | None = None
    weight: int | None = None
    baseline_weight: int | None = None
    # The environment whose own slots to act on (the embedded stack gives each environment its
    # own; zdp.platforms.layout). None in histories from before: the shared slots.
    scope: str | None = None


# --------------------------------------------------------------------------- compliance evidence


class AuditRecordInput(_Model):
    """Timeline events [start_index, start_index + len(events)) of one workflow run."""

    workflow_id: str
    run_id: str
    start_index: int = Field(ge=0)
    events: list[TimelineEvent]
    checkpoint: bool = False


class AuditAnchor(_Model):
    """The engine's signed checkpoint of the audit log as it stood when a deployment logged
    its approval or its end, kept outside the log files: in the workflow's history and result,
    and in its evidence bundle. `zdp audit verify` checks the log against every anchor it can
    reach, so cutting the log's tail together with its checkpoint lines shows."""

    size: int = Field(ge=0)  # entries covered: 0 .. size-1
    head_hash: str
    at: datetime
    key_fingerprint: str
    signature: str
    first_hash: str | None = None  # the hash of entry 0: which log this anchors


class AuditReceipt(_Model):
    appended: int
    size: int
    head_hash: str
    checkpoint_size: int | None = None
    anchor: AuditAnchor | None = None


class SealEvidenceInput(_Model):
    workflow_id: str
    run_id: str
    result: DeploymentResult
    release: DsseEnvelope


class EvidenceReceipt(_Model):
    path: str
    files: int
    manifest_sha256: str
    key_fingerprint: str


# --------------------------------------------------------------------------- notifications
# What zdp.notify sends and the Slack messages show (here, below both, so neither imports the
# other for its types).

NotificationKind = Literal[
    "started",
    "awaiting_approval",
    "step_passed",
    "rolled_back",
    "promoted",
    "blocked",
    "rejected",
    "failed",
    "expired",
    "aborted",
]
# The kinds that end a deployment: its approval messages lose their buttons.
FINAL_KINDS = frozenset({"rolled_back", "promoted", "blocked", "rejected", "failed", "expired",
                         "aborted"})  # fmt: skip


class MessageRef(BaseModel):
    """A message a notifier posted (Slack: channel and ts), so it can be updated later."""

    model_config = ConfigDict(extra="forbid")

    channel: str
    ts: str


class NotifyReceipt(BaseModel):
    """What the notify activity did: whether any notifier is configured, and the approval
    messages it posted (the workflow keeps them, and closes them when the deployment ends)."""

    model_config = ConfigDict(extra="forbid")

    delivered: bool
    messages: list[MessageRef] = Field(default_factory=list)


class Notification(BaseModel):
    """One thing that happened to a deployment, with what a person needs to act on it."""

    model_config = ConfigDict(extra="forbid")

    kind: NotificationKind
    deployment_id: str
    app: str
    environment: str
    version: str | None = None
    initiator: str | None = None
    change_ref: str | None = None
    risk_score: int | None = Field(default=None, ge=0, le=100)
    risk_level: RiskLevel | None = None
    top_factors: list[str] = Field(default_factory=list)
    # How the release's config differs from the running version's (ConfigChange.describe).
    running_version: str | None = None
    config_changes: list[str] = Field(default_factory=list)
    approvals_required: int = Field(default=0, ge=0)
    allowed_approvers: list[str] = Field(default_factory=list)
    signature_required: bool = False
    step: str | None = None
    cause: str | None = None
    at: AwareDatetime
    # The run and release the notification is about: approval buttons carry them, so a click
    # acts on exactly this run of this release or is refused.
    run_id: str | None = None
    release_digest: str | None = None
    # On a final notification: the approval messages to close (their buttons removed).
    close: list[MessageRef] = Field(default_factory=list)
