"""Forensic reports of a deployment: its result as JSON, Markdown or one self-contained HTML page.

The timeline is the forensic record; these renderers only arrange it. Each is a pure function of
a DeploymentResult (no clock, no I/O), so an auditor can regenerate a report from the same result
and diff it byte for byte. Every piece of text from the result is escaped for its format: a
message can never become markup. The HTML page fetches nothing: its style and its chart (inline
SVG, with a table of the same numbers) are part of the page, and it prints as it reads.
"""

from __future__ import annotations

import html
import itertools
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import ValidationError

from zdp.models import (
    ApprovalRecord,
    DeploymentResult,
    DomainCheck,
    GateResult,
    GateVerdict,
    Outcome,
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
    }
)
INTERVENTION_KINDS = frozenset(
    {"paused", "resumed", "abort_requested", "alert", "breaker", "standby"}
)
# Phase entries marked on the chart's time axis.
CHART_PHASES = ("shift", "promote", "rollback", "paused")

_GOOD, _BAD, _WARN = "good", "bad", "warn"
_MARK = {_GOOD: "✔", _BAD: "✖", _WARN: "⚠"}
_OUTCOME_TONE = {Outcome.promoted: _GOOD, Outcome.expired: _WARN, Outcome.aborted: _WARN}
_VERDICT_TONE = {GateResult.passed: _GOOD, GateResult.failed: _BAD, GateResult.inconclusive: _WARN}
_ACTIONS = {
    "decision_refused": "refused",
    "approved": "approvals complete",
    "approval_skipped": "no approval required",
    "emergency_override": "emergency override",
    "promote_requested": "promoted early",
}


_M = TypeVar("_M", RiskAssessment, PolicyDecision, DomainCheck, GateVerdict)


# --------------------------------------------------------------------------- the public API


def render_json(result: DeploymentResult) -> str:
    """The result itself, indented: `DeploymentResult.model_validate_json` reads it back."""
    return result.model_dump_json(indent=2) + "\n"


def render_markdown(result: DeploymentResult) -> str:
    """A report for tickets and change records: summary, risk, approvals, gates, timeline."""
    return _markdown(_read(result))


def render_html(result: DeploymentResult) -> str:
    """One self-contained page: inline style and SVG chart, no external references."""
    return _html(_read(result))


RENDERERS: dict[str, Callable[[DeploymentResult], str]] = {
    "json": render_json,
    "md": render_markdown,
    "html": render_html,
}


# --------------------------------------------------------------------------- timeline facts


@dataclass(frozen=True)
class _Approval:
    event: TimelineEvent
    who: str
    action: str
    reason: str
    signature: str | None  # the §11.50 manifestation, as one line
    key: str | None


@dataclass(frozen=True)
class _Traffic:
    index: int  # position in the timeline; -1 for the split in force before the first change
    seconds: float
    at: datetime
    what: str
    weights: dict[str, int]


@dataclass(frozen=True)
class _Gate:
    index: int
    seconds: float
    event: TimelineEvent
    label: str
    verdict: GateVerdict | None  # None when the event's data is not a verdict this code reads


@dataclass(frozen=True)
class _Facts:
    result: DeploymentResult
    start: datetime | None
    duration: float
    risk: RiskAssessment | None
    policy: PolicyDecision | None
    release: Mapping[str, Any]
    checks: list[tuple[TimelineEvent, DomainCheck | None]]
    approvals: list[_Approval]
    traffic: list[_Traffic]
    gates: list[_Gate]
    phases: list[tuple[TimelineEvent, float, float | None]]  # entry, +s, duration
    compensations: list[TimelineEvent]
    interventions: list[TimelineEvent]

    @property
    def slots(self) -> list[str]:
        return sorted({slot for change in self.traffic for slot in change.weights})

    def seconds(self, at: datetime) -> float:
        return (_utc(at) - self.start).total_seconds() if self.start else 0.0


