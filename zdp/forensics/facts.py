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

from zdp.forensics.change import Change, identity_text, read_change
from zdp.models import (
    ApprovalRecord,
    DeploymentResult,
    DomainCheck,
    GateVerdict,
    Phase,
    PolicyDecision,
    RiskAssessment,
    Strategy,
    TimelineEvent,
)

# People's decisions on the release: approve or reject, accepted or refused. What follows from
# them ("approvals complete", "no approval required") is an event, shown beside the table.
DECISIONS = frozenset({"approve", "reject"})
APPROVAL_EVENT_KINDS = frozenset({"approved", "approval_skipped"})
# People's and the engine's acts during the deployment, beside the decisions: an early
# promotion, an emergency override, a pause, an abort, a refused control, an alert.
INTERVENTION_KINDS = frozenset(
    {
        "paused",
        "resumed",
        "abort_requested",
        "alert",
        "breaker",
        "standby",
        "promote_requested",
        "emergency_override",
    }
)


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
    # The slots that ran the new version at that moment; every other slot ran what served
    # before. A canary promotion moves traffic from canary to stable once stable has been
    # rebuilt on the new version: per slot it looks like a rollback, per version it is none.
    new_slots: frozenset[str] = frozenset()

    @property
    def new(self) -> int:
        """The share of traffic on the new version."""
        return sum(w for slot, w in self.weights.items() if slot in self.new_slots)

    @property
    def old(self) -> int:
        """The share of traffic on what served before."""
        return sum(w for slot, w in self.weights.items() if slot not in self.new_slots)


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
    approvals: list[Approval]  # people's decisions only
    approval_events: list[TimelineEvent]  # approvals complete, no approval required
    signed: list[TimelineEvent]  # every event with a Part 11 signature, decisions or not
    change: Change
    traffic: list[Traffic]
    gates: list[Gate]
    phases: list[tuple[TimelineEvent, float, float | None]]  # entry, +s, duration
    compensations: list[TimelineEvent]
    interventions: list[TimelineEvent]

    @property
    def slots(self) -> list[str]:
        return sorted({slot for change in self.traffic for slot in change.weights})

    @property
    def new_version(self) -> str:
        return self.result.status.version or "(not verified)"

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
    new_slots: set[str] = set()
    for index, event in enumerate(events):
        data = event.data
        if event.kind == "provisioned" and isinstance(data.get("slot"), str):
            new_slots.add(data["slot"])
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
                before = frozenset(new_slots)
                traffic.append(
                    Traffic(-1, 0.0, start or event.at, "before the first change", previous, before)
                )
            what = "traffic change" if event.kind == "weights" else "rollback: traffic restored"
            if _promotion(result, event):
                # The workflow rebuilds stable on the new version before it routes to it.
                new_slots.add("stable")
                what = "promotion: stable, rebuilt on the new version, takes over from canary"
            weights = _weights(data.get("weights"))
            traffic.append(
                Traffic(index, since(event.at), event.at, what, weights, frozenset(new_slots))
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
        approvals=[_approval(e, result.status.approvals) for e in events if _is_decision(e)],
        approval_events=[e for e in events if e.kind in APPROVAL_EVENT_KINDS],
        signed=[e for e in events if _signature(e.data) is not None],
        change=read_change(result),
        traffic=traffic,
        gates=gates,
        phases=phases,
        compensations=[e for e in events if e.kind == "compensated"],
        interventions=[
            e
            for e in events
            if e.kind in INTERVENTION_KINDS
            or (e.kind == "decision_refused" and not _is_decision(e))
        ],
    )


def _promotion(result: DeploymentResult, event: TimelineEvent) -> bool:
    """A canary promotion's traffic change: stable, now the new version, takes the traffic."""
    return (
        event.kind == "weights"
        and event.phase is Phase.promote
        and result.status.strategy is Strategy.canary
    )


def refused_decision(event: TimelineEvent) -> str:
    """What a refused request asked for: approve, reject, promote, start, pause, abort…"""
    recorded = event.data.get("decision")
    return as_text(recorded) if recorded else event.message.partition(" ")[0]


def _is_decision(event: TimelineEvent) -> bool:
    if event.kind == "decision_refused":
        return refused_decision(event) in DECISIONS
    return event.kind == "decision"


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
    action: str
    if event.kind == "decision":
        # The record says approve or reject; the message says it too, for results without one.
        matches = [r.decision for r in records if r.approver == who and utc(r.at) == utc(event.at)]
        action = matches[0] if matches else "reject" if "rejected" in event.message else "approve"
    else:
        action = f"{refused_decision(event)} (refused)"
    reason = as_text(data.get("reason")) if data.get("reason") else event.message
    signature = _signature(data)
    return Approval(
        event,
        who,
        action,
        reason,
        signature[0] if signature else None,
        signature and signature[1],
        identity_text(data),
    )


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
