"""The auditor's report of recorded deployments: who started each, for which ticket and why,
what served before, the compliance profiles and the release's change record in the summary; an
approvals table that holds people's decisions and nothing else.

Every result here is a real run's, read from tests/histories/ with the request it was started
with. tests/recorded.py adds only what the recordings lack: the running version (today's engine
records it; these histories predate it), the environment's profiles where a test needs pci-dss,
and the verified release's change record, taken from the release the history was started with
(the report reads it from `release_verified` where an engine records it: today's does not).
"""

from __future__ import annotations

import html
import re

import pytest

from tests.recorded import (
    HISTORIES,
    recorded,
    release_of,
    with_change_record,
    with_profiles,
    with_running_version,
)
from zdp.forensics import render_html, render_markdown
from zdp.forensics.facts import read_facts
from zdp.models import DeploymentResult, ReleaseManifest

SOX = "complete_evidence_is_recorded_in_the_timeline_profiles0_"
REFUSED = "refusals_are_recorded_and_every_deployment_anchors_the_log"
PROMOTED_EARLY = "promote_skips_the_remaining_steps"
OVERRIDE = "emergency_override_needs_two_distinct_approvals"
NO_TICKET = "sox_without_a_change_ticket_is_refused"
PCI_RECORD = {
    "security_impact": "none: UI text only, no change to payment data flows",
    "test_evidence": "CI run 4711: unit, e2e and the PCI scan passed",
}
NOT_GIVEN_PCI = "not given (required by pci-dss 6.5.1)"


def md_section(md: str, title: str) -> str:
    return md.split(f"\n## {title}\n")[1].split("\n## ")[0]


def html_section(page: str, ident: str) -> str:
    return page.split(f'<section id="{ident}">')[1].split("</section>")[0]


def md_rows(md: str, title: str) -> dict[str, str]:
    """The Field | Value rows of a Markdown section (every table in it)."""
    found = re.findall(r"^\| (.+?) \| (.*) \|$", md_section(md, title), re.MULTILINE)
    return {field: value for field, value in found if field != "Field"}


def html_rows(page: str, ident: str) -> dict[str, str]:
    cells = re.findall(
        r'<tr><td class="nowrap">(.*?)</td><td class="free">(.*?)</td></tr>',
        html_section(page, ident),
    )
    return {html.unescape(k): html.unescape(re.sub("<[^>]+>", "", v)) for k, v in cells}


def both(result: DeploymentResult, title: str, ident: str) -> list[dict[str, str]]:
    """The same rows, as the Markdown and the HTML report show them."""
    return [md_rows(render_markdown(result), title), html_rows(render_html(result), ident)]


def with_pci_record(release: ReleaseManifest, **fields: str) -> ReleaseManifest:
    return release.model_copy(update={"change": release.change.model_copy(update=fields)})


# --------------------------------------------------------------------------- summary


def test_summary_shows_initiator_ticket_reason_previous_version_and_profiles() -> None:
    request, result = recorded(SOX)
    result = with_running_version(result, "1.0.0")
    for rows in both(result, "Summary", "summary"):
        assert rows["Initiator"] == request.initiator == "ci-bot"
        assert rows["Change ticket"] == request.change_ref == "CHG-1001"
        assert rows["Reason"] == request.reason == "test deployment"
        assert rows["Previous version"] == "1.0.0"
        assert rows["Version"] == release_of(request).version == "2.0.0"
        assert rows["Compliance profiles"] == "sox"


def _closed_histories() -> list[str]:
    names = sorted(p.name[len("test_") : -len("-0.json")] for p in HISTORIES.glob("*-0.json"))
    return [n for n in names if '"EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED"' in history_text(n)]


def history_text(name: str) -> str:
    return (HISTORIES / f"test_{name}-0.json").read_text()


@pytest.mark.parametrize("name", _closed_histories())
def test_every_recorded_start_is_read_as_it_was_requested(name: str) -> None:
    """Initiator, ticket and reason as the workflow was started with them, from every
    recorded deployment (older ones hold them in the start event's message only)."""
    request, result = recorded(name)
    change = read_facts(result).change
    assert change.started
    assert (change.initiator, change.change_ref, change.reason) == (
        request.initiator,
        request.change_ref,
        request.reason,
    )


def test_previous_version_is_none_when_nothing_served_and_unknown_in_older_records() -> None:
    _, result = recorded(SOX)
    first = with_running_version(result, None)
    assert read_facts(first).change.previous_version is None
    for rows in both(first, "Summary", "summary"):
        assert rows["Previous version"] == "none: nothing served before this deployment"
    for rows in both(result, "Summary", "summary"):  # recorded before the engine said
        assert rows["Previous version"] == "not recorded"


