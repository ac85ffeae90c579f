"""Readable progress for people and CI logs: timeline lines, status tables, exit codes."""

from __future__ import annotations

import asyncio
from datetime import UTC
from typing import Any

from temporalio.client import Client

from zdp import deployments
from zdp.cli.output import err_console
from zdp.deployments import RunSummary
from zdp.errors import ZdpError
from zdp.models import ApprovalRecord, DeploymentResult, DeploymentStatus, Outcome, TimelineEvent

# `zdp deploy --wait` exits with the outcome's code, so CI can gate on it.
OUTCOME_EXIT_CODES: dict[Outcome, int] = {
    Outcome.promoted: 0,
    Outcome.rolled_back: 10,
    Outcome.rejected: 11,
    Outcome.expired: 12,
    Outcome.aborted: 13,
    Outcome.failed: 14,
    Outcome.blocked: 15,
}

POLL_SECONDS = 0.5
QUERY_TIMEOUT_SECONDS = 5.0


def event_line(event: TimelineEvent) -> str:
    who = f" ({event.actor})" if event.actor else ""
    return f"{event.at:%H:%M:%S}  {event.phase.value:<14} {event.kind:<16} {event.message}{who}"


async def follow(client: Client, workflow_id: str, quiet: bool = False) -> DeploymentResult:
    """Print each new timeline event on stderr until the deployment closes; return its result."""
    seen = 0
    waiting_noted = False

    def show(events: list[TimelineEvent]) -> None:
        nonlocal seen
        for event in events[seen:]:
            if not quiet:
                err_console.print(event_line(event), markup=False, highlight=False, soft_wrap=True)
        seen = max(seen, len(events))

    gate_shown, gate_at = "", 0.0
    while await deployments.is_running(client, workflow_id):
        try:
            events = await asyncio.wait_for(
                deployments.timeline(client, workflow_id), QUERY_TIMEOUT_SECONDS
            )
        except TimeoutError:
            if not waiting_noted and not quiet:
                err_console.print("no worker is answering yet; waiting (start one: zdp worker)")
            waiting_noted = True
            continue
        show(events)
        now = asyncio.get_running_loop().time()
        if not quiet and now - gate_at >= GATE_LINE_SECONDS:
            # The running gate's figures, live, at most every few seconds.
            gate_at = now
            try:
                figures = await deployments.live_gate(client, workflow_id)
            except ZdpError:  # the run closed meanwhile: its result comes next
                figures = None
            line = deployments.gate_line(figures) if figures else ""
            if line and line != gate_shown:
                err_console.print(f"          gate     {line}", markup=False, soft_wrap=True)
                gate_shown = line
        await asyncio.sleep(POLL_SECONDS)
    result = await deployments.closed_result(client, workflow_id)
    show(result.timeline)
    if not quiet:
        err_console.print(
            f"outcome: {result.outcome.value}" + (f" — {result.cause}" if result.cause else ""),
            markup=False,
            soft_wrap=True,
        )
        contained = deployments.containment_seconds(result.timeline)
        if contained is not None:
            err_console.print(f"contained: {containment_text(contained)}", markup=False)
    return result


def containment_text(seconds: float) -> str:
    return f"traffic back on what served before {seconds * 1000:.0f} ms after the failing verdict"


GATE_LINE_SECONDS = 3.0  # how often `zdp deploy --wait` shows the running gate's figures


