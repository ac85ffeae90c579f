"""The auditor's copy in a real browser: the HTML report of a Part 11 deployment opened in
headless Chromium (no console error, the chart drawn, the verification status and the
signatures shown), and `zdp timeline --format pdf` printing it through the same browser; a
recorded deployment's report laid out at common screen widths, measured and photographed: no
timestamp or header wraps, no table overflows, the error budget apart from the traffic lines.

Chromium is Debian's `chromium` package, installed by `.ci/run`; where it is missing these
tests skip with that reason.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.browser import Browser
from tests.cli_checks import zdp
from tests.kit import APP, Harness, part11_prod
from tests.recorded import (
    recorded,
    release_of,
    with_change_record,
    with_profiles,
    with_running_version,
)
from zdp import deployments
from zdp.errors import ZdpError
from zdp.forensics.pdf import find_chromium
from zdp.forensics.report import render_html
from zdp.models import DeploymentResult, Outcome, Phase

try:
    find_chromium()
except ZdpError as missing:
    pytest.skip(f"{missing} (.ci/run installs it)", allow_module_level=True)

# Read in the page after it loaded: what a person would look at.
PROBE = """(() => {
  const svg = document.querySelector('#traffic svg');
  const box = svg ? svg.getBoundingClientRect() : null;
  const style = svg ? getComputedStyle(svg) : null;
  const text = (id) => (document.getElementById(id) || {innerText: ''}).innerText;
  return {
    chart: box ? [box.width, box.height] : null,
    shown: !!style && style.display !== 'none' && style.visibility !== 'hidden',
    marks: svg ? svg.querySelectorAll('path, polyline, line, rect, circle').length : 0,
    verification: text('verification'),
    approvals: text('approvals'),
  };
})()"""


# Measured in the laid-out page: how many lines each timestamp cell and each header takes (the
# distinct line boxes of its text), whether a table is wider than the page, and where the
# chart's budget and traffic lines are on screen.
LAYOUT = r"""(() => {
  const lines = (el) => {
    const range = document.createRange();
    range.selectNodeContents(el);
    const bottoms = [];
    for (const r of range.getClientRects()) {
      if (r.width > 0 && !bottoms.some((b) => Math.abs(b - r.bottom) < 4)) bottoms.push(r.bottom);
    }
    return bottoms.length;
  };
  const stamp = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
  const cells = [...document.querySelectorAll('td')]
    .filter((td) => stamp.test(td.innerText.trim()));
  const heads = [...document.querySelectorAll('th, h1, h2, h3')];
  const main = document.querySelector('main');
  const svg = document.querySelector('#traffic svg');
  const ctm = svg.getScreenCTM();
  const y = (px, py) => {
    const p = svg.createSVGPoint();
    p.x = px;
    p.y = py;
    return p.matrixTransform(ctm).y;
  };
  const at = (line) => y(+line.getAttribute('x1'), +line.getAttribute('y1'));
  const drawn = (sel) => [...svg.querySelectorAll(sel)].filter((e) => !e.closest('.legend'));
  const polyline = (line) => {
    const ys = [];
    for (let i = 0; i < line.points.numberOfItems; i++) {
      const p = line.points.getItem(i);
      ys.push(y(p.x, p.y));
    }
    const style = getComputedStyle(line);
    return {version: line.dataset.version, ys, stroke: style.stroke, dash: style.strokeDasharray};
  };
  return {
    width: window.innerWidth,
    stamps: cells.length,
    wrapped: [...cells, ...heads].filter((e) => lines(e) > 1).map((e) => e.innerText),
    overflowing: [...document.querySelectorAll('table')]
      .filter((t) => t.getBoundingClientRect().right > main.getBoundingClientRect().right + 1)
      .map((t) => t.className || t.querySelector('th').innerText),
    budgets: drawn('line.budget').map(at),
    budgetLabels: drawn('text.budget-label').map((t) => t.textContent),
    grid: drawn('line[data-axis="weight"]').map(at),
    weights: drawn('polyline.weight').map(polyline),
  };
})()"""
WIDTHS = (1280, 1440, 1920)


def _recorded_report() -> str:
    """A recorded production deployment (alice's, approved by bob with a signed request), with
    what the recording predates (the running version, the verified release's change record),
    a long PCI change record, and the environment under sox and pci-dss."""
    request, result = recorded(
        "bobs_signed_approval_of_alices_deployment_is_accepted_and_shows_who"
    )
    release = release_of(request)
    change = release.change.model_copy(
        update={
            "description": "Checkout: the 'Pay now' button replaces 'Buy', and the basket "
            "shows the delivery date before payment (UX-2231)",
            "security_impact": "none: UI text and layout only; no change to how card data "
            "is collected, sent or stored (reviewed by the security team, SEC-1184)",
            "test_evidence": "CI run 4711: unit, e2e and the quarterly PCI ASV scan passed",
            "backout_procedure": "zdp deploy webshop --env prod with release 1.0.0",
        }
    )
    result = with_change_record(result, release.model_copy(update={"change": change}))
    result = with_profiles(with_running_version(result, "1.0.0"), "sox", "pci-dss")
    return render_html(result)


# An A4 page at 96 px to the inch, less Chromium's default print margins.
PAPER_WIDTH = 718
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def _layouts(page: Path, shots: Path) -> list[tuple[list[str], dict[str, Any]]]:
    """The page laid out at each of WIDTHS, photographed; then as it prints on A4."""
    with Browser() as browser:
        loaded = [
            browser.open(page.as_uri(), LAYOUT, width=w, screenshot=shots / f"report-{w}.png")
            for w in WIDTHS
        ]
        loaded.append(browser.open(page.as_uri(), LAYOUT, width=PAPER_WIDTH, media="print"))
    return [(p.errors, dict(p.value or {})) for p in loaded]


def _png_width(path: Path) -> int:
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR"
    return int.from_bytes(data[16:20], "big")


def test_the_report_lays_out_without_wrapping_at_common_widths(tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(_recorded_report())

    *screens, (errors, paper) = _layouts(page, tmp_path)
    # On paper a header may wrap between words, a timestamp still not; every table fits.
    assert errors == [] and paper["overflowing"] == [], paper
    assert not [text for text in paper["wrapped"] if STAMP.match(text)], paper["wrapped"]
    for width, (errors, seen) in zip(WIDTHS, screens, strict=True):
        assert errors == [] and seen["width"] == width
        assert seen["stamps"] > 30  # the timeline's, the phases', the chart table's…
        assert seen["wrapped"] == [], (width, seen["wrapped"])
        assert seen["overflowing"] == [], (width, seen["overflowing"])
        # The error budget has its own scale below the traffic: on screen it is well apart
        # from the 0% and 100% lines and from every point of both traffic lines.
        (budget,) = seen["budgets"]
        assert seen["budgetLabels"] == ["error budget 2%"]
        traffic = [y for line in seen["weights"] for y in line["ys"]]
        assert min(abs(budget - y) for y in [*traffic, *seen["grid"]]) > 15, seen
        assert budget > max(seen["grid"])  # below the traffic panel's 0% line
        new, old = sorted(seen["weights"], key=lambda line: line["version"] != "new")
        assert (new["version"], old["version"]) == ("new", "old")
        assert new["stroke"] != old["stroke"] and new["dash"] != old["dash"]
        # The whole page, photographed (the window less its scroll bar, if it shows one).
        assert width - 20 <= _png_width(tmp_path / f"report-{width}.png") <= width


def test_the_layout_check_sees_a_wrapped_timestamp(tmp_path: Path) -> None:
    """The check above can fail: with the page's old rule (every cell and header may break
    anywhere) timestamps and headers wrap at 1280 px."""
    text = _recorded_report()
    style = text.split("<style>")[1].split("</style>")[0]
    old = style + "\nth, td, td.nowrap { white-space: normal; overflow-wrap: anywhere; }"
    page = tmp_path / "old.html"
    page.write_text(text.replace(style, old))
    with Browser() as browser:
        seen = dict(browser.open(page.as_uri(), LAYOUT, width=1280).value or {})
    assert any(STAMP.match(text) for text in seen["wrapped"]), seen
    assert "Signature (21 CFR 11.50)" in seen["wrapped"], seen  # a header


async def _signed_deployment(
    harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> DeploymentResult:
    """A Part 11 production deployment: the initiator's approval refused, alice's signed."""
    alice = part11_prod(harness, tmp_path / "approvers", monkeypatch, "alice")["alice"]
    request = harness.request("2.0.0", environment="prod")
    request.release = harness.signer.validated("2.0.0", "alice", alice)
    handle = await harness.start(request)
    await harness.wait_for(handle, lambda s: s.phase is Phase.await_approval)
    with pytest.raises(deployments.RequestRefused):
        await deployments.approve(harness.client, handle.id, "ci-bot", channel="cli")
    signature = await deployments.sign_decision(
        harness.client, handle.id, "alice", "approve", "approve release to production", alice
    )
    await deployments.approve(harness.client, handle.id, "alice", None, signature)
    await asyncio.wait_for(handle.result(), 60)
    return await deployments.closed_result(harness.client, handle.id)


def _open(page: Path) -> tuple[list[str], dict[str, Any]]:
    with Browser() as browser:
        loaded = browser.open(page.as_uri(), PROBE)
    return loaded.errors, dict(loaded.value or {})


async def test_the_html_report_opens_cleanly_in_chromium_and_prints_to_pdf(
    harness: Harness,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    cli_env: dict[str, str],
) -> None:
    result = await _signed_deployment(harness, tmp_path, monkeypatch)
    assert result.outcome is Outcome.promoted
    page = tmp_path / "report.html"
    page.write_text(render_html(result))

    errors, seen = await asyncio.to_thread(_open, page)

    assert errors == []
    width, height = seen["chart"]
    assert width > 200 and height > 80 and seen["shown"] and seen["marks"] > 5
    verification = seen["verification"]
    for line in (
        "Release signature\tverified\tsigned by sha256:",
        "Decision signatures\tverified\t1 Part 11 signature(s)",
        "Refused decisions\t1 recorded\tapprove by ci-bot via cli refused",
        "Audit log\tanchored\tsigned head over",
        "Evidence\tsealed\t",
    ):
        assert line in verification, verification
    assert "signed by Alice A. Example — approve release to production" in seen["approvals"]

    out = tmp_path / "report.pdf"
    printed = await zdp(
        "timeline", f"deploy-{APP}-prod", "--format", "pdf", "-o", str(out), env=cli_env,
        timeout=180,
    )  # fmt: skip
    assert printed.code == 0, printed.err
    assert f"wrote {out}" in printed.err
    pdf = out.read_bytes()
    assert pdf.startswith(b"%PDF-") and pdf.rstrip().endswith(b"%%EOF")
    assert pdf.count(b"/Type /Page") >= 2  # the page tree and at least one page


def test_the_browser_check_sees_a_broken_page(tmp_path: Path) -> None:
    """The check above can fail: a page with a script error and no chart is reported."""
    page = tmp_path / "broken.html"
    page.write_text(
        "<!DOCTYPE html><html><body><section id='traffic'></section>"
        "<script>console.error('boom'); undefinedFunction();</script></body></html>"
    )
    errors, seen = _open(page)
    assert any("boom" in e for e in errors) and any("undefinedFunction" in e for e in errors)
    assert seen["chart"] is None


def test_chromium_is_found_where_ci_installs_it() -> None:
    assert shutil.which(find_chromium())
