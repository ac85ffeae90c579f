"""Forensic reports: what each format shows, a self-contained and safe HTML page, determinism."""

from __future__ import annotations

import html
import itertools
import re
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from tests.recorded import recorded
from zdp.forensics import RENDERERS, render_html, render_json, render_markdown
from zdp.forensics.facts import read_facts
from zdp.models import DeploymentResult, Outcome, Phase, TimelineEvent

DATA = Path(__file__).parent / "data"
SAMPLES = ("promoted", "rolled_back")
HOSTILE = "<script>alert(1)</script>"
VOID = {"meta", "br", "hr", "img", "input", "link", "col", "wbr", "area", "base", "source"}
_VERDICT_BADGES = {
    "pass": '<span class="badge good">✔ PASS</span>',
    "fail": '<span class="badge bad">✖ FAIL</span>',
}
MAIN_TAGS = ("html", "head", "body", "main", "header", "svg", "style", "footer")


def load(name: str) -> DeploymentResult:
    return DeploymentResult.model_validate_json((DATA / f"deployment_{name}.json").read_text())


@pytest.fixture(params=SAMPLES)
def sample(request: pytest.FixtureRequest) -> DeploymentResult:
    return load(request.param)


def with_events(result: DeploymentResult, *extra: TimelineEvent, **fields: Any) -> DeploymentResult:
    """The result with events appended (validated again, as a real result would be)."""
    data = result.model_dump()
    data["timeline"] = [*data["timeline"], *(e.model_dump() for e in extra)]
    return DeploymentResult.model_validate({**data, **fields})


def event_after(result: DeploymentResult, kind: str, message: str, **fields: Any) -> TimelineEvent:
    at = result.timeline[-1].at + timedelta(milliseconds=5)
    return TimelineEvent(
        at=at, phase=fields.pop("phase", Phase.done), kind=kind, message=message, **fields
    )


class Page(HTMLParser):
    """Every element with its attributes, and every tag that was closed out of order."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.opened: dict[str, int] = {}
        self.errors: list[str] = []
        self.stack: list[str] = []
        self.feed(text)
        self.close()
        self.errors += [f"<{tag}> never closed" for tag in self.stack]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}))
        self.opened[tag] = self.opened.get(tag, 0) + 1
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1] if self.stack else 'nothing'}>")
            return
        self.stack.pop()

    def find(self, tag: str, **attrs: str) -> list[dict[str, str]]:
        return [
            a for t, a in self.elements if t == tag and all(a.get(k) == v for k, v in attrs.items())
        ]


def timeline_weights(result: DeploymentResult, slot: str) -> list[int]:
    """A slot's weight at each change, read straight from the timeline's events."""
    values: list[int] = []
    for event in result.timeline:
        if event.kind == "weights" or (event.kind == "compensated" and "weights" in event.data):
            if not values and event.data.get("previous"):
                values.append(event.data["previous"].get(slot, 0))
            values.append(event.data["weights"].get(slot, 0))
    return values


def section(md: str, title: str) -> str:
    """One `## title` section of a Markdown report, up to the next one."""
    return md.split(f"\n## {title}\n")[1].split("\n## ")[0]


def distinct(values: list[Any]) -> list[Any]:
    return [v for i, v in enumerate(values) if i == 0 or v != values[i - 1]]


def axis(page: Page, name: str, coordinate: str) -> tuple[float, float, float, float]:
    """(value, pixel) of an axis' first and last tick: enough to read the chart like a person."""
    ticks = sorted(
        (float(a["data-value"]), float(a[coordinate]))
        for a in page.find("line", **{"data-axis": name})
    )
    return (*ticks[0], *ticks[-1])


def chart_series(page: Page, version: str) -> list[tuple[float, float]]:
    """The step line of the new version ("new") or of what served before ("old"), as
    (seconds since start, share of traffic %), read back through the axes."""
    (line,) = page.find("polyline", **{"data-version": version})
    v0, y0, v1, y1 = axis(page, "weight", "y1")
    t0, x0, t1, x1 = axis(page, "time", "x1")
    points = [tuple(map(float, p.split(","))) for p in line["points"].split()]
    return [
        (t0 + (x - x0) * (t1 - t0) / (x1 - x0), v0 + (y - y0) * (v1 - v0) / (y1 - y0))
        for x, y in points
    ]


# --------------------------------------------------------------------------- JSON and determinism


def test_json_round_trips_to_the_same_result(sample: DeploymentResult) -> None:
    assert DeploymentResult.model_validate_json(render_json(sample)) == sample


