"""What a deployment's timeline says, read into facts: traffic changes, gates, approvals, phases.

Every renderer works from these facts, so each format tells the same story. An old or odd record
is read as far as it goes and shown, never fatal.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import ValidationError

from zdp.models import (
    ApprovalRecord,
    DeploymentResult,
    DomainCheck,
    GateVerdict,
    PolicyDecision,
    RiskAssessment,
    TimelineEvent,
)

# Events that record who decided what about the release; a signed event of any kind also counts.
APPROVAL_KINDS = frozenset(
    {
        "decision",
        "decision_refused",
        "approved",
        "approval_skipped",
        "emergency_override",
        "promote_requested",
        "initiator",
    }
)
INTERVENTION_KINDS = frozenset(
    {"paused", "resumed", "abort_requested", "alert", "breaker", "standby"}
)
_ACTIONS = {
    "decision_refused": "refused",
    "approved": "approvals complete",
    "approval_skipped": "no approval required",
    "emergency_override": "emergency override",
    "promote_requested": "promoted early",
    "initiator": "started",
}


_M = TypeVar("_M", RiskAssessment, PolicyDecision, DomainCheck, GateVerdict)


@dataclass(frozen=True)
class Approval:
    event: TimelineEvent
    who: str
    action: str
    reason: str
    signature: str | None  # the §11.50 manifestation, as one line
    key: str | None
    # How the identity is known: "signed via cli, key sha256:…", "via Slack (workspace …,
    # user …), attested by slack-bot", "typed via api, not proven"; "" in older records.
    identity: str = ""


@dataclass(frozen=True)
class Traffic:
    index: int  # position in the timeline; -1 for the split in force before the first change
    seconds: float
    at: datetime
    what: str
    weights: dict[str, int]


@dataclass(frozen=True)
class Gate:
    index: int
    seconds: float
    event: TimelineEvent
    label: str
    verdict: GateVerdict | None  # None when the event's data is not a verdict this code reads


@dataclass(frozen=True)
class Facts:
    result: DeploymentResult
    start: datetime | None
    duration: float
    risk: RiskAssessment | None
    policy: PolicyDecision | None
    release: Mapping[str, Any]
    checks: list[tuple[TimelineEvent, DomainCheck | None]]
    approvals: list[Approval]
    traffic: list[Traffic]
    gates: list[Gate]
    phases: list[tuple[TimelineEvent, float, float | None]]  # entry, +s, duration
    compensations: list[TimelineEvent]
    interventions: list[TimelineEvent]

    @property
    def slots(self) -> list[str]:
        return sorted({slot for change in self.traffic for slot in change.weights})

    def seconds(self, at: datetime) -> float:
        return (utc(at) - self.start).total_seconds() if self.start else 0.0


def read_facts(result: DeploymentResult) -> Facts:
    events = result.timeline
    start = min((utc(e.at) for e in events), default=None)
    end = max((utc(e.at) for e in events), default=None)

    def since(at: datetime) -> float:
        return (utc(at) - start).total_seconds() if start else 0.0

    risk, policy, release = result.status.risk, None, {}
    checks: list[tuple[TimelineEvent, DomainCheck | None]] = []
    traffic: list[Traffic] = []
    gates: list[Gate] = []
    for index, event in enumerate(events):
        data = event.data
        if event.kind == "release_verified":
            release = data
        elif event.kind == "risk_assessed":
            risk = _parsed(RiskAssessment, data) or risk
            policy = _parsed(PolicyDecision, data.get("decision")) or policy
        elif event.kind == "domain_check":
            checks.append((event, _parsed(DomainCheck, data)))
        elif event.kind == "weights" or (event.kind == "compensated" and "weights" in data):
            previous = _weights(data.get("previous"))
            if not traffic and previous:
                traffic.append(
                    Traffic(-1, 0.0, start or event.at, "before the first change", previous)
                )
            what = "traffic change" if event.kind == "weights" else "rollback: traffic restored"
            traffic.append(
                Traffic(index, since(event.at), event.at, what, _weights(data.get("weights")))
            )
        elif event.kind == "gate_verdict":
            verdict = _parsed(GateVerdict, data)
            label = event.message
            if verdict is not None:
                label = event.message.partition(f": {verdict.result.value} — ")[0]
            gates.append(Gate(index, since(event.at), event, label, verdict))
    entries = [e for e in events if e.kind == "phase"]
    phases = [
        (e, since(e.at), (utc(n.at) - utc(e.at)).total_seconds() if n else None)
        for e, n in zip(entries, [*entries[1:], None], strict=True)
    ]
    return Facts(
        result=result,
        start=start,
        duration=(end - start).total_seconds() if start and end else 0.0,
        risk=risk,
        policy=policy,
        release=release,
        checks=checks,
        approvals=[
            _approval(e, result.status.approvals)
            for e in events
            if e.kind in APPROVAL_KINDS or _signature(e.data) is not None
        ],
        traffic=traffic,
        gates=gates,
        phases=phases,
        compensations=[e for e in events if e.kind == "compensated"],
        interventions=[e for e in events if e.kind in INTERVENTION_KINDS],
    )


def _parsed(model: type[_M], data: object) -> _M | None:
    """The event data as a model, or None: an old or odd record is shown, never fatal.

    Keys the model does not know are left out, so a record from a newer engine still reads.
    """
    if not isinstance(data, Mapping):
        return None
    try:
        return model.model_validate({k: v for k, v in data.items() if k in model.model_fields})
    except ValidationError:
        return None


def _weights(raw: object) -> dict[str, int]:
    if not isinstance(raw, Mapping):
        return {}
    return {str(k): int(v) for k, v in raw.items() if isinstance(v, int | float)}


def _approval(event: TimelineEvent, records: list[ApprovalRecord]) -> Approval:
    data = event.data
    who = event.actor or ""
    if event.kind == "approved":
        approvers = data.get("approvers")
        who = ", ".join(str(a) for a in approvers) if isinstance(approvers, list) else who
    action: str
    if event.kind == "decision":
        # The record says approve or reject; the message says it too, for results without one.
        matches = [r.decision for r in records if r.approver == who and utc(r.at) == utc(event.at)]
        action = matches[0] if matches else "reject" if "rejected" in event.message else "approve"
    else:
        action = _ACTIONS.get(event.kind, event.kind)
    reason = as_text(data.get("reason")) if data.get("reason") else event.message
    signature = _signature(data)
    return Approval(
        event,
        who,
        action,
        reason,
        signature[0] if signature else None,
        signature and signature[1],
        _identity(data),
    )


def _identity(data: Mapping[str, Any]) -> str:
    """How the actor of a request was known, from its proof (zdp.compliance.identity)."""
    proof = data.get("proof")
    if not isinstance(proof, Mapping):
        return ""
    channel = as_text(proof.get("channel")) or "?"
    if not proof.get("proven"):
        return f"typed via {channel}, not proven"
    raw = proof.get("via")
    via: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    if proof.get("attested_by"):
        how = ", ".join(f"{k} {as_text(via[k])}" for k in ("workspace", "user") if k in via)
        where = "Slack" if channel == "slack" else channel
        return (
            f"via {where}"
            + (f" ({how})" if how else "")
            + (f", attested by {as_text(proof.get('attested_by'))}")
        )
    return f"signed via {channel}, key {as_text(proof.get('key_fingerprint'))}"


def _signature(data: Mapping[str, Any]) -> tuple[str, str | None] | None:
    """The 21 CFR 11.50 manifestation of a signed event: printed name, meaning, date and time."""
    sig = data.get("signature")
    if not isinstance(sig, Mapping):
        return None
    name = as_text(sig.get("printed_name")).strip() or "(no printed name)"
    meaning = as_text(sig.get("meaning")).strip() or "(no meaning stated)"
    line = f"Signed by {name} — {meaning} — {_signed_at(sig.get('signed_at'))}"
    return line, as_text(sig.get("key_fingerprint")) or None


def _signed_at(value: object) -> str:
    if isinstance(value, datetime):
        at = value
    else:
        try:
            at = datetime.fromisoformat(as_text(value))
        except ValueError:
            return f"{as_text(value) or 'no date'} (unreadable date and time)"
    return f"{utc(at):%Y-%m-%d %H:%M:%S} UTC"


def utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def as_text(value: object) -> str:
    return "" if value is None else str(value)
