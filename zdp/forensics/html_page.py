"""The HTML report: one self-contained page, with inline style and chart, that prints as it reads.

The page fetches nothing. Its style and its chart (inline SVG, with a table of the same numbers)
are part of the page.
"""

from __future__ import annotations

from zdp.forensics.change import change_record_note, change_record_rows
from zdp.forensics.chart import chart_table, svg_chart
from zdp.forensics.facts import Facts, read_facts
from zdp.forensics.markup import Html, badge, escape, html_table
from zdp.forensics.text import (
    BAD,
    GOOD,
    MARK,
    TIMELINE_HEADER,
    VERIFICATION_HEADER,
    WARN,
    approval_event_lines,
    check_rows,
    event_rows,
    factor_rows,
    gate_details,
    number_rows,
    outcome_label,
    phase_rows,
    policy_lines,
    stamp,
    summary_rows,
    timeline_rows,
    verdict_label,
    verification_rows,
)
from zdp.models import DeploymentResult


def render_html(result: DeploymentResult) -> str:
    """One self-contained page: inline style and SVG chart, no external references."""
    return _html(read_facts(result))


def _section(ident: str, title: str, *body: str) -> str:
    return f'<section id="{ident}">\n<h2>{escape(title)}</h2>\n' + "\n".join(body) + "\n</section>"


def _list(lines: list[str]) -> str:
    return "<ul>" + "".join(f"<li>{escape(line)}</li>" for line in lines) + "</ul>" if lines else ""