@pytest.mark.parametrize("fmt", sorted(RENDERERS))
def test_rendering_twice_gives_identical_output(sample: DeploymentResult, fmt: str) -> None:
    render = RENDERERS[fmt]
    assert render(sample) == render(sample.model_copy(deep=True)) == render(sample)


# --------------------------------------------------------------------------- Markdown


def test_markdown_shows_outcome_risk_factors_and_every_gate_verdict(
    sample: DeploymentResult,
) -> None:
    md = render_markdown(sample)
    title = md.splitlines()[0]
    assert title.startswith("# Deployment report: webshop to ")
    assert sample.outcome.value in title and (sample.status.version or "") in title
    assert sample.status.risk is not None
    for factor in sample.status.risk.factors:
        assert f"| {factor.name} | +{factor.points} | {factor.detail} |" in md
    gates = [e for e in sample.timeline if e.kind == "gate_verdict"]
    assert gates
    for number, event in enumerate(gates, start=1):
        label = event.message.partition(f": {event.data['result']} — ")[0]
        assert f"### Gate {number}: {label} — " in md
        assert event.data["result"].upper() in md.split(f"### Gate {number}: ")[1].splitlines()[0]
        gate = md.split(f"### Gate {number}: ")[1].split("\n### ")[0].split("\n## ")[0]
        assert f"Reason: {event.data['reason']}" in gate
        for key in (*event.data["evidence"], *event.data["thresholds"]):
            assert f"\n| {key} | " in gate


def test_markdown_of_a_rollback_lists_cause_and_compensation_steps_in_order() -> None:
    result = load("rolled_back")
    md = render_markdown(result)
    rollback = section(md, "Rollback and compensation")
    assert result.cause and f"Cause: {result.cause}" in rollback
    steps = [line for line in rollback.splitlines() if re.match(r"^\d+\. ", line)]
    assert steps == [
        "1. 2026-11-29T08:35:27.856Z — traffic: traffic restored: canary=0% stable=100%",
        "2. 2026-11-29T08:35:27.870Z — retire: version 2.0.0 retired from slot canary",
    ]
    assert "## Rollback and compensation" not in render_markdown(load("promoted"))


def test_markdown_timeline_has_every_event_in_utc_to_the_millisecond(
    sample: DeploymentResult,
) -> None:
    timeline = render_markdown(sample).split("## Timeline")[1]
    rows = [line for line in timeline.splitlines() if re.match(r"^\| \d+ \|", line)]
    assert len(rows) == len(sample.timeline)
    for row, event in zip(rows, sample.timeline, strict=True):
        stamp = f"{event.at:%Y-%m-%dT%H:%M:%S.%f}"[:-3] + "Z"
        assert f"| {stamp} |" in row and f"| {event.phase.value} | {event.kind} |" in row


def test_markdown_escapes_table_pipes_and_raw_html() -> None:
    base = load("promoted")
    result = with_events(base, event_after(base, "note", f"a | b {HOSTILE}", actor="ops|eve"))
    md = render_markdown(result)
    (row,) = [line for line in md.splitlines() if "| note |" in line]
    assert "a \\| b &lt;script>alert(1)&lt;/script>" in row and "ops\\|eve" in row
    assert len(re.findall(r"(?<!\\)\|", row)) == 8  # seven cells
    assert "<script" not in md


def test_unknown_event_kinds_are_shown_not_dropped() -> None:
    base = load("rolled_back")
    result = with_events(base, event_after(base, "quantum_flux", "a kind this report never saw"))
    for text in (render_markdown(result), render_html(result)):
        assert "quantum_flux" in text and "a kind this report never saw" in text


# --------------------------------------------------------------------------- HTML


def test_html_parses_with_balanced_main_tags(sample: DeploymentResult) -> None:
    page = Page(render_html(sample))
    assert page.errors == []
    for tag in MAIN_TAGS:
        assert page.opened.get(tag) == 1, tag
    assert render_html(sample).startswith("<!DOCTYPE html>")


def test_html_fetches_nothing(sample: DeploymentResult) -> None:
    text = render_html(sample)
    page = Page(text)
    assert not page.find("script") and not page.find("link")
    assert not any(page.find(tag) for tag in ("img", "iframe", "object", "embed", "image", "use"))
    for _, attrs in page.elements:
        for name in ("src", "href", "xlink:href", "action", "srcset"):
            value = attrs.get(name, "")
            assert "http://" not in value and "https://" not in value and "//" not in value
    style = text.split("<style>")[1].split("</style>")[0]
    assert "url(" not in style and "@import" not in style and "@font-face" not in style


