"""The HTML report's chart: traffic weight per slot and gate error ratios, as inline SVG.

Shape and dash say what colour says, so the chart reads in black and white; a table below it
holds the same numbers.
"""

from __future__ import annotations

import itertools
import math

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

_W, _H = 760, 360
_X0, _X1, _Y0, _Y1 = 64.0, 680.0, 64.0, 296.0
# Each slot differs by dash pattern as well as colour, so the chart reads in black and white.
_SLOT_STYLES = (("#1f5fa8", ""), ("#b45309", "9 4"), ("#6b21a8", "2 3"), ("#047857", "12 3 3 3"))
_TONE_COLOUR = {GOOD: "#15803d", BAD: "#b91c1c", WARN: "#a16207"}


def _ticks(maximum: float) -> list[float]:
    """Round steps from 0 to at least `maximum`, about five of them."""
    maximum = maximum if maximum > 0 else 1.0
    raw = maximum / 5
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw * (1 - 1e-9))
    return [round(i * step, 12) for i in range(math.ceil(maximum / step - 1e-9) + 1)]


def _step_points(changes: list[Traffic], slot: str, end: float) -> list[tuple[float, int]]:
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
        f'<desc id="chart-desc">{escape(_chart_description(facts))}</desc>',
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
                f'<line class="phase" data-phase="{escape(event.phase.value)}" x1="{x(t):.2f}" '
                f'y1="{_Y0}" x2="{x(t):.2f}" y2="{_Y1}"/>'
                f'<text x="{x(t):.2f}" y="{_Y0 - 6}" text-anchor="middle">'
                f"{escape(event.phase.value)}</text>"
            )
    for slot, (colour, dash) in zip(facts.slots, itertools.cycle(_SLOT_STYLES), strict=False):
        steps = _step_points(facts.traffic, slot, facts.duration)
        points = " ".join(f"{x(t):.2f},{y(w):.2f}" for t, w in steps)
        svg.append(
            f'<polyline class="weight" data-slot="{escape(slot)}" points="{points}" fill="none" '
            f'stroke="{colour}" stroke-width="2.5" stroke-dasharray="{dash or "none"}">'
            f"<title>{escape(slot)} weight: {escape(' → '.join(f'{w}%' for _, w in steps))}</title>"
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
    svg += [*_legend(facts.slots), "</svg>"]
    caption = (
        "Step lines: each slot's share of traffic (left axis). Markers: each gate verdict's "
        "error ratio (right axis; circle pass, square fail, diamond inconclusive). The table "
        "below holds the same numbers."
    )
    svg.append(f"<figcaption>{escape(caption)}</figcaption>\n</figure>")
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
    return out


def _chart_description(facts: Facts) -> str:
    slots = [
        f"{slot} weight "
        + ", ".join(
            f"{w}% at {t:.3f} s" for t, w in _step_points(facts.traffic, slot, facts.duration)
        )
        for slot in facts.slots
    ]
    gates = [
        f"{g.label} {verdict_label(g)[1]} at {g.seconds:.3f} s, "
        f"error ratio {as_percent(error_ratio(g))}"
        for g in facts.gates
    ]
    return "; ".join([*slots, *gates]) + "."


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
                "",
                "",
                "",
            ),
        )
        for t in facts.traffic
    ]
    for g in facts.gates:
        cells = (f"{g.seconds:.3f}", stamp(g.event.at), f"gate: {g.label}", *("" for _ in slots))
        gate = (badge(*verdict_label(g)), as_percent(error_ratio(g)), as_percent(error_budget(g)))
        rows.append((g.index, (*cells, *gate)))
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
    return html_table(header, ordered, caption="The chart's numbers", cls="chart-data")