def _read(result: DeploymentResult) -> _Facts:
    events = result.timeline
    start = min((_utc(e.at) for e in events), default=None)
    end = max((_utc(e.at) for e in events), default=None)

    def since(at: datetime) -> float:
        return (_utc(at) - start).total_seconds() if start else 0.0

    risk, policy, release = result.status.risk, None, {}
    checks: list[tuple[TimelineEvent, DomainCheck | None]] = []
    traffic: list[_Traffic] = []
    gates: list[_Gate] = []
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
                    _Traffic(-1, 0.0, start or event.at, "before the first change", previous)
                )
            what = "traffic change" if event.kind == "weights" else "rollback: traffic restored"
            traffic.append(
                _Traffic(index, since(event.at), event.at, what, _weights(data.get("weights")))
            )
        elif event.kind == "gate_verdict":
            verdict = _parsed(GateVerdict, data)
            label = event.message
            if verdict is not None:
                label = event.message.partition(f": {verdict.result.value} — ")[0]
            gates.append(_Gate(index, since(event.at), event, label, verdict))
    entries = [e for e in events if e.kind == "phase"]
    phases = [
        (e, since(e.at), (_utc(n.at) - _utc(e.at)).total_seconds() if n else None)
        for e, n in zip(entries, [*entries[1:], None], strict=True)
    ]
    return _Facts(
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


def _approval(event: TimelineEvent, records: list[ApprovalRecord]) -> _Approval:
    data = event.data
    who = event.actor or ""
    if event.kind == "approved":
        approvers = data.get("approvers")
        who = ", ".join(str(a) for a in approvers) if isinstance(approvers, list) else who
    action: str
    if event.kind == "decision":
        # The record says approve or reject; the message says it too, for results without one.
        matches = [
            r.decision for r in records if r.approver == who and _utc(r.at) == _utc(event.at)
        ]
        action = matches[0] if matches else "reject" if "rejected" in event.message else "approve"
    else:
        action = _ACTIONS.get(event.kind, event.kind)
    reason = _text(data.get("reason")) if data.get("reason") else event.message
    signature = _signature(data)
    return _Approval(
        event, who, action, reason, signature[0] if signature else None, signature and signature[1]
    )


def _signature(data: Mapping[str, Any]) -> tuple[str, str | None] | None:
    """The 21 CFR 11.50 manifestation of a signed event: printed name, meaning, date and time."""
    sig = data.get("signature")
    if not isinstance(sig, Mapping):
        return None
    name = _text(sig.get("printed_name")).strip() or "(no printed name)"
    meaning = _text(sig.get("meaning")).strip() or "(no meaning stated)"
    line = f"Signed by {name} — {meaning} — {_signed_at(sig.get('signed_at'))}"
    return line, _text(sig.get("key_fingerprint")) or None


def _signed_at(value: object) -> str:
    if isinstance(value, datetime):
        at = value
    else:
        try:
            at = datetime.fromisoformat(_text(value))
        except ValueError:
            return f"{_text(value) or 'no date'} (unreadable date and time)"
    return f"{_utc(at):%Y-%m-%d %H:%M:%S} UTC"


# --------------------------------------------------------------------------- shared text


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _stamp(at: datetime) -> str:
    """UTC to the millisecond, as render_timeline prints it."""
    return f"{_utc(at):%Y-%m-%dT%H:%M:%S.%f}"[:-3] + "Z"


def _text(value: object) -> str:
    return "" if value is None else str(value)


def _num(value: object) -> str:
    return f"{value:.6g}" if isinstance(value, float) else _text(value)


def _pct(ratio: float | None) -> str:
    return "—" if ratio is None else f"{ratio * 100:.2f}%"


def _split(weights: Mapping[str, int]) -> str:
    return ", ".join(f"{slot} {weight}%" for slot, weight in sorted(weights.items()))


def _outcome(result: DeploymentResult) -> tuple[str, str]:
    tone = _OUTCOME_TONE.get(result.outcome, _BAD)
    return tone, f"{_MARK[tone]} {result.outcome.value}"


def _verdict(gate: _Gate) -> tuple[str, str]:
    if gate.verdict is None:
        return _WARN, f"{_MARK[_WARN]} unreadable verdict"
    tone = _VERDICT_TONE[gate.verdict.result]
    return tone, f"{_MARK[tone]} {gate.verdict.result.value.upper()}"


def _check(check: DomainCheck | None) -> tuple[str, str]:
    if check is None:
        return _WARN, f"{_MARK[_WARN]} unreadable"
    if check.passed:
        return _GOOD, f"{_MARK[_GOOD]} passed"
    return (_BAD, f"{_MARK[_BAD]} BLOCKED") if check.blocking else (_WARN, "⚠ failed (advisory)")


def _error_ratio(gate: _Gate) -> float | None:
    return gate.verdict.evidence.get("error_ratio") if gate.verdict else None


def _budget(gate: _Gate) -> float | None:
    return gate.verdict.thresholds.get("max_error_ratio") if gate.verdict else None


def _p95(gate: _Gate) -> float | None:
    if gate.verdict is None:
        return None
    evidence = gate.verdict.evidence
    return evidence.get("latency_p95_ms", evidence.get("p95_ms"))


def _summary(facts: _Facts) -> list[tuple[str, str]]:
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
        ("Strategy", s.strategy.value),
        ("Steps", steps),
        ("Risk", f"{facts.risk.score} ({facts.risk.level.value})" if facts.risk else "—"),
        ("Approvals", approvals if s.approvals_required else "none required"),
        ("Outcome", _outcome(r)[1]),
        ("Cause", r.cause or "—"),
        ("Started (UTC)", _stamp(facts.start) if facts.start else "—"),
        ("Duration", f"{facts.duration:.3f} s"),
    ]
    for key, label in (("signer", "Release signer"), ("digest", "Artifact digest")):
        if facts.release.get(key):
            rows.append((label, _text(facts.release[key])))
    return rows