def test_html_chart_has_one_line_per_version(sample: DeploymentResult) -> None:
    page = Page(render_html(sample))
    (svg,) = page.find("svg")
    assert svg["role"] == "img" and svg["aria-labelledby"] == "chart-title chart-desc"
    assert page.find("title", id="chart-title") and page.find("desc", id="chart-desc")
    versions = {a["data-version"] for a in page.find("polyline") if "data-version" in a}
    assert versions == {"new", "old"}
    assert len(page.find("polyline", **{"class": "weight"})) == 2


# The share of traffic on the new version and on what served before, at each change: the
# recorded canary weights until the promotion, when stable (rebuilt on the new version) takes
# over; a rollback returns the traffic to what served before.
SHARES = {
    "promoted": ([0, 1, 5, 25, 100], [100, 99, 95, 75, 0]),
    "rolled_back": ([0, 1, 5, 25, 0], [100, 99, 95, 75, 100]),
}


@pytest.mark.parametrize("name", SAMPLES)
def test_chart_lines_follow_the_weights_in_the_timeline(name: str) -> None:
    result = load(name)
    page = Page(render_html(result))
    new, old = chart_series(page, "new"), chart_series(page, "old")
    assert distinct([round(w) for _, w in new]) == SHARES[name][0]
    assert distinct([round(w) for _, w in old]) == SHARES[name][1]
    start = result.timeline[0].at
    changes = [
        round((e.at - start).total_seconds(), 3)
        for e in result.timeline
        if e.kind == "weights" or (e.kind == "compensated" and "weights" in e.data)
    ]
    for series in (new, old):
        times = [t for t, _ in series]
        assert times == sorted(times)
        # The line steps only where the timeline records a traffic change.
        jumps = [t for (_, before), (t, w) in itertools.pairwise(series) if w != before]
        assert jumps and all(any(abs(j - c) <= 0.002 for c in changes) for j in jumps)


def test_chart_shows_the_new_version_reaching_25_then_0_at_the_rollback() -> None:
    result = load("rolled_back")
    page = Page(render_html(result))
    series = [(round(t, 3), round(w)) for t, w in chart_series(page, "new")]
    assert distinct([w for _, w in series]) == [0, 1, 5, 25, 0]
    start = result.timeline[0].at
    (restore,) = [e for e in result.timeline if e.kind == "compensated" and "weights" in e.data]
    steps = itertools.pairwise(series)
    drop = next(t for (_, before), (t, w) in steps if (before, w) == (25, 0))
    assert drop == pytest.approx((restore.at - start).total_seconds(), abs=0.002)
    # A promotion is not a rollback: the new version keeps all the traffic through it.
    promoted = chart_series(Page(render_html(load("promoted"))), "new")
    assert distinct([round(w) for _, w in promoted]) == [0, 1, 5, 25, 100]


def test_chart_marks_each_gate_verdict_by_shape_and_error_ratio() -> None:
    page = Page(render_html(load("rolled_back")))
    passes = page.find("circle", **{"class": "verdict verdict-good"})
    fails = page.find("rect", **{"class": "verdict verdict-bad"})
    assert len(passes) == 2 and len(fails) == 1
    v0, y0, v1, y1 = axis(page, "error-ratio", "y1")
    assert (v0, v1) == (0.0, 1.0)  # a 100% error ratio sets the right axis' range
    assert float(fails[0]["y"]) + 5 == pytest.approx(y1)  # the failed gate: error ratio 1.0
    assert all(float(a["cy"]) == pytest.approx(y0) for a in passes)  # passed at error ratio 0


def test_chart_has_a_table_with_the_same_numbers(sample: DeploymentResult) -> None:
    text = render_html(sample)
    table = text.split('<table class="chart-data">')[1].split("</table>")[0]
    rows = re.findall(r"<tr><td>", table)
    changes = len(timeline_weights(sample, "canary"))
    gates = sum(e.kind == "gate_verdict" for e in sample.timeline)
    assert len(rows) == changes + gates
    for weight in timeline_weights(sample, "canary"):
        assert f"<td>{weight}%</td>" in table