def test_a_start_recorded_as_data_is_shown_as_given() -> None:
    """Where the start event carries its fields, they are shown as given, even with ": " in
    a ticket, which the message alone cannot tell from the reason."""
    _, result = recorded(SOX)
    data = {"initiator": "ci-bot", "change_ref": "CHG-7: hotfix", "reason": "a: b | c"}
    result.timeline[0].data.update(data)
    for rows in both(result, "Summary", "summary"):
        assert rows["Change ticket"] == "CHG-7: hotfix"
        assert rows["Reason"] in ("a: b | c", "a: b \\| c")  # the Markdown escapes the pipe


def test_a_start_without_a_ticket_says_not_given() -> None:
    request, result = recorded(NO_TICKET)
    assert request.change_ref is None
    for rows in both(result, "Summary", "summary"):
        assert rows["Initiator"] == "ci-bot" and rows["Reason"] == "test deployment"
        # Refused at verify: the release's own ticket never reached the record.
        assert rows["Change ticket"].startswith("not given when started")


def test_pci_change_record_shows_what_is_given_and_not_given_where_required() -> None:
    request, result = recorded(SOX)
    release = with_pci_record(release_of(request), **PCI_RECORD)
    result = with_profiles(with_change_record(result, release), "sox", "pci-dss")
    for rows in both(result, "Summary", "summary"):
        assert rows["Compliance profiles"] == "sox, pci-dss"
        assert rows["Security impact"] == PCI_RECORD["security_impact"]
        assert rows["Test evidence"] == PCI_RECORD["test_evidence"]
        assert rows["Change description"] == NOT_GIVEN_PCI
        assert rows["Back-out procedure"] == NOT_GIVEN_PCI
    # Under sox alone nothing of the PCI record is required: what is given is shown, no more.
    for rows in both(with_profiles(result, "sox"), "Summary", "summary"):
        assert rows["Security impact"] == PCI_RECORD["security_impact"]
        assert "Change description" not in rows and "Back-out procedure" not in rows


def test_a_record_without_the_change_record_says_so() -> None:
    _, result = recorded(SOX)
    under_pci = with_profiles(result, "sox", "pci-dss")
    for rows in both(under_pci, "Summary", "summary"):
        for field in ("Change description", "Security impact", "Test evidence"):
            assert rows[field] == "not recorded (required by pci-dss 6.5.1)"
    md, page = render_markdown(result), render_html(result)
    note = "The release's change record (description, security impact, test evidence, "
    assert note in md_section(md, "Summary") and html.escape(note) in html_section(page, "summary")


# --------------------------------------------------------------------------- approvals


def md_decisions(md: str) -> list[tuple[str, str]]:
    """(who, decision) of every row of the Markdown approvals table."""
    rows = re.findall(r"^\| (\d{4}-[^|]+) \| (.+?) \| (.+?) \|", md_section(md, "Approvals"), re.M)
    return [(who, decision) for _, who, decision in rows]


def html_decisions(page: str) -> list[tuple[str, str]]:
    rows = re.findall(r"<tr><td class=\"nowrap\">[^<]*</td><td>(.*?)</td><td>(.*?)</td>", page)
    text = [tuple(html.unescape(re.sub("<[^>]+>", "", c)) for c in row) for row in rows]
    return [(who, decision.lstrip("✔✖ ")) for who, decision in text]


def test_approvals_table_holds_decisions_and_refused_decisions_only() -> None:
    _, result = recorded(REFUSED)
    md, page = render_markdown(result), render_html(result)
    expected = [("ci-bot", "approve (refused)"), ("alice", "approve")]
    assert md_decisions(md) == expected
    assert html_decisions(html_section(page, "approvals")) == expected
    # "Approvals complete" is an event that followed from alice's decision: beside the table.
    assert "approvals complete: alice" in md_section(md, "Approvals")
    assert "approvals complete: alice" in html_section(page, "approvals")
    assert "| approvals complete |" not in md


def test_an_early_promotion_and_an_emergency_override_are_interventions_not_decisions() -> None:
    _, promoted = recorded(PROMOTED_EARLY)
    md, page = render_markdown(promoted), render_html(promoted)
    assert md_decisions(md) == [] and "<table" not in html_section(page, "approvals")
    assert "no approval required: policy requires no approval" in md_section(md, "Approvals")
    assert "promoted early" not in md_section(md, "Approvals")
    interventions = md_section(md, "Interventions and alerts")
    assert "| promote_requested | bob promoted early: hotfix for incident INC-7 | bob |" in (
        interventions
    )
    assert "bob promoted early" in html_section(page, "interventions")

    _, override = recorded(OVERRIDE)
    md = render_markdown(override)
    assert md_decisions(md) == [("alice", "approve"), ("bob", "approve")]
    assert "| emergency_override |" in md_section(md, "Interventions and alerts")
    assert "approvals complete: alice, bob" in md_section(md, "Approvals")