def _policy_lines(policy: PolicyDecision) -> list[str]:
    gate = policy.gate
    return [
        f"Rationale: {policy.rationale or '—'}",
        f"Approvals required: {policy.approvals_required} "
        f"(allowed approvers: {', '.join(policy.allowed_approvers) or 'nobody'})",
        f"Steps: {' → '.join(f'{w}%' for w in policy.steps)}; "
        f"bake {policy.bake_seconds:g} s per step",
        f"Gate: error budget {_pct(gate.max_error_ratio)}, p95 under {gate.max_latency_ms:g} ms, "
        f"at least {gate.min_samples} samples, and {gate.min_failures} failures before a breach "
        "counts",
    ]


def _gate_details(gate: _Gate) -> list[str]:
    if gate.verdict is None:
        return []
    v = gate.verdict
    lines = [f"Reason: {v.reason}", f"Slot: {v.slot}; samples: {v.samples}"]
    lines += [f"Diagnosis: {v.diagnosis}"] if v.diagnosis else []
    lines += [f"Detail: {d}" for d in v.details]
    lines += [f"Breaker: {t}" for t in v.breaker_transitions]
    return lines


# --------------------------------------------------------------------------- Markdown


def _md(value: object) -> str:
    """A table cell: pipes and backslashes escaped, no raw HTML, one line."""
    text = _text(value).replace("\\", "\\\\").replace("|", "\\|")
    text = text.replace("&", "&amp;").replace("<", "&lt;")
    return "<br>".join(text.splitlines())


