"""What zdp says in Slack: the approval message, one-line events, notes on a decision, status.

Everything here is Block Kit JSON or mrkdwn text built from models; nothing does I/O. Slack
reads `&`, `<` and `>` as markup in mrkdwn, so every value from a model is escaped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from zdp.models import DeploymentStatus, Notification, RiskAssessment

APPROVE_ACTION = "zdp_approve"
REJECT_ACTION = "zdp_reject"
DECISION_BLOCK = "zdp_decision"
# The latest refusal or hint replaces the one before; accepted decisions each keep a block.
NOTE_BLOCK = "zdp_note"
DECIDED_BLOCK_PREFIX = "zdp_decided_"
# Added when the deployment has ended and the message lost its buttons.
CLOSED_BLOCK = "zdp_closed"

USAGE = "usage: /zdp status|pause|resume|abort deploy-<app>-<env>"

Block = dict[str, Any]


def escape(text: str) -> str:
    """Text safe to put in mrkdwn: Slack's three control characters as entities."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def subject(app: str, version: str | None, environment: str) -> str:
    """`webshop 2.0.0 → prod`, or `webshop → prod` before the release is verified."""
    return f"{app} {version} → {environment}" if version else f"{app} → {environment}"


def signing_command(
    deployment_id: str, environment: str, approver: str | None = None, kind: str = "approve"
) -> str:
    """The command that signs a Part 11 decision from a terminal with a registered key."""
    who = approver or "<you>"
    return (
        f"zdp {kind} {deployment_id} --as {who} --key <your key> "
        f'--meaning "{kind} release to {environment}" --prompt'
    )


def top_factors(risk: RiskAssessment, limit: int | None = 3) -> list[str]:
    """The factors that added points, as "migrations +15", biggest first."""
    scoring = sorted((f for f in risk.factors if f.points > 0), key=lambda f: -f.points)
    return [f"{f.name} +{f.points}" for f in scoring[:limit]]


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _mrkdwn(text: str, block_id: str | None = None) -> Block:
    block: Block = {"type": "section", "text": {"type": "mrkdwn", "text": text}}
    if block_id:
        block["block_id"] = block_id
    return block


def _button(text: str, action_id: str, value: str, style: str) -> Block:
    return {
        "type": "button",
        "text": {"type": "plain_text", "text": text},
        "action_id": action_id,
        "value": value,
        "style": style,
    }


def approval_message(n: Notification) -> tuple[str, list[Block]]:
    """The fallback text and blocks asking for approval: who, what, how risky, who may decide.

    With Part 11 signatures required there are no buttons: a click cannot sign, so the message
    shows the command that does.
    """
    what = subject(n.app, n.version, n.environment)
    risk = (
        f"{n.risk_score} ({n.risk_level.value})"
        if n.risk_score is not None and n.risk_level is not None
        else (str(n.risk_score) if n.risk_score is not None else "not scored")
    )
    text = f"Approval needed: {what}, started by {n.initiator or 'unknown'}, risk {risk}"
    fields = [
        ("App", n.app),
        ("Version", n.version or "unverified"),
        ("Environment", n.environment),
        ("Started by", n.initiator or "unknown"),
        ("Risk", risk),
        ("Change", n.change_ref or "none given"),
    ]
    needed = _plural(n.approvals_required, "approval")
    approvers = ", ".join(n.allowed_approvers) or "nobody is configured"
    blocks: list[Block] = [
        {"type": "header", "text": {"type": "plain_text", "text": f"Approval needed: {what}"}},
        {
            "type": "section",
            "block_id": "zdp_summary",
            "fields": [
                {"type": "mrkdwn", "text": f"*{name}*\n{escape(value)}"} for name, value in fields
            ],
        },
        _mrkdwn("*Top risk factors:* " + escape(", ".join(n.top_factors) or "none"), "zdp_factors"),
        _mrkdwn(
            f"*Config against the running {escape(n.running_version or 'version')}:* "
            + escape("; ".join(n.config_changes) or "unchanged"),
            "zdp_config",
        ),
        _mrkdwn(
            f"*Who may approve:* {escape(approvers)} ({escape(needed)} needed, "
            "not from whoever started it)",
            "zdp_approvers",
        ),
    ]
    if n.signature_required:
        blocks.append(
            _mrkdwn(
                "*21 CFR Part 11: this approval must be signed with your registered key*, "
                "which a button cannot do. Sign it from a terminal:\n"
                f"```{escape(signing_command(n.deployment_id, n.environment))}```\n"
                f"To reject, use `zdp reject` with "
                f'`--meaning "reject release to {escape(n.environment)}"`.',
                "zdp_signing",
            )
        )
    else:
        blocks.append(
            {
                "type": "actions",
                "block_id": DECISION_BLOCK,
                "elements": [
                    _button("Approve", APPROVE_ACTION, button_value(n), "primary"),
                    {
                        **_button("Reject", REJECT_ACTION, button_value(n), "danger"),
                        "confirm": {
                            "title": {"type": "plain_text", "text": "Reject this release?"},
                            "text": {
                                "type": "mrkdwn",
                                "text": f"The deployment of {escape(what)} ends rejected.",
                            },
                            "confirm": {"type": "plain_text", "text": "Reject"},
                            "deny": {"type": "plain_text", "text": "Cancel"},
                        },
                    },
                ],
            }
        )
    return text, blocks


