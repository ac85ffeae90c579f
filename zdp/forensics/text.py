"""What every report format shows the same way: tones and marks, numbers, summary and table rows."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime

from zdp.forensics.change import change_summary_rows
from zdp.forensics.facts import Facts, Gate, as_text, utc
from zdp.models import (
    DeploymentResult,
    DomainCheck,
    GateResult,
    Outcome,
    PolicyDecision,
    RiskAssessment,
    TimelineEvent,
)

GOOD, BAD, WARN = "good", "bad", "warn"
MARK = {GOOD: "✔", BAD: "✖", WARN: "⚠"}
_OUTCOME_TONE = {Outcome.promoted: GOOD, Outcome.expired: WARN, Outcome.aborted: WARN}
_VERDICT_TONE = {GateResult.passed: GOOD, GateResult.failed: BAD, GateResult.inconclusive: WARN}


def stamp(at: datetime) -> str:
    """UTC to the millisecond, as render_timeline prints it."""
    return f"{utc(at):%Y-%m-%dT%H:%M:%S.%f}"[:-3] + "Z"


def _num(value: object) -> str:
    return f"{value:.6g}" if isinstance(value, float) else as_text(value)


def as_percent(ratio: float | None) -> str:
    return "—" if ratio is None else f"{ratio * 100:.2f}%"


def split_text(weights: Mapping[str, int]) -> str:
    return ", ".join(f"{slot} {weight}%" for slot, weight in sorted(weights.items()))


def outcome_label(result: DeploymentResult) -> tuple[str, str]:
    tone = _OUTCOME_TONE.get(result.outcome, BAD)
    return tone, f"{MARK[tone]} {result.outcome.value}"


def verdict_label(gate: Gate) -> tuple[str, str]:
    if gate.verdict is None:
        return WARN, f"{MARK[WARN]} unreadable verdict"
    tone = _VERDICT_TONE[gate.verdict.result]
    return tone, f"{MARK[tone]} {gate.verdict.result.value.upper()}"


def _check(check: DomainCheck | None) -> tuple[str, str]:
    if check is None:
        return WARN, f"{MARK[WARN]} unreadable"
    if check.passed:
        return GOOD, f"{MARK[GOOD]} passed"
    return (BAD, f"{MARK[BAD]} BLOCKED") if check.blocking else (WARN, "⚠ failed (advisory)")


def error_ratio(gate: Gate) -> float | None:
    return gate.verdict.evidence.get("error_ratio") if gate.verdict else None


def error_budget(gate: Gate) -> float | None:
    return gate.verdict.thresholds.get("max_error_ratio") if gate.verdict else None


def latency_p95(gate: Gate) -> float | None:
    if gate.verdict is None:
        return None
    evidence = gate.verdict.evidence
    return evidence.get("latency_p95_ms", evidence.get("p95_ms"))


def summary_rows(facts: Facts) -> list[tuple[str, str]]:
    r, s = facts.result, facts.result.status
    steps = " → ".join(f"{w}%" for w in s.steps) or "—"
    if s.steps and s.step_index is not None:
        steps += f" (reached step {s.step_index + 1} of {len(s.steps)})"
    approvers = [a.approver for a in s.approvals if a.decision == "approve"]
    approvals = f"{', '.join(approvers) or 'none'} ({len(approvers)} of {s.approvals_required})"
    rows = [
        ("Deployment id", s.deployment_id),
        ("App", s.app),
        ("Environment", s.environment),
        ("Version", s.version or "(not verified)"),
        *change_summary_rows(facts.change),
        ("Strategy", s.strategy.value),
        ("Steps", steps),
        ("Risk", f"{facts.risk.score} ({facts.risk.level.value})" if facts.risk else "—"),
        ("Approvals", approvals if s.approvals_required else "none required"),
        ("Outcome", outcome_label(r)[1]),
        ("Cause", r.cause or "—"),
        ("Started (UTC)", stamp(facts.start) if facts.start else "—"),
        ("Duration", f"{facts.duration:.3f} s"),
    ]
    for key, label in (("signer", "Release signer"), ("digest", "Artifact digest")):
        if facts.release.get(key):
            rows.append((label, as_text(facts.release[key])))
    # The trace the deployment ran in (W3C trace id, when the client started one): where its
    # spans are, in the tracing backend or $ZDP_HOME/traces.
    trace_id = next((e.data.get("trace_id") for e in r.timeline if e.kind == "started"), None)
    if trace_id:
        rows.append(("Trace id", as_text(trace_id)))
    return rows


def approval_event_lines(facts: Facts) -> list[str]:
    """What followed from the decisions (events, not decisions by people)."""
    lines = []
    for e in facts.approval_events:
        if e.kind == "approved":
            raw = e.data.get("approvers")
            who = ", ".join(as_text(a) for a in raw) if isinstance(raw, list) else e.message
            lines.append(f"{stamp(e.at)} — approvals complete: {who}")
        else:
            lines.append(f"{stamp(e.at)} — no approval required: {e.message}")
    return lines


VERIFICATION_HEADER = ["What", "Status", "Detail"]


def verification_rows(facts: Facts) -> list[tuple[str, str, str]]:
    """What the engine verified during the deployment, as recorded: the release signature,
    the Part 11 signatures on decisions, the refusals, the audit log's signed head this
    deployment keeps (its anchor), and the evidence seal. The report itself verifies nothing:
    `zdp audit verify` and `zdp evidence verify` re-check these offline."""
    r = facts.result
    release = facts.release
    if release.get("signer"):
        signed = (
            "verified",
            f"signed by {as_text(release['signer'])}; artifact {as_text(release.get('digest'))}",
        )
    else:
        signed = ("not verified", r.cause or "the release was not verified")
    signatures = facts.signed
    required = r.status.signature_required
    decisions = (
        "verified" if signatures else ("missing" if required else "not required"),
        f"{len(signatures)} Part 11 signature(s), each verified by the workflow when given"
        if signatures
        else ("Part 11 signatures are required here" if required else "no e-signature asked"),
    )
    refused = [e for e in r.timeline if e.kind == "decision_refused"]
    anchor = r.status.audit_anchor
    audit = (
        ("anchored", f"signed head over {anchor.size} entries ({anchor.head_hash[:16]}…), engine "
         f"key {anchor.key_fingerprint[:23]}…, {stamp(anchor.at)}; re-check: zdp audit verify")
        if anchor
        else ("no anchor", "this deployment recorded no signed head of the audit log")
    )  # fmt: skip
    sealed = next((e for e in r.timeline if e.kind == "evidence_sealed"), None)
    evidence = (
        ("sealed", f"{as_text(sealed.data.get('path'))}; manifest sha256 "
         f"{as_text(sealed.data.get('manifest_sha256'))[:16]}…; re-check: zdp evidence verify")
        if sealed
        else ("this bundle", "this report is part of the sealed evidence bundle")
    )  # fmt: skip
    return [
        ("Release signature", *signed),
        ("Decision signatures", *decisions),
        ("Refused decisions", f"{len(refused)} recorded", "; ".join(e.message for e in refused)),
        ("Audit log", *audit),
        ("Evidence", *evidence),
    ]


def policy_lines(policy: PolicyDecision) -> list[str]:
    gate = policy.gate
    if policy.gate_policy is not None:  # newer histories: slowness is judged against a baseline
        latency = (
            f"gate policy '{policy.gate_policy_name}': slowness judged against the baseline "
            f"(more than {policy.gate_policy.latency.max_slowdown_ms:g} ms and "
            f"{policy.gate_policy.latency.max_slowdown_ratio:g}x slower counts)"
        )
    else:
        latency = f"p95 under {gate.max_latency_ms:g} ms"
    return [
        f"Rationale: {policy.rationale or '—'}",
        f"Approvals required: {policy.approvals_required} "
        f"(allowed approvers: {', '.join(policy.allowed_approvers) or 'nobody'})",
        f"Steps: {' → '.join(f'{w}%' for w in policy.steps)}; "
        f"bake {policy.bake_seconds:g} s per step",
        f"Gate: error budget {as_percent(gate.max_error_ratio)}, "
        f"{latency}, at least {gate.min_samples} samples, "
        f"and {gate.min_failures} failures before a breach counts",
    ]


def gate_details(gate: Gate) -> list[str]:
    if gate.verdict is None:
        return []
    v = gate.verdict
    lines = [f"Reason: {v.reason}", f"Slot: {v.slot}; samples: {v.samples}"]
    lines += [f"Diagnosis: {v.diagnosis}"] if v.diagnosis else []
    lines += [f"Detail: {d}" for d in v.details]
    lines += [f"Breaker: {t}" for t in v.breaker_transitions]
    return lines


def factor_rows(risk: RiskAssessment) -> list[tuple[object, ...]]:
    return [(f.name, f"+{f.points}" if f.points >= 0 else f.points, f.detail) for f in risk.factors]


def number_rows(values: Mapping[str, float]) -> list[tuple[object, ...]]:
    return [(name, _num(value)) for name, value in values.items()]


def event_rows(events: list[TimelineEvent]) -> list[tuple[object, ...]]:
    return [(stamp(e.at), e.kind, e.message, e.actor or "") for e in events]


TIMELINE_HEADER = ["#", "Time (UTC)", "+s", "Phase", "Kind", "Message", "Actor"]


def timeline_rows(facts: Facts) -> list[tuple[object, ...]]:
    """Every event, whatever its kind: the forensic record is shown whole."""
    return [
        (n, stamp(e.at), f"{facts.seconds(e.at):.3f}", e.phase.value, e.kind, e.message, e.actor)
        for n, e in enumerate(facts.result.timeline, start=1)
    ]


def check_rows(facts: Facts, verdict: Callable[[str, str], object]) -> list[tuple[object, ...]]:
    return [
        (
            stamp(e.at),
            e.phase.value,
            c.name if c else e.kind,
            verdict(*_check(c)),
            c.detail if c else e.message,
        )
        for e, c in facts.checks
    ]


def phase_rows(facts: Facts) -> list[tuple[object, ...]]:
    return [
        (e.phase.value, stamp(e.at), f"{t:.3f}", "—" if d is None else f"{d:.3f}", e.message)
        for e, t, d in facts.phases
    ]
