"""The HTML report's chart, as inline SVG: the share of traffic on the new version and on what
served before, and below it, on its own scale, each gate's error ratio against the error budget.

Lines follow versions, not slots: a canary promotion (stable rebuilt on the new version takes
over from canary) keeps the new version at 100%, where per-slot lines would drop to 0% like a
rollback. Shape and dash say what colour says, so the chart reads in black and white; a table
below it holds the same numbers, per slot as well.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from zdp.forensics.facts import Facts, Traffic
from zdp.forensics.markup import badge, escape, html_table
from zdp.forensics.text import (
    BAD,
    GOOD,
    WARN,
    as_percent,
    error_budget,
    error_ratio,
    stamp,
    verdict_label,
)

# Phase entries marked on the chart's time axis.
CHART_PHASES = ("shift", "promote", "rollback", "paused")

# Two panels share the time axis: traffic on each version above, gate error ratios below, each
# with its own scale, so the error budget is never drawn over a traffic line.
_W = 760
_X0, _X1 = 72.0, 700.0
_PANEL_H, _GAP, _RATIO_H = 180.0, 34.0, 110.0
# The new version and what served before differ by dash pattern as well as colour, so the
# chart reads in black and white.
_NEW_STYLE, _OLD_STYLE = ("#1f5fa8", ""), ("#b45309", "9 4")
_TONE_COLOUR = {GOOD: "#15803d", BAD: "#b91c1c", WARN: "#a16207"}
_LABEL_CHARS = 24


def _ticks(maximum: float) -> list[float]:
    """Round steps from 0 to at least `maximum`, about five of them."""
    maximum = maximum if maximum > 0 else 1.0
    raw = maximum / 5
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw * (1 - 1e-9))
    return [round(i * step, 12) for i in range(math.ceil(maximum / step - 1e-9) + 1)]


def _step_points(
    changes: list[Traffic], share: Callable[[Traffic], int], end: float
) -> list[tuple[float, int]]:
    """A share of traffic as a step line: it holds until the next change, then jumps."""
    points: list[tuple[float, int]] = []
    for change in changes:
        if points:
            points.append((change.seconds, points[-1][1]))
        points.append((change.seconds, share(change)))
    if points:
        points.append((max(end, points[-1][0]), points[-1][1]))
    return [p for i, p in enumerate(points) if i == 0 or p != points[i - 1]]


def _short(text: str) -> str:
    return text if len(text) <= _LABEL_CHARS else text[: _LABEL_CHARS - 1] + "…"


def version_lines(facts: Facts) -> list[tuple[str, str, Callable[[Traffic], int]]]:
    """(key, label, share) of each line to draw: the new version, and what served before
    unless nothing did."""
    lines: list[tuple[str, str, Callable[[Traffic], int]]] = [
        ("new", f"new version {facts.new_version}", lambda t: t.new)
    ]
    if any(t.old for t in facts.traffic):
        previous = facts.change.previous_version
        label = f"previous version {previous}" if previous else "previous version"
        lines.append(("old", label, lambda t: t.old))
    return lines


def _marker(tone: str, cx: float, cy: float, label: str = "", role: str = "verdict") -> str:
    """Pass is a circle, fail a square, inconclusive a diamond: shape says what colour says."""
    attrs = f'class="{role} verdict-{tone}" fill="{_TONE_COLOUR[tone]}" stroke="#111"'
    title = f"<title>{escape(label)}</title>" if label else ""
    if tone == GOOD:
        return f'<circle {attrs} cx="{cx:.2f}" cy="{cy:.2f}" r="5">{title}</circle>'
    if tone == BAD:
        return (
            f'<rect {attrs} x="{cx - 5:.2f}" y="{cy - 5:.2f}" width="10" height="10">{title}</rect>'
        )
    diamond = (
        f"{cx:.2f},{cy - 6:.2f} {cx + 6:.2f},{cy:.2f} {cx:.2f},{cy + 6:.2f} {cx - 6:.2f},{cy:.2f}"
    )
    return f'<polygon {attrs} points="{diamond}">{title}</polygon>'


def svg_chart(facts: Facts) -> str:
    if not facts.traffic and not facts.gates:
        return "<p>No traffic was shifted and no health gate ran: there is nothing to chart.</p>"
    x_ticks = _ticks(facts.duration)
    ratios = [v for g in facts.gates if (v := error_ratio(g)) is not None]
    budgets = sorted({v for g in facts.gates if (v := error_budget(g)) is not None})
    # The budget sits at most half way up its panel: room to see a gate under and over it.
    r_ticks = _ticks(max([*ratios, *(2 * b for b in budgets)], default=0.0) or 0.01)
    lines = version_lines(facts)
    legend, legend_h = _legend([(label, style) for (_, label, _), style in _styled(lines)])
    y0 = legend_h + 26  # room for the phase names above the traffic panel
    y1 = y0 + _PANEL_H
    r0, r1 = y1 + _GAP, y1 + _GAP + _RATIO_H
    height = r1 + 52

    def x(t: float) -> float:
        return _X0 + (_X1 - _X0) * t / x_ticks[-1]

    def y(percent: float) -> float:
        return y1 - (y1 - y0) * percent / 100

    def y_ratio(ratio: float) -> float:
        return r1 - (r1 - r0) * ratio / r_ticks[-1]

    svg = [
        f'<figure>\n<svg class="chart" role="img" viewBox="0 0 {_W} {height:g}" '
        'aria-labelledby="chart-title chart-desc">',
        '<title id="chart-title">Share of traffic on the new version and on what served '
        "before, and each gate's error ratio against its budget, by seconds since the "
        "deployment started</title>",
        f'<desc id="chart-desc">{escape(_chart_description(facts))}</desc>',
        *legend,
    ]
    for p in (0, 25, 50, 75, 100):
        svg.append(
            f'<line class="grid" data-axis="weight" data-value="{p}" x1="{_X0}" y1="{y(p):.2f}" '
            f'x2="{_X1}" y2="{y(p):.2f}"/>'
            f'<text x="{_X0 - 6}" y="{y(p) + 4:.2f}" text-anchor="end">{p}%</text>'
        )
    for v in r_ticks:
        svg.append(
            f'<line class="grid" data-axis="error-ratio" data-value="{v:g}" x1="{_X0}" '
            f'y1="{y_ratio(v):.2f}" x2="{_X1}" y2="{y_ratio(v):.2f}"/>'
            f'<text x="{_X0 - 6}" y="{y_ratio(v) + 4:.2f}" text-anchor="end">{v * 100:g}%</text>'
        )
    for t in x_ticks:
        svg.append(
            f'<line class="axis" data-axis="time" data-value="{t:g}" x1="{x(t):.2f}" y1="{r1}" '
            f'x2="{x(t):.2f}" y2="{r1 + 5}"/>'
            f'<text x="{x(t):.2f}" y="{r1 + 18}" text-anchor="middle">{t:g}</text>'
        )
    svg += [
        f'<path class="axis" d="M{_X0},{y0} V{y1} H{_X1} V{y0}"/>',
        f'<path class="axis" d="M{_X0},{r0} V{r1} H{_X1} V{r0}"/>',
        f'<text transform="translate(16,{(y0 + y1) / 2}) rotate(-90)" text-anchor="middle">'
        "share of traffic (%)</text>",
        f'<text transform="translate(16,{(r0 + r1) / 2}) rotate(-90)" text-anchor="middle">'
        "error ratio (%)</text>",
        f'<text x="{(_X0 + _X1) / 2}" y="{r1 + 40}" text-anchor="middle">'
        "seconds since the deployment started</text>",
    ]
    for event, t, _ in facts.phases:
        if event.phase.value in CHART_PHASES:
            svg.append(
                f'<line class="phase" data-phase="{escape(event.phase.value)}" x1="{x(t):.2f}" '
                f'y1="{y0}" x2="{x(t):.2f}" y2="{r1}"/>'
                f'<text x="{x(t):.2f}" y="{y0 - 6}" text-anchor="middle">'
                f"{escape(event.phase.value)}</text>"
            )
    for budget in budgets:
        at = y_ratio(budget)
        svg.append(
            f'<line class="budget" data-value="{budget:g}" x1="{_X0}" y1="{at:.2f}" x2="{_X1}" '
            f'y2="{at:.2f}"/>'
            f'<text class="budget-label" x="{_X1 - 4}" y="{at - 4:.2f}" text-anchor="end">'
            f"error budget {budget * 100:g}%</text>"
        )
    for (key, label, share), (colour, dash) in _styled(lines):
        steps = _step_points(facts.traffic, share, facts.duration)
        points = " ".join(f"{x(t):.2f},{y(w):.2f}" for t, w in steps)
        svg.append(
            f'<polyline class="weight" data-version="{key}" points="{points}" fill="none" '
            f'stroke="{colour}" stroke-width="2.5" stroke-dasharray="{dash or "none"}">'
            f"<title>{escape(label)}: {escape(' → '.join(f'{w}%' for _, w in steps))}</title>"
            "</polyline>"
        )
    measured = [(g, v) for g in facts.gates if (v := error_ratio(g)) is not None]
    if len(measured) > 1:
        points = " ".join(f"{x(g.seconds):.2f},{y_ratio(v):.2f}" for g, v in measured)
        svg.append(f'<polyline class="error-ratio" points="{points}" fill="none"/>')
    for g, v in measured:
        label = (
            f"{g.label}: {verdict_label(g)[1]}, error ratio {as_percent(v)} at {g.seconds:.3f} s"
        )
        svg.append(_marker(verdict_label(g)[0], x(g.seconds), y_ratio(v), label))
    svg.append("</svg>")
    caption = (
        "Above: the share of traffic on the new version and on what served before (left "
        "scale), whichever slot serves it: a canary promotion, where stable is rebuilt on the "
        "new version and takes over from canary, keeps the new version at 100%. Below, on its "
        "own scale: each gate verdict's error ratio (circle pass, square fail, diamond "
        "inconclusive) and the error budget (dashed). The table below holds the same numbers, "
        "per slot."
    )
    svg.append(f"<figcaption>{escape(caption)}</figcaption>\n</figure>")
    return "\n".join(svg)


def _styled(
    lines: list[tuple[str, str, Callable[[Traffic], int]]],
) -> list[tuple[tuple[str, str, Callable[[Traffic], int]], tuple[str, str]]]:
    return [(line, _NEW_STYLE if line[0] == "new" else _OLD_STYLE) for line in lines]


def _legend(lines: list[tuple[str, tuple[str, str]]]) -> tuple[list[str], float]:
    """One sample of each mark with its name, each drawn at its own origin, wrapped in rows;
    and the height the rows take."""
    sample = '<line x1="0" y1="0" x2="24" y2="0" {}/>'
    items = [
        (
            sample.format(f'stroke="{c}" stroke-width="2.5" stroke-dasharray="{d or "none"}"'),
            _short(name),
        )
        for name, (c, d) in lines
    ]
    items += [(sample.format('class="error-ratio"'), "error ratio")]
    items += [(sample.format('class="budget"'), "error budget")]
    items += [
        (_marker(tone, 12, 0, role="sample"), name)
        for tone, name in ((GOOD, "pass"), (BAD, "fail"), (WARN, "inconclusive"))
    ]
    out, cx, cy = [], _X0, 20.0
    for shape, name in items:
        width = 44 + 6.5 * len(name)
        if cx + width > _W - 8:
            cx, cy = _X0, cy + 20
        out.append(
            f'<g class="legend" transform="translate({cx:.1f},{cy:.1f})">{shape}'
            f'<text x="30" y="4">{escape(name)}</text></g>'
        )
        cx += width
    return out, cy + 8


def _chart_description(facts: Facts) -> str:
    lines = [
        f"{label} share "
        + ", ".join(
            f"{w}% at {t:.3f} s" for t, w in _step_points(facts.traffic, share, facts.duration)
        )
        for _, label, share in version_lines(facts)
        if facts.traffic
    ]
    gates = [
        f"{g.label} {verdict_label(g)[1]} at {g.seconds:.3f} s, "
        f"error ratio {as_percent(error_ratio(g))} (budget {as_percent(error_budget(g))})"
        for g in facts.gates
    ]
    return "; ".join([*lines, *gates]) + "."


def chart_table(facts: Facts) -> str:
    slots = facts.slots
    rows: list[tuple[int, tuple[object, ...]]] = [
        (
            t.index,
            (
                f"{t.seconds:.3f}",
                stamp(t.at),
                t.what,
                *(f"{t.weights.get(s, 0)}%" for s in slots),
                f"{t.new}%",
                f"{t.old}%",
                "",
                "",
                "",
            ),
        )
        for t in facts.traffic
    ]
    for g in facts.gates:
        cells = (
            f"{g.seconds:.3f}",
            stamp(g.event.at),
            f"gate: {g.label}",
            *("" for _ in slots),
            "",
            "",
        )
        gate = (badge(*verdict_label(g)), as_percent(error_ratio(g)), as_percent(error_budget(g)))
        rows.append((g.index, (*cells, *gate)))
    header = [
        "+s",
        "Time (UTC)",
        "Event",
        *(f"{s} weight" for s in slots),
        "New version",
        "Previous version",
        "Gate",
        "Error ratio",
        "Budget",
    ]
    previous = facts.change.previous_version or "not recorded"
    caption = (
        f"The chart's numbers: weight per slot, and the share on the new version "
        f"({facts.new_version}) and on what served before ({previous})"
    )
    ordered = [cells for _, cells in sorted(rows, key=lambda row: row[0])]
    return html_table(header, ordered, caption=caption, cls="chart-data")