_EVENT_VERBS = {
    "awaiting_approval": "awaits approval",
    "promoted": "promoted",
    "rolled_back": "rolled back",
    "blocked": "blocked",
    "rejected": "rejected",
    "failed": "failed",
    "expired": "expired: no decision before the deadline",
    "aborted": "aborted",
}


def button_value(n: Notification) -> str:
    """What a button carries: the deployment, the run and the release digest it is for, so a
    click acts on exactly that run of that release, never on whatever runs under the id now."""
    return f"{n.deployment_id}|{n.run_id or ''}|{n.release_digest or ''}"


@dataclass(frozen=True)
class ButtonTarget:
    deployment_id: str
    run_id: str
    release_digest: str


def parse_button_value(value: str) -> ButtonTarget | None:
    """The run a button is bound to; None for a value that names no run (a message posted
    before buttons were bound to runs: it is refused, never applied to the current run)."""
    parts = value.split("|")
    if len(parts) != 3 or not all(parts):
        return None
    return ButtonTarget(*parts)


def closed_approval_message(n: Notification) -> tuple[str, list[Block]]:
    """The approval message of a deployment that ended: the request as it was, no buttons,
    and how it ended."""
    _, blocks = approval_message(n.model_copy(update={"kind": "awaiting_approval"}))
    kept = [b for b in blocks if b.get("block_id") not in (DECISION_BLOCK, "zdp_signing")]
    ended = event_line(n)
    text = f"Ended: {ended}"
    return text, [
        *kept,
        _mrkdwn(f":checkered_flag: {ended}; nothing is left to decide", CLOSED_BLOCK),
    ]


def event_line(n: Notification) -> str:
    """One plain line for any event, e.g. `webshop 2.0.0 → prod rolled back: <cause>`."""
    what = subject(n.app, n.version, n.environment)
    if n.kind == "started":
        line = f"{what} started by {n.initiator or 'unknown'}"
        if n.change_ref:
            line += f" (change {n.change_ref})"
    elif n.kind == "step_passed":
        line = f"{what} passed the {n.step or 'next'} step"
    else:
        line = f"{what} {_EVENT_VERBS[n.kind]}"
        if n.cause:
            line += f": {n.cause}"
    return escape(line)


def with_note(
    blocks: list[Block], note: str, *, decided_by: str | None, final: bool
) -> list[Block]:
    """The message's blocks with a note added: an accepted decision keeps its own block, a
    refusal or hint replaces the previous one; a final decision removes the buttons."""
    block_id = f"{DECIDED_BLOCK_PREFIX}{decided_by}" if decided_by else NOTE_BLOCK
    kept = [
        b
        for b in blocks
        if b.get("block_id") not in (NOTE_BLOCK, block_id)
        and not (final and b.get("block_id") == DECISION_BLOCK)
    ]
    return [*kept, _mrkdwn(note, block_id)]


def status_text(status: DeploymentStatus) -> str:
    """The `/zdp status` answer: phase, traffic, risk and approvals, one fact per line."""
    what = subject(status.app, status.version, status.environment)
    lines = [
        f"*{escape(status.deployment_id)}*: {escape(what)} ({status.strategy.value})",
        f"phase: {status.phase.value}" + (" (paused)" if status.paused else ""),
        "traffic: "
        + (", ".join(f"{s} {w}%" for s, w in sorted(status.weights.items())) or "not shifted yet"),
    ]
    if status.steps and status.step_index is not None:
        lines.append(f"step: {status.step_index + 1} of {len(status.steps)} {status.steps}")
    if status.risk is not None:
        factors = ", ".join(top_factors(status.risk, limit=None))
        lines.append(
            f"risk: {status.risk.score} ({status.risk.level.value})"
            + (f": {escape(factors)}" if factors else "")
        )
    approved = [a.approver for a in status.approvals if a.decision == "approve"]
    rejected = [a.approver for a in status.approvals if a.decision == "reject"]
    if status.approvals_required or status.approvals:
        line = (
            f"approvals: {len(approved)} of {status.approvals_required}"
            f" ({escape(', '.join(approved)) or 'none yet'})"
        )
        if rejected:
            line += f"; rejected by {escape(', '.join(rejected))}"
        if status.signature_required:
            line += "; Part 11 signatures required"
        lines.append(line)
    if status.outcome is not None:
        lines.append(
            f"outcome: {status.outcome.value}"
            + (f": {escape(status.cause)}" if status.cause else "")
        )
    return "\n".join(lines)
