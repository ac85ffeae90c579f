"""The auditor's copy in a real browser: the HTML report of a Part 11 deployment opened in
headless Chromium (no console error, the chart drawn, the verification status and the
signatures shown), and `zdp timeline --format pdf` printing it through the same browser.

Chromium is Debian's `chromium` package, installed by `.ci/run`; where it is missing these
tests skip with that reason.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.browser import Browser
from tests.cli_checks import zdp
from tests.kit import APP, Harness, part11_prod
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