def test_html_shows_outcome_verdicts_evidence_and_risk_in_words(sample: DeploymentResult) -> None:
    text = render_html(sample)
    tone = "good" if sample.outcome is Outcome.promoted else "bad"
    assert re.search(rf'<span class="badge {tone}">. {sample.outcome.value}</span>', text)
    gates = text.split('<section id="gates">')[1].split("</section>")[0]
    for event in (e for e in sample.timeline if e.kind == "gate_verdict"):
        verdict = _VERDICT_BADGES[event.data["result"]]
        assert f"{html.escape(event.message.split(': ')[0])}" in gates and verdict in gates
        for key in (*event.data["evidence"], *event.data["thresholds"]):
            assert f"<td>{key}</td>" in gates
    assert sample.status.risk is not None
    risk = text.split('<section id="risk">')[1].split("</section>")[0]
    for factor in sample.status.risk.factors:
        assert f"<tr><td>{factor.name}</td><td>+{factor.points}</td>" in risk


def test_hostile_text_is_escaped_everywhere_in_html() -> None:
    base = load("rolled_back")
    result = with_events(
        base,
        event_after(base, "note", HOSTILE, actor=HOSTILE, data={"reason": HOSTILE}),
        event_after(
            base,
            "decision",
            f"approved by {HOSTILE}",
            actor=HOSTILE,
            data={
                "reason": HOSTILE,
                "signature": {"printed_name": HOSTILE, "meaning": HOSTILE, "signed_at": HOSTILE},
            },
        ),
        event_after(
            base,
            "weights",
            "traffic",
            phase=Phase.shift,
            data={"weights": {HOSTILE: 0, "stable": 100}, "previous": {"stable": 100}},
        ),
        cause=HOSTILE,
    )
    text = render_html(result)
    page = Page(text)
    assert page.errors == [] and not page.find("script")
    assert "<script" not in text.lower()
    assert html.escape(HOSTILE) in text
    assert f'<th scope="col">{html.escape(HOSTILE)} weight</th>' in text  # a slot, escaped


@pytest.mark.parametrize(
    ("history", "new", "old"),
    [
        # Promoted early at 1%: canary takes everything, then stable, rebuilt on 2.0.0.
        ("promote_skips_the_remaining_steps", [0, 1, 100], [100, 99, 0]),
        # The app served from blue; the canary takes over and stable is built on 2.0.0.
        ("canary_promotion_of_an_app_serving_from_a_colour_retires_the_colour", [0, 100], [100, 0]),
        # Blue-green switched to green, which failed: traffic went back to blue.
        ("blue_green_post_switch_failure_switches_back", [0, 100, 0], [100, 0, 100]),
    ],
)
def test_the_chart_follows_versions_not_slots(history: str, new: list[int], old: list[int]) -> None:
    _, result = recorded(history)
    page = Page(render_html(result))
    assert distinct([round(w) for _, w in chart_series(page, "new")]) == new
    assert distinct([round(w) for _, w in chart_series(page, "old")]) == old
    if result.outcome is Outcome.promoted:
        (promotion,) = [t for t in read_facts(result).traffic if t.what.startswith("promotion")]
        assert (promotion.weights["stable"], promotion.new, promotion.old) == (100, 100, 0)
        assert "promotion: stable, rebuilt on the new version, takes over" in render_markdown(
            result
        )


@pytest.mark.parametrize("name", SAMPLES)
def test_the_error_budget_is_drawn_on_its_own_scale_apart_from_the_traffic(name: str) -> None:
    page = Page(render_html(load(name)))
    budgets = [a for a in page.find("line", **{"class": "budget"}) if "data-value" in a]
    assert [float(a["data-value"]) for a in budgets] == [0.02]
    (at,) = [float(a["y1"]) for a in budgets]
    # Read back through the error-ratio axis, the line is at the budget.
    v0, y0, v1, y1 = axis(page, "error-ratio", "y1")
    assert v0 + (at - y0) * (v1 - v0) / (y1 - y0) == pytest.approx(0.02)
    # Nowhere near the traffic: below the traffic panel's 0% line, on another scale.
    _, zero, _, hundred = axis(page, "weight", "y1")
    traffic = [y for version in ("new", "old") for y in line_ys(page, version)]
    assert at > zero + 20 and all(abs(at - y) > 20 for y in [*traffic, zero, hundred])
    assert "error budget 2%" in render_html(load(name))


def line_ys(page: Page, version: str) -> list[float]:
    (line,) = page.find("polyline", **{"data-version": version})
    return [float(p.split(",")[1]) for p in line["points"].split()]


# --------------------------------------------------------------------------- signatures