def render_status(status: DeploymentStatus) -> str:
    """The status as `label  value` lines; every approval with its Part 11 manifestation
    (printed name, meaning, date and time) when it was signed."""
    rows: list[tuple[str, str]] = [("deployment", status.deployment_id)]
    if status.run_id:
        rows.append(("run", status.run_id))
    rows.append(("version", status.version or "(not verified yet)"))
    rows.append(("strategy", status.strategy.value))
    rows.append(("phase", status.phase.value + (" (paused)" if status.paused else "")))
    if status.initiator is not None:
        rows.append(("started by", status.initiator.line()))
    if status.risk is not None:
        rows.append(("risk", f"{status.risk.score} ({status.risk.level.value})"))
    if status.approvals_required or status.approvals:
        approved = sum(1 for a in status.approvals if a.decision == "approve")
        needed = f"{approved} of {status.approvals_required} needed"
        if status.signature_required:
            needed += ", each signed (Part 11)"
        rows.append(("approvals", needed))
        for record in status.approvals:
            rows.append(("", _approval_line(record)))
            if record.signature is not None:
                rows.append(("", f"  {record.signature.line()}"))
    if status.weights:
        rows.append(("traffic", ", ".join(f"{s} {w}%" for s, w in sorted(status.weights.items()))))
    if status.steps and status.step_index is not None:
        rows.append(("step", f"{status.step_index + 1} of {len(status.steps)} {status.steps}"))
    if status.outcome is not None:
        rows.append(
            ("outcome", status.outcome.value + (f": {status.cause}" if status.cause else ""))
        )
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label:<{width}}  {value}".rstrip() for label, value in rows)


def _approval_line(record: ApprovalRecord) -> str:
    """ "approve by bob at 2025-01-02 10:00:00 UTC via cli (signed with key …): reason"."""
    at = f"{record.at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
    line = f"{record.decision} by {record.approver} at {at}"
    if record.proof is not None and record.proof.user == record.approver:
        line += " " + record.proof.line().removeprefix(record.approver).strip()
    elif record.proof is not None:
        line += f" ({record.proof.line()})"
    if record.reason:
        line += f": {record.reason}"
    return line


def render_timeline(events: list[TimelineEvent]) -> str:
    """One line per event, full UTC timestamps: readable in a terminal, greppable in a log.
    The start names the deployment's trace (`trace <id>`) when the client started one."""
    return "\n".join(
        f"{e.at:%Y-%m-%dT%H:%M:%S.%f}"[:-3]
        + f"Z  {e.phase.value:<14} {e.kind:<18} {e.message}"
        + (f"  [{e.actor}]" if e.actor else "")
        + (
            f"  trace {e.data['trace_id']}"
            if e.kind == "started" and e.data.get("trace_id")
            else ""
        )
        for e in events
    )


def render_health(health: dict[str, Any]) -> str:
    """The cached health per endpoint (what the gates last saw), without probing again; empty
    when nothing is cached (nothing to show)."""
    if not health:
        return ""
    lines = ["health (cached by the gates, not probed now):"]
    for endpoint, entry in sorted(health.items()):
        result = entry.result
        state = "ok" if result.ok else f"FAIL {result.error or ''}".strip()
        lines.append(
            f"  {endpoint:<40} {state:<28} {result.latency_ms:7.1f} ms  at {entry.at:%H:%M:%S}"
        )
    return "\n".join(lines)


def render_history(workflow_id: str, listed: list[RunSummary]) -> str:
    """One line per run, newest first: run id, start and close (UTC), version, outcome; the
    latest promoted run is marked: it is what a later rollback went back to."""
    promoted = next((r.run_id for r in listed if r.outcome == Outcome.promoted.value), None)
    header = (
        f"{'RUN ID':<36}  {'STARTED (UTC)':<19}  {'CLOSED (UTC)':<19}  {'VERSION':<12}  OUTCOME"
    )
    lines = [f"runs of {workflow_id}, newest first:", header]
    for run in listed:
        closed = f"{run.closed_at.astimezone(UTC):%Y-%m-%d %H:%M:%S}" if run.closed_at else "-"
        outcome = run.outcome or ("running" if run.running else run.status)
        if run.run_id == promoted:
            outcome += "  (last promoted)"
        lines.append(
            f"{run.run_id:<36}  {run.started_at.astimezone(UTC):%Y-%m-%d %H:%M:%S}  "
            f"{closed:<19}  {run.version or '-':<12}  {outcome}"
        )
    return "\n".join(lines)