def _html(facts: Facts) -> str:
    r, s = facts.result, facts.result.status
    tone, outcome = outcome_label(r)
    title = (
        f"Deployment report: {s.app} to {s.environment}, "
        f"version {s.version or '(not verified)'} — {r.outcome.value}"
    )
    summary = [(k, badge(tone, v) if k == "Outcome" else v) for k, v in summary_rows(facts)]
    cause = f' <span class="cause">{escape(r.cause)}</span>' if r.cause else ""
    record = change_record_rows(facts.change)
    sections = [
        _section(
            "summary",
            "Summary",
            html_table(["Field", "Value"], summary, cls="summary"),
            html_table(["Field", "Value"], record, "Change record", cls="change-record")
            if record
            else f'<p class="change-record">{escape(change_record_note(facts.change))}</p>',
        ),
        _section(
            "verification",
            "Verification",
            html_table(VERIFICATION_HEADER, verification_rows(facts), cls="verification"),
        ),
        _section(
            "phases",
            "Phase timeline",
            html_table(
                ["Phase", "Entered (UTC)", "+s", "Duration (s)", "Message"], phase_rows(facts)
            ),
        ),
        _section("traffic", "Traffic and health gates", svg_chart(facts), chart_table(facts)),
        _section("gates", "Gate evidence", _html_gates(facts)),
        _section("approvals", "Approvals", _html_approvals(facts)),
        _section("risk", "Risk", _html_risk(facts)),
        _section(
            "checks",
            "Domain checks",
            html_table(
                ["Time (UTC)", "Phase", "Check", "Result", "Detail"],
                check_rows(facts, badge),
            )
            if facts.checks
            else "<p>No domain checks were recorded.</p>",
        ),
    ]
    if facts.compensations or any(e.phase.value == "rollback" for e in r.timeline):
        steps = "".join(
            f"<li>{escape(stamp(e.at))} — <strong>{escape(e.data.get('kind', e.kind))}</strong>: "
            f"{escape(e.message)}</li>"
            for e in facts.compensations
        )
        sections.append(
            _section(
                "rollback",
                "Rollback and compensation",
                f"<p>Cause: {escape(r.cause or '—')}</p>",
                f"<ol>{steps}</ol>" if steps else "<p>No compensation was recorded.</p>",
            )
        )
    if facts.interventions:
        sections.append(
            _section(
                "interventions",
                "Interventions and alerts",
                html_table(
                    ["Time (UTC)", "Kind", "Message", "Actor"], event_rows(facts.interventions)
                ),
            )
        )
    sections.append(
        _section(
            "timeline",
            "Timeline",
            html_table(
                TIMELINE_HEADER,
                timeline_rows(facts),
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
        f"<title>{escape(title)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        "<main>",
        f"<header>\n<h1>{escape(title)}</h1>\n<p>{badge(tone, outcome)}{cause}</p>\n</header>",
        *sections,
        f"<footer><p>{escape(footer)}</p></footer>",
        "</main>",
        "</body>",
        "</html>",
    ]
    return "\n".join(page) + "\n"


def _html_gates(facts: Facts) -> str:
    if not facts.gates:
        return "<p>No health gate ran.</p>"
    articles = []
    for number, gate in enumerate(facts.gates, start=1):
        head = f"<h3>Gate {number}: {escape(gate.label)} {badge(*verdict_label(gate))}</h3>"
        body = _list(gate_details(gate)) or f"<p>{escape(gate.event.message)}</p>"
        if gate.verdict is not None:
            body += (
                '<div class="pair">'
                + html_table(["Evidence", "Value"], number_rows(gate.verdict.evidence))
                + html_table(["Threshold", "Value"], number_rows(gate.verdict.thresholds))
                + "</div>"
            )
        articles.append(f'<article class="gate">\n{head}\n{body}\n</article>')
    return "\n".join(articles)


def _html_approvals(facts: Facts) -> str:
    required = f"<p>Approvals required: {facts.result.status.approvals_required}.</p>"
    required += _list(approval_event_lines(facts))
    if not facts.approvals:
        return required
    rows = []
    for a in facts.approvals:
        tone = (
            BAD
            if a.action.endswith("(refused)")
            else {"approve": GOOD, "reject": BAD}.get(a.action, "")
        )
        mark = f"{MARK[tone]} " if tone else ""
        signed = Html("—")
        if a.signature is not None:
            key = f'<br><span class="mono">key {escape(a.key)}</span>' if a.key else ""
            signed = Html(f'<span class="signature">{escape(a.signature)}</span>{key}')
        decision = badge(tone, mark + a.action) if tone else a.action
        who: str | Html = a.who or "—"
        if a.identity:
            who = Html(f'{escape(a.who or "—")}<br><span class="mono">{escape(a.identity)}</span>')
        rows.append((stamp(a.event.at), who, decision, a.reason, signed))
    header = ["Time (UTC)", "Who", "Decision", "Reason", "Signature (21 CFR 11.50)"]
    return required + html_table(header, rows)


def _html_risk(facts: Facts) -> str:
    if facts.risk is None:
        return "<p>Risk was not assessed.</p>"
    level = facts.risk.level.value
    tone = {"low": GOOD, "medium": WARN}.get(level, BAD)
    parts = [
        f"<p>Score {badge(tone, f'{facts.risk.score} ({level})')}</p>",
        html_table(["Factor", "Points", "Detail"], factor_rows(facts.risk), cls="factors"),
    ]
    if facts.policy is not None:
        parts.append("<h3>Policy decision</h3>" + _list(policy_lines(facts.policy)))
    return "\n".join(parts)


_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #111;
  background: #fff; margin: 0; }
main { max-width: 1200px; margin: 0 auto; padding: 24px; }
h1 { font-size: 1.45em; margin: 0 0 .3em; }
h2 { font-size: 1.2em; border-bottom: 2px solid #ccc; padding-bottom: 2px; margin-top: 1.6em; }
h3 { font-size: 1.05em; margin: 1.2em 0 .4em; }
table { border-collapse: collapse; width: 100%; margin: .5em 0 1em; font-size: .92em; }
th, td { border: 1px solid #bbb; padding: 3px 6px; text-align: left; vertical-align: top;
  overflow-wrap: break-word; }
th { background: #f1f1f1; white-space: nowrap; }
td.nowrap { white-space: nowrap; }
td.free, .mono, .signature { overflow-wrap: anywhere; }
td.free { min-width: 9em; }
table.summary td:first-child, table.change-record td:first-child { width: 12em; }
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
  /* On paper a header may wrap between words, and cells are tighter: every table fits A4. */
  th { white-space: normal; }
  th, td { padding: 2px 4px; }
  td.free { min-width: 5em; }
  table.chart-data { font-size: .85em; }
  * { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
  figure, tr, article.gate { break-inside: avoid; }
  h2, h3 { break-after: avoid; }
  thead { display: table-header-group; }
}
"""