def _md_table(header: list[str], rows: Iterable[Iterable[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_md(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _markdown(facts: _Facts) -> str:
    r, s = facts.result, facts.result.status
    out = [
        f"# Deployment report: {_md(s.app)} to {_md(s.environment)}, "
        f"version {_md(s.version or '(not verified)')} — {_md(_outcome(r)[1])}",
        f"**Outcome:** {_md(r.outcome.value)}"
        + (f" — **Cause:** {_md(r.cause)}" if r.cause else ""),
        "## Summary",
        _md_table(["Field", "Value"], _summary(facts)),
        "## Risk factors",
    ]
    if facts.risk:
        out.append(f"Score {facts.risk.score} ({_md(facts.risk.level.value)}).")
        out.append(_md_table(["Factor", "Points", "Detail"], _factor_rows(facts.risk)))
    else:
        out.append("Risk was not assessed.")
    if facts.policy:
        out.append("\n".join(f"- {_md(line)}" for line in _policy_lines(facts.policy)))
    out.append("## Domain checks")
    out.append(
        _md_table(
            ["Time (UTC)", "Phase", "Check", "Result", "Detail"],
            _check_rows(facts, lambda tone, text: text),
        )
        if facts.checks
        else "No domain checks were recorded."
    )
    out.append("## Approvals")
    out.append(f"Approvals required: {s.approvals_required}.")
    if facts.approvals:
        out.append(
            _md_table(
                ["Time (UTC)", "Who", "Decision", "Reason", "Signature (21 CFR 11.50)"],
                [
                    (_stamp(a.event.at), a.who or "—", a.action, a.reason, _signed_text(a))
                    for a in facts.approvals
                ],
            )
        )
    out.append("## Traffic and health gates")
    out.append(_md_traffic(facts) if facts.traffic or facts.gates else "No traffic was shifted.")
    for number, gate in enumerate(facts.gates, start=1):
        out.append(f"### Gate {number}: {_md(gate.label)} — {_md(_verdict(gate)[1])}")
        out.append(
            "\n".join(f"- {_md(line)}" for line in _gate_details(gate)) or gate.event.message
        )
        if gate.verdict is not None:
            out.append(_md_table(["Evidence", "Value"], _numbers(gate.verdict.evidence)))
            out.append(_md_table(["Threshold", "Value"], _numbers(gate.verdict.thresholds)))
    if facts.compensations or any(e.phase.value == "rollback" for e in r.timeline):
        out.append("## Rollback and compensation")
        out.append(f"Cause: {_md(r.cause or '—')}")
        out.append(
            "\n".join(
                f"{n}. {_stamp(e.at)} — {_md(e.data.get('kind', e.kind))}: {_md(e.message)}"
                for n, e in enumerate(facts.compensations, start=1)
            )
            or "No compensation was recorded."
        )
    if facts.interventions:
        out.append("## Interventions and alerts")
        out.append(
            _md_table(["Time (UTC)", "Kind", "Message", "Actor"], _event_rows(facts.interventions))
        )
    out.append("## Phases")
    out.append(
        _md_table(["Phase", "Entered (UTC)", "+s", "Duration (s)", "Message"], _phase_rows(facts))
    )
    out.append("## Timeline")
    out.append(
        _md_table(
            _TIMELINE_HEADER,
            _timeline_rows(facts),
        )
    )
    return "\n\n".join(out) + "\n"


def _md_traffic(facts: _Facts) -> str:
    rows: list[tuple[int, tuple[object, ...]]] = [
        (t.index, (f"{t.seconds:.3f}", _stamp(t.at), t.what, _split(t.weights), "", "", "", ""))
        for t in facts.traffic
    ]
    for g in facts.gates:
        p95 = _p95(g)
        budget = f" (budget {_pct(_budget(g))})" if _budget(g) is not None else ""
        cells = (
            f"{g.seconds:.3f}",
            _stamp(g.event.at),
            f"gate: {g.label}",
            "",
            _verdict(g)[1],
            _pct(_error_ratio(g)) + budget,
            "—" if p95 is None else f"{p95:g}",
            g.verdict.samples if g.verdict else "—",
        )
        rows.append((g.index, cells))
    header = ["+s", "Time (UTC)", "Event", "Weights", "Gate", "Error ratio", "p95 (ms)", "Samples"]
    return _md_table(header, [cells for _, cells in sorted(rows, key=lambda row: row[0])])


def _factor_rows(risk: RiskAssessment) -> list[tuple[object, ...]]:
    return [(f.name, f"+{f.points}" if f.points >= 0 else f.points, f.detail) for f in risk.factors]


def _numbers(values: Mapping[str, float]) -> list[tuple[object, ...]]:
    return [(name, _num(value)) for name, value in values.items()]


def _event_rows(events: list[TimelineEvent]) -> list[tuple[object, ...]]:
    return [(_stamp(e.at), e.kind, e.message, e.actor or "") for e in events]


_TIMELINE_HEADER = ["#", "Time (UTC)", "+s", "Phase", "Kind", "Message", "Actor"]


def _timeline_rows(facts: _Facts) -> list[tuple[object, ...]]:
    """Every event, whatever its kind: the forensic record is shown whole."""
    return [
        (n, _stamp(e.at), f"{facts.seconds(e.at):.3f}", e.phase.value, e.kind, e.message, e.actor)
        for n, e in enumerate(facts.result.timeline, start=1)
    ]


def _check_rows(facts: _Facts, verdict: Callable[[str, str], object]) -> list[tuple[object, ...]]:
    return [
        (
            _stamp(e.at),
            e.phase.value,
            c.name if c else e.kind,
            verdict(*_check(c)),
            c.detail if c else e.message,
        )
        for e, c in facts.checks
    ]


def _phase_rows(facts: _Facts) -> list[tuple[object, ...]]:
    return [
        (e.phase.value, _stamp(e.at), f"{t:.3f}", "—" if d is None else f"{d:.3f}", e.message)
        for e, t, d in facts.phases
    ]


def _signed_text(approval: _Approval) -> str:
    if approval.signature is None:
        return "—"
    return approval.signature + (f" (key {approval.key})" if approval.key else "")


# --------------------------------------------------------------------------- HTML


class _Html(str):
    """Markup built here; any other string is escaped where it is inserted."""


def _e(value: object) -> str:
    return value if isinstance(value, _Html) else html.escape(_text(value), quote=True)


def _badge(tone: str, text: str) -> _Html:
    return _Html(f'<span class="badge {tone}">{_e(text)}</span>')


def _html_table(
    header: list[str], rows: Iterable[Iterable[object]], caption: str = "", cls: str = ""
) -> _Html:
    head = "".join(f'<th scope="col">{_e(h)}</th>' for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>\n" for row in rows)
    return _Html(
        (f'<table class="{cls}">' if cls else "<table>")
        + (f"<caption>{_e(caption)}</caption>" if caption else "")
        + f"<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody></table>"
    )


def _section(ident: str, title: str, *body: str) -> str:
    return f'<section id="{ident}">\n<h2>{_e(title)}</h2>\n' + "\n".join(body) + "\n</section>"


def _list(lines: list[str]) -> str:
    return "<ul>" + "".join(f"<li>{_e(line)}</li>" for line in lines) + "</ul>" if lines else ""


def _html(facts: _Facts) -> str:
    r, s = facts.result, facts.result.status
    tone, outcome = _outcome(r)
    title = (
        f"Deployment report: {s.app} to {s.environment}, "
        f"version {s.version or '(not verified)'} — {r.outcome.value}"
    )
    summary = [(k, _badge(tone, v) if k == "Outcome" else v) for k, v in _summary(facts)]
    cause = f' <span class="cause">{_e(r.cause)}</span>' if r.cause else ""
    sections = [
        _section("summary", "Summary", _html_table(["Field", "Value"], summary, cls="summary")),
        _section(
            "phases",
            "Phase timeline",
            _html_table(
                ["Phase", "Entered (UTC)", "+s", "Duration (s)", "Message"], _phase_rows(facts)
            ),
        ),
        _section("traffic", "Traffic and health gates", _chart(facts), _chart_table(facts)),
        _section("gates", "Gate evidence", _html_gates(facts)),
        _section("approvals", "Approvals", _html_approvals(facts)),
        _section("risk", "Risk", _html_risk(facts)),
        _section(
            "checks",
            "Domain checks",
            _html_table(
                ["Time (UTC)", "Phase", "Check", "Result", "Detail"],
                _check_rows(facts, _badge),
            )
            if facts.checks
            else "<p>No domain checks were recorded.</p>",
        ),
    ]
    if facts.compensations or any(e.phase.value == "rollback" for e in r.timeline):
        steps = "".join(
            f"<li>{_e(_stamp(e.at))} — <strong>{_e(e.data.get('kind', e.kind))}</strong>: "
            f"{_e(e.message)}</li>"
            for e in facts.compensations
        )
        sections.append(
            _section(
                "rollback",
                "Rollback and compensation",
                f"<p>Cause: {_e(r.cause or '—')}</p>",
                f"<ol>{steps}</ol>" if steps else "<p>No compensation was recorded.</p>",
            )
        )
    if facts.interventions:
        sections.append(
            _section(
                "interventions",
                "Interventions and alerts",
                _html_table(
                    ["Time (UTC)", "Kind", "Message", "Actor"], _event_rows(facts.interventions)
                ),
            )
        )
    sections.append(
        _section(
            "timeline",
            "Timeline",
            _html_table(
                _TIMELINE_HEADER,
                _timeline_rows(facts),
                cls="timeline",
            ),
        )
    )
    footer = (
        f"Generated from the deployment's result alone ({len(r.timeline)} timeline events). "
        "The report carries no generation time: the same result always gives the same page. "
        "Signatures are shown as recorded in the timeline; this report does not verify them."
    )
    page = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        "<main>",
        f"<header>\n<h1>{_e(title)}</h1>\n<p>{_badge(tone, outcome)}{cause}</p>\n</header>",
        *sections,
        f"<footer><p>{_e(footer)}</p></footer>",
        "</main>",
        "</body>",
        "</html>",
    ]
    return "\n".join(page) + "\n"


def _html_gates(facts: _Facts) -> str:
    if not facts.gates:
        return "<p>No health gate ran.</p>"
    articles = []
    for number, gate in enumerate(facts.gates, start=1):
        head = f"<h3>Gate {number}: {_e(gate.label)} {_badge(*_verdict(gate))}</h3>"
        body = _list(_gate_details(gate)) or f"<p>{_e(gate.event.message)}</p>"
        if gate.verdict is not None:
            body += (
                '<div class="pair">'
                + _html_table(["Evidence", "Value"], _numbers(gate.verdict.evidence))
                + _html_table(["Threshold", "Value"], _numbers(gate.verdict.thresholds))
                + "</div>"
            )
        articles.append(f'<article class="gate">\n{head}\n{body}\n</article>')
    return "\n".join(articles)


def _html_approvals(facts: _Facts) -> str:
    required = f"<p>Approvals required: {facts.result.status.approvals_required}.</p>"
    if not facts.approvals:
        return required
    tones = {"approve": _GOOD, "reject": _BAD, "refused": _BAD, "emergency override": _WARN}
    rows = []
    for a in facts.approvals:
        tone = tones.get(a.action, "")
        mark = f"{_MARK[tone]} " if tone else ""
        signed = _Html("—")
        if a.signature is not None:
            key = f'<br><span class="mono">key {_e(a.key)}</span>' if a.key else ""
            signed = _Html(f'<span class="signature">{_e(a.signature)}</span>{key}')
        decision = _badge(tone, mark + a.action) if tone else a.action
        rows.append((_stamp(a.event.at), a.who or "—", decision, a.reason, signed))
    header = ["Time (UTC)", "Who", "Decision", "Reason", "Signature (21 CFR 11.50)"]
    return required + _html_table(header, rows)


def _html_risk(facts: _Facts) -> str:
    if facts.risk is None:
        return "<p>Risk was not assessed.</p>"
    level = facts.risk.level.value
    tone = {"low": _GOOD, "medium": _WARN}.get(level, _BAD)
    parts = [
        f"<p>Score {_badge(tone, f'{facts.risk.score} ({level})')}</p>",
        _html_table(["Factor", "Points", "Detail"], _factor_rows(facts.risk), cls="factors"),
    ]
    if facts.policy is not None:
        parts.append("<h3>Policy decision</h3>" + _list(_policy_lines(facts.policy)))
    return "\n".join(parts)


# --------------------------------------------------------------------------- the chart

_W, _H = 760, 360
_X0, _X1, _Y0, _Y1 = 64.0, 680.0, 64.0, 296.0
# Each slot differs by dash pattern as well as colour, so the chart reads in black and white.
_SLOT_STYLES = (("#1f5fa8", ""), ("#b45309", "9 4"), ("#6b21a8", "2 3"), ("#047857", "12 3 3 3"))
_TONE_COLOUR = {_GOOD: "#15803d", _BAD: "#b91c1c", _WARN: "#a16207"}


def _ticks(maximum: float) -> list[float]:
    """Round steps from 0 to at least `maximum`, about five of them."""
    maximum = maximum if maximum > 0 else 1.0
    raw = maximum / 5
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw * (1 - 1e-9))
    return [round(i * step, 12) for i in range(math.ceil(maximum / step - 1e-9) + 1)]


def _step_points(changes: list[_Traffic], slot: str, end: float) -> list[tuple[float, int]]:
    """A slot's weight as a step line: it holds until the next change, then jumps."""
    points: list[tuple[float, int]] = []
    for change in changes:
        if points:
            points.append((change.seconds, points[-1][1]))
        points.append((change.seconds, change.weights.get(slot, 0)))
    if points:
        points.append((max(end, points[-1][0]), points[-1][1]))
    return [p for i, p in enumerate(points) if i == 0 or p != points[i - 1]]


def _marker(tone: str, cx: float, cy: float, label: str = "", role: str = "verdict") -> str:
    """Pass is a circle, fail a square, inconclusive a diamond: shape says what colour says."""
    attrs = f'class="{role} verdict-{tone}" fill="{_TONE_COLOUR[tone]}" stroke="#111"'
    title = f"<title>{_e(label)}</title>" if label else ""
    if tone == _GOOD:
        return f'<circle {attrs} cx="{cx:.2f}" cy="{cy:.2f}" r="5">{title}</circle>'
    if tone == _BAD:
        return (
            f'<rect {attrs} x="{cx - 5:.2f}" y="{cy - 5:.2f}" width="10" height="10">{title}</rect>'
        )
    diamond = (
        f"{cx:.2f},{cy - 6:.2f} {cx + 6:.2f},{cy:.2f} {cx:.2f},{cy + 6:.2f} {cx - 6:.2f},{cy:.2f}"
    )
    return f'<polygon {attrs} points="{diamond}">{title}</polygon>'


def _chart(facts: _Facts) -> str:
    if not facts.traffic and not facts.gates:
        return "<p>No traffic was shifted and no health gate ran: there is nothing to chart.</p>"
    x_ticks = _ticks(facts.duration)
    ratios = [v for g in facts.gates if (v := _error_ratio(g)) is not None]
    budgets = sorted({v for g in facts.gates if (v := _budget(g)) is not None})
    r_ticks = _ticks(max([*ratios, *budgets], default=0.0) or 0.01)

    def x(t: float) -> float:
        return _X0 + (_X1 - _X0) * t / x_ticks[-1]

    def y(percent: float) -> float:
        return _Y1 - (_Y1 - _Y0) * percent / 100

    def y_ratio(ratio: float) -> float:
        return _Y1 - (_Y1 - _Y0) * ratio / r_ticks[-1]

    svg = [
        f'<figure>\n<svg class="chart" role="img" viewBox="0 0 {_W} {_H}" '
        'aria-labelledby="chart-title chart-desc">',
        '<title id="chart-title">Traffic weight per slot and gate error ratio, '
        "by seconds since the deployment started</title>",
        f'<desc id="chart-desc">{_e(_chart_description(facts))}</desc>',
    ]
    for p in (0, 25, 50, 75, 100):
        svg.append(
            f'<line class="grid" data-axis="weight" data-value="{p}" x1="{_X0}" y1="{y(p):.2f}" '
            f'x2="{_X1}" y2="{y(p):.2f}"/>'
            f'<text x="{_X0 - 6}" y="{y(p) + 4:.2f}" text-anchor="end">{p}%</text>'
        )
    for t in x_ticks:
        svg.append(
            f'<line class="axis" data-axis="time" data-value="{t:g}" x1="{x(t):.2f}" y1="{_Y1}" '
            f'x2="{x(t):.2f}" y2="{_Y1 + 5}"/>'
            f'<text x="{x(t):.2f}" y="{_Y1 + 18}" text-anchor="middle">{t:g}</text>'
        )
    for v in r_ticks:
        svg.append(
            f'<line class="axis" data-axis="error-ratio" data-value="{v:g}" x1="{_X1}" '
            f'y1="{y_ratio(v):.2f}" x2="{_X1 + 5}" y2="{y_ratio(v):.2f}"/>'
            f'<text x="{_X1 + 8}" y="{y_ratio(v) + 4:.2f}">{v * 100:g}%</text>'
        )
    mid = (_Y0 + _Y1) / 2
    svg += [
        f'<path class="axis" d="M{_X0},{_Y0} V{_Y1} H{_X1} V{_Y0}"/>',
        f'<text transform="translate(16,{mid}) rotate(-90)" text-anchor="middle">'
        "traffic weight (%)</text>",
        f'<text transform="translate({_W - 14},{mid}) rotate(90)" text-anchor="middle">'
        "gate error ratio (%)</text>",
        f'<text x="{(_X0 + _X1) / 2}" y="{_Y1 + 40}" text-anchor="middle">'
        "seconds since the deployment started</text>",
    ]
    for budget in budgets:
        # The label sits under its line, unless that would put it on the time axis.
        at = y_ratio(budget)
        below = at + 13 if at + 13 < _Y1 - 4 else at - 4
        svg.append(
            f'<line class="budget" x1="{_X0}" y1="{at:.2f}" x2="{_X1}" y2="{at:.2f}"/>'
            f'<text x="{_X1 - 4}" y="{below:.2f}" text-anchor="end">'
            f"error budget {budget * 100:g}%</text>"
        )
    for event, t, _ in facts.phases:
        if event.phase.value in CHART_PHASES:
            svg.append(
                f'<line class="phase" data-phase="{_e(event.phase.value)}" x1="{x(t):.2f}" '
                f'y1="{_Y0}" x2="{x(t):.2f}" y2="{_Y1}"/>'
                f'<text x="{x(t):.2f}" y="{_Y0 - 6}" text-anchor="middle">'
                f"{_e(event.phase.value)}</text>"
            )
    for slot, (colour, dash) in zip(facts.slots, itertools.cycle(_SLOT_STYLES), strict=False):
        steps = _step_points(facts.traffic, slot, facts.duration)
        points = " ".join(f"{x(t):.2f},{y(w):.2f}" for t, w in steps)
        svg.append(
            f'<polyline class="weight" data-slot="{_e(slot)}" points="{points}" fill="none" '
            f'stroke="{colour}" stroke-width="2.5" stroke-dasharray="{dash or "none"}">'
            f"<title>{_e(slot)} weight: {_e(' → '.join(f'{w}%' for _, w in steps))}</title>"
            "</polyline>"
        )
    measured = [(g, v) for g in facts.gates if (v := _error_ratio(g)) is not None]
    if len(measured) > 1:
        points = " ".join(f"{x(g.seconds):.2f},{y_ratio(v):.2f}" for g, v in measured)
        svg.append(f'<polyline class="error-ratio" points="{points}" fill="none"/>')
    for g, v in measured:
        label = f"{g.label}: {_verdict(g)[1]}, error ratio {_pct(v)} at {g.seconds:.3f} s"
        svg.append(_marker(_verdict(g)[0], x(g.seconds), y_ratio(v), label))
    svg += [*_legend(facts.slots), "</svg>"]
    caption = (
        "Step lines: each slot's share of traffic (left axis). Markers: each gate verdict's "
        "error ratio (right axis; circle pass, square fail, diamond inconclusive). The table "
        "below holds the same numbers."
    )
    svg.append(f"<figcaption>{_e(caption)}</figcaption>\n</figure>")
    return "\n".join(svg)


def _legend(slots: list[str]) -> list[str]:
    """One sample of each mark with its name, each drawn at its own origin, wrapped in rows."""
    line = '<line x1="0" y1="0" x2="24" y2="0" {}/>'
    items = [
        (line.format(f'stroke="{c}" stroke-width="2.5" stroke-dasharray="{d or "none"}"'), name)
        for name, (c, d) in zip(
            (f"{slot} weight" for slot in slots), itertools.cycle(_SLOT_STYLES), strict=False
        )
    ]
    items += [(line.format('class="error-ratio"'), "error ratio")]
    items += [(line.format('class="budget"'), "error budget")]
    items += [
        (_marker(tone, 12, 0, role="sample"), name)
        for tone, name in ((_GOOD, "pass"), (_BAD, "fail"), (_WARN, "inconclusive"))
    ]
    out, cx, cy = [], _X0, 20.0
    for shape, name in items:
        width = 44 + 6.5 * len(name)
        if cx + width > _W - 8:
            cx, cy = _X0, cy + 20
        out.append(
            f'<g class="legend" transform="translate({cx:.1f},{cy:.1f})">{shape}'
            f'<text x="30" y="4">{_e(name)}</text></g>'
        )
        cx += width
    return out


def _chart_description(facts: _Facts) -> str:
    slots = [
        f"{slot} weight "
        + ", ".join(
            f"{w}% at {t:.3f} s" for t, w in _step_points(facts.traffic, slot, facts.duration)
        )
        for slot in facts.slots
    ]
    gates = [
        f"{g.label} {_verdict(g)[1]} at {g.seconds:.3f} s, error ratio {_pct(_error_ratio(g))}"
        for g in facts.gates
    ]
    return "; ".join([*slots, *gates]) + "."


def _chart_table(facts: _Facts) -> str:
    slots = facts.slots
    rows: list[tuple[int, tuple[object, ...]]] = [
        (
            t.index,
            (
                f"{t.seconds:.3f}",
                _stamp(t.at),
                t.what,
                *(f"{t.weights.get(s, 0)}%" for s in slots),
                "",
                "",
                "",
            ),
        )
        for t in facts.traffic
    ]
    for g in facts.gates:
        cells = (f"{g.seconds:.3f}", _stamp(g.event.at), f"gate: {g.label}", *("" for _ in slots))
        rows.append(
            (g.index, (*cells, _badge(*_verdict(g)), _pct(_error_ratio(g)), _pct(_budget(g))))
        )
    header = [
        "+s",
        "Time (UTC)",
        "Event",
        *(f"{s} weight" for s in slots),
        "Gate",
        "Error ratio",
        "Budget",
    ]
    ordered = [cells for _, cells in sorted(rows, key=lambda row: row[0])]
    return _html_table(header, ordered, caption="The chart's numbers", cls="chart-data")


_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #111;
  background: #fff; margin: 0; }
main { max-width: 1100px; margin: 0 auto; padding: 24px; }
h1 { font-size: 1.45em; margin: 0 0 .3em; }
h2 { font-size: 1.2em; border-bottom: 2px solid #ccc; padding-bottom: 2px; margin-top: 1.6em; }
h3 { font-size: 1.05em; margin: 1.2em 0 .4em; }
table { border-collapse: collapse; width: 100%; margin: .5em 0 1em; font-size: .92em; }
th, td { border: 1px solid #bbb; padding: 3px 6px; text-align: left; vertical-align: top;
  overflow-wrap: anywhere; }
th { background: #f1f1f1; }
caption { text-align: left; font-weight: 600; padding: 4px 0; }
.badge { display: inline-block; padding: 0 6px; border: 1px solid; border-radius: 3px;
  font-weight: 600; white-space: nowrap; }
.good { color: #14532d; background: #dcfce7; border-color: #15803d; }
.bad { color: #7f1d1d; background: #fee2e2; border-color: #b91c1c; }
.warn { color: #713f12; background: #fef9c3; border-color: #a16207; }
.cause { margin-left: .5em; }
.signature { font-style: italic; }
.mono { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; font-size: .9em; }
.pair { display: flex; gap: 16px; align-items: flex-start; }
.pair table { width: auto; flex: 1; }
figure { margin: 0; }
figcaption { font-size: .9em; color: #333; }
.chart { width: 100%; max-width: 760px; height: auto; }
.chart text { font-size: 11px; fill: #222; }
.chart .grid { stroke: #ddd; }
.chart .axis { stroke: #444; fill: none; }
.chart .phase { stroke: #777; stroke-dasharray: 1 3; }
.chart .budget { stroke: #b91c1c; stroke-dasharray: 6 3; }
.chart .error-ratio { stroke: #333; stroke-dasharray: 1 2; stroke-width: 1.5; fill: none; }
@media print {
  body { font-size: 10pt; }
  main { max-width: none; padding: 0; }
  * { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
  figure, tr, article.gate { break-inside: avoid; }
  h2, h3 { break-after: avoid; }
  thead { display: table-header-group; }
}
"""
