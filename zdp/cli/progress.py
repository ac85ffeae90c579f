"""Readable progress for people and CI logs: timeline lines, status tables, exit codes."""

from __future__ import annotations

import asyncio
from typing import Any

from rich.table import Table
from temporalio.client import Client

from zdp import deployments
from zdp.cli.output import err_console
from zdp.models import DeploymentResult, DeploymentStatus, Outcome, TimelineEvent

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
        await asyncio.sleep(POLL_SECONDS)
    result = await deployments.closed_result(client, workflow_id)
    show(result.timeline)
    if not quiet:
        err_console.print(
            f"outcome: {result.outcome.value}" + (f" — {result.cause}" if result.cause else ""),
            markup=False,
            soft_wrap=True,
        )
    return result


def render_status(status: DeploymentStatus) -> Table:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("deployment", status.deployment_id)
    table.add_row("version", status.version or "(not verified yet)")
    table.add_row("strategy", status.strategy.value)
    table.add_row("phase", status.phase.value + (" (paused)" if status.paused else ""))
    if status.risk is not None:
        table.add_row("risk", f"{status.risk.score} ({status.risk.level.value})")
    if status.approvals_required:
        names = ", ".join(a.approver for a in status.approvals if a.decision == "approve")
        table.add_row("approvals", f"{names or 'none'} (needs {status.approvals_required})")
    if status.weights:
        table.add_row("traffic", ", ".join(f"{s} {w}%" for s, w in sorted(status.weights.items())))
    if status.steps and status.step_index is not None:
        table.add_row("step", f"{status.step_index + 1} of {len(status.steps)} {status.steps}")
    if status.outcome is not None:
        table.add_row(
            "outcome", status.outcome.value + (f": {status.cause}" if status.cause else "")
        )
    return table


def render_timeline(events: list[TimelineEvent]) -> str:
    """One line per event, full UTC timestamps: readable in a terminal, greppable in a log."""
    return "\n".join(
        f"{e.at:%Y-%m-%dT%H:%M:%S.%f}"[:-3]
        + f"Z  {e.phase.value:<14} {e.kind:<18} {e.message}"
        + (f"  [{e.actor}]" if e.actor else "")
        for e in events
    )


def render_health(health: dict[str, Any]) -> str:
    """The cached health per endpoint (what the gates last saw), without probing again."""
    if not health:
        return (
            "health: nothing cached for this deployment's endpoints "
            "(set ZDP_REDIS_URL to share the gates' health cache with the CLI)"
        )
    lines = ["health (cached by the gates, not probed now):"]
    for endpoint, entry in sorted(health.items()):
        result = entry.result
        state = "ok" if result.ok else f"FAIL {result.error or ''}".strip()
        lines.append(
            f"  {endpoint:<40} {state:<28} {result.latency_ms:7.1f} ms  at {entry.at:%H:%M:%S}"
        )
    return "\n".join(lines)