def signed_decision(base: DeploymentResult, signed_at: str) -> TimelineEvent:
    return event_after(
        base,
        "decision",
        "approved by dana (1 of 1)",
        phase=Phase.await_approval,
        actor="dana",
        data={
            "reason": "validated in OQ-77",
            "signature": {
                "printed_name": "Dana Q. Reviewer",
                "meaning": "Approval of release 3.0.0 for production use",
                "signed_at": signed_at,
                "key_fingerprint": "sha256:" + "ab" * 32,
                "signature": "c2lnbmF0dXJl",
            },
        },
    )


def test_a_signed_approval_shows_its_21_cfr_11_50_manifestation() -> None:
    base = load("promoted")
    # Signed at 09:35:27 in UTC+1: the report says 08:35:27 UTC.
    result = with_events(base, signed_decision(base, "2026-11-29T09:35:27.120+01:00"))
    line = (
        "Signed by Dana Q. Reviewer — Approval of release 3.0.0 for production use — "
        "2026-11-29 08:35:27 UTC"
    )
    md = render_markdown(result)
    (row,) = [r for r in section(md, "Approvals").splitlines() if "| dana |" in r]
    assert line in row and "| approve |" in row and "validated in OQ-77" in row
    assert "sha256:" + "ab" * 32 in row
    text = render_html(result)
    approvals = text.split('<section id="approvals">')[1].split("</section>")[0]
    (html_row,) = [r for r in approvals.split("<tr>") if "<td>dana</td>" in r]
    assert html.escape(line) in html_row and "approve" in html_row


def test_unsigned_approvals_show_no_signature_and_odd_dates_are_not_fatal() -> None:
    base = load("promoted")
    md = render_markdown(base)
    (row,) = [r for r in section(md, "Approvals").splitlines() if "| alice | approve |" in r]
    assert row.endswith("| reviewed CHG-1001 | — |") and "Signed by" not in md
    odd = with_events(base, signed_decision(base, "yesterday-ish"))
    assert "yesterday-ish (unreadable date and time)" in render_markdown(odd)


def test_proven_identities_and_their_channel_show_beside_each_decision() -> None:
    base = load("promoted")
    key = "sha256:" + "cd" * 32
    started = event_after(
        base, "initiator", "started by ci-bot via cli (signed with key …)", actor="ci-bot",
        data={"proof": {"user": "ci-bot", "channel": "cli", "proven": True,
                        "key_fingerprint": key}},
    )  # fmt: skip
    attested = TimelineEvent(
        at=started.at + timedelta(milliseconds=5), phase=Phase.await_approval, kind="decision",
        message="approved by bob via Slack (…), attested by slack-bot (1 of 1)", actor="bob",
        data={"proof": {"user": "bob", "channel": "slack", "proven": True,
                        "attested_by": "slack-bot", "via": {"workspace": "T1", "user": "U2"}}},
    )  # fmt: skip
    result = with_events(base, started, attested)
    # Who started it is in the summary: starting is not a decision on the release.
    summary = section(render_markdown(result), "Summary").splitlines()
    assert f"| Initiator | ci-bot (signed via cli, key {key}) |" in summary
    rows = section(render_markdown(result), "Approvals").splitlines()
    assert not [r for r in rows if "ci-bot" in r]
    (bob,) = [r for r in rows if r.startswith("| ") and "| bob (" in r]
    assert "bob (via Slack (workspace T1, user U2), attested by slack-bot)" in bob
    text = render_html(result)
    approvals = text.split('<section id="approvals">')[1].split("</section>")[0]
    assert "via Slack (workspace T1, user U2), attested by slack-bot" in approvals
    summary = text.split('<section id="summary">')[1].split("</section>")[0]
    assert f"ci-bot (signed via cli, key {key})" in summary


# --------------------------------------------------------------------------- odd results


def test_a_deployment_that_never_shifted_traffic_renders_without_a_chart() -> None:
    base = load("promoted")
    result = with_events(
        base.model_copy(update={"timeline": base.timeline[:9]}),
        outcome=Outcome.expired,
        cause="no decision within 14400 s: 0 of 1 approvals",
    )
    text = render_html(result)
    page = Page(text)
    assert page.errors == [] and not page.find("svg")
    assert "nothing to chart" in text and "expired" in text
    md = render_markdown(result)
    assert "No traffic was shifted." in md and "expired" in md.splitlines()[0]


def test_an_unreadable_gate_verdict_is_shown_not_fatal() -> None:
    base = load("rolled_back")
    odd = event_after(
        base, "gate_verdict", "step 9/9: weird", phase=Phase.shift, data={"result": "?"}
    )
    result = with_events(base, odd)
    assert "step 9/9: weird" in render_markdown(result)
    assert Page(render_html(result)).errors == []
