"""The Markdown report, for tickets and change records: every cell escaped, no raw HTML."""

from __future__ import annotations

from collections.abc import Iterable

from zdp.forensics.change import change_record_note, change_record_rows
from zdp.forensics.facts import Approval, Facts, as_text, read_facts
from zdp.forensics.text import (
    TIMELINE_HEADER,
    VERIFICATION_HEADER,
    approval_event_lines,
    as_percent,
    check_rows,
    error_budget,
    error_ratio,
    event_rows,
    factor_rows,
    gate_details,
    latency_p95,
    number_rows,
    outcome_label,
    phase_rows,
    policy_lines,
    split_text,
    stamp,
    summary_rows,
    timeline_rows,
    verdict_label,
    verification_rows,
)
from zdp.models import DeploymentResult


def render_markdown(result: DeploymentResult) -> str:
    """A report for tickets and change records: summary, risk, approvals, gates, timeline."""
    return _markdown(read_facts(result))


def _md(value: object) -> str:
    """A table cell: pipes and backslashes escaped, no raw HTML, one line."""
    text = as_text(value).replace("\\", "\\\\").replace("|", "\\|")
    text = text.replace("&", "&amp;").replace("<", "&lt;")
    return "<br>".join(text.splitlines())


def _md_table(header: list[str], rows: Iterable[Iterable[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_md(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _markdown(facts: Facts) -> str:
    r, s = facts.result, facts.result.status
    out = [
        f"# Deployment report: {_md(s.app)} to {_md(s.environment)}, "
        f"version {_md(s.version or '(not verified)')} — {_md(outcome_label(r)[1])}",
        f"**Outcome:** {_md(r.outcome.value)}"
        + (f" — **Cause:** {_md(r.cause)}" if r.cause else ""),
        "## Summary",
        _md_table(["Field", "Value"], summary_rows(facts)),
        "### Change record",
        _md_table(["Field", "Value"], change_record_rows(facts.change))
        if change_record_rows(facts.change)
        else _md(change_record_note(facts.change)),
        "## Verification",
        _md_table(VERIFICATION_HEADER, verification_rows(facts)),
        "## Risk factors",
    ]
    if facts.risk:
        out.append(f"Score {facts.risk.score} ({_md(facts.risk.level.value)}).")
        out.append(_md_table(["Factor", "Points", "Detail"], factor_rows(facts.risk)))
    else:
        out.append("Risk was not assessed.")
    if facts.policy:
        out.append("\n".join(f"- {_md(line)}" for line in policy_lines(facts.policy)))
    out.append("## Domain checks")
    out.append(
        _md_table(
            ["Time (UTC)", "Phase", "Check", "Result", "Detail"],
            check_rows(facts, lambda tone, text: text),
        )
        if facts.checks
        else "No domain checks were recorded."
    )
    out.append("## Approvals")
    out.append(f"Approvals required: {s.approvals_required}.")
    if approval_event_lines(facts):
        out.append("\n".join(f"- {_md(line)}" for line in approval_event_lines(facts)))
    if facts.approvals:
        out.append(
            _md_table(
                ["Time (UTC)", "Who", "Decision", "Reason", "Signature (21 CFR 11.50)"],
                [
                    (
                        stamp(a.event.at),
                        (a.who or "—") + (f" ({a.identity})" if a.identity else ""),
                        a.action,
                        a.reason,
                        _signed_text(a),
                    )
                    for a in facts.approvals
                ],
            )
        )
    out.append("## Traffic and health gates")
    out.append(_md_traffic(facts) if facts.traffic or facts.gates else "No traffic was shifted.")
    for number, gate in enumerate(facts.gates, start=1):
        out.append(f"### Gate {number}: {_md(gate.label)} — {_md(verdict_label(gate)[1])}")
        out.append("\n".join(f"- {_md(line)}" for line in gate_details(gate)) or gate.event.message)
        if gate.verdict is not None:
            out.append(_md_table(["Evidence", "Value"], number_rows(gate.verdict.evidence)))
            out.append(_md_table(["Threshold", "Value"], number_rows(gate.verdict.thresholds)))
    if facts.compensations or any(e.phase.value == "rollback" for e in r.timeline):
        out.append("## Rollback and compensation")
        out.append(f"Cause: {_md(r.cause or '—')}")
        out.append(
            "\n".join(
                f"{n}. {stamp(e.at)} — {_md(e.data.get('kind', e.kind))}: {_md(e.message)}"
                for n, e in enumerate(facts.compensations, start=1)
            )
            or "No compensation was recorded."
        )
    if facts.interventions:
        out.append("## Interventions and alerts")
        out.append(
            _md_table(["Time (UTC)", "Kind", "Message", "Actor"], event_rows(facts.interventions))
        )
    out.append("## Phases")
    out.append(
        _md_table(["Phase", "Entered (UTC)", "+s", "Duration (s)", "Message"], phase_rows(facts))
    )
    out.append("## Timeline")
    out.append(
        _md_table(
            TIMELINE_HEADER,
            timeline_rows(facts),
        )
    )
    return "\n\n".join(out) + "\n"


def _md_traffic(facts: Facts) -> str:
    rows: list[tuple[int, tuple[object, ...]]] = [
        (
            t.index,
            (
                f"{t.seconds:.3f}",
                stamp(t.at),
                t.what,
                split_text(t.weights),
                f"{t.new}% / {t.old}%",
                *("" for _ in range(4)),
            ),
        )
        for t in facts.traffic
    ]
    for g in facts.gates:
        p95 = latency_p95(g)
        budget = f" (budget {as_percent(error_budget(g))})" if error_budget(g) is not None else ""
        cells = (
            f"{g.seconds:.3f}",
            stamp(g.event.at),
            f"gate: {g.label}",
            "",
            "",
            verdict_label(g)[1],
            as_percent(error_ratio(g)) + budget,
            "—" if p95 is None else f"{p95:g}",
            g.verdict.samples if g.verdict else "—",
        )
        rows.append((g.index, cells))
    header = [
        "+s",
        "Time (UTC)",
        "Event",
        "Weights",
        "New / previous version",
        "Gate",
        "Error ratio",
        "p95 (ms)",
        "Samples",
    ]
    return _md_table(header, [cells for _, cells in sorted(rows, key=lambda row: row[0])])


def _signed_text(approval: Approval) -> str:
    if approval.signature is None:
        return "—"
    return approval.signature + (f" (key {approval.key})" if approval.key else "")
