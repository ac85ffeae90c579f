"""Domain pre-deployment checks: the business's own reasons not to deploy now.

Three rules, each configured per app in apps.yaml and each reported as a `DomainCheck` that the
workflow records in the timeline:

- freeze window (finance): inside one of the calendar's freeze windows a deployment to a
  `freeze_environments` environment (production by default) is blocked, unless the request
  carries an emergency override; then it needs `emergency_min_approvals` (at least two) distinct
  approvals. Market hours and auction windows raise the risk score (zdp.risk).
- work in progress (pharma): the engine asks the running version (`work_in_progress.path`)
  whether a batch is in progress on the line. Work in progress raises the risk score and blocks
  a deployment to `block_environments`. When no live version answers, those are blocked too.
- validation (pharma): a release to an environment with `requires_validation` must name its
  validation document (IQ/OQ/PQ, approved), or it is refused at verify.

The freeze and validation rules are pure. The work-in-progress rule does I/O through an
`AppQuery`, so it runs in the risk activity, never in workflow code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import httpx

from zdp.compliance.esign import verify_validation
from zdp.config import AppConfig, WorkInProgressCheck
from zdp.errors import ZdpError
from zdp.models import ApproverIdentity, DomainCheck, ReleaseManifest, RiskFactor


class AppQuery(Protocol):
    """Read a JSON document from one endpoint of a running version."""

    async def get_json(self, endpoint: str, path: str, timeout: float) -> Any: ...


class HttpAppQuery:
    """GET over HTTP; any transport error, non-200 answer or non-JSON body is a ZdpError."""

    async def get_json(self, endpoint: str, path: str, timeout: float) -> Any:
        url = endpoint.rstrip("/") + path
        try:
            async with httpx.AsyncClient(timeout=timeout) as client:
                answer = await client.get(url)
        except httpx.HTTPError as err:
            raise ZdpError(f"{url}: {type(err).__name__} {err}".strip()) from None
        if answer.status_code != 200:
            raise ZdpError(f"{url} answered HTTP {answer.status_code}")
        try:
            return answer.json()
        except ValueError:
            raise ZdpError(f"{url} did not answer JSON") from None


# --------------------------------------------------------------------------- freeze windows


@dataclass(frozen=True)
class FreezeOutcome:
    check: DomainCheck
    approvals_floor: int  # at least this many approvals (0: no floor from the freeze)


def freeze_check(
    app: AppConfig, environment: str, at: datetime, emergency_override: str | None
) -> FreezeOutcome:
    """Is `at` inside a freeze window that binds `environment`? Blocked unless overridden."""
    calendar = app.calendar
    window = calendar.freeze_at(at) if calendar else None
    if calendar is None or window is None:
        detail = "no business calendar" if calendar is None else "outside every freeze window"
        return FreezeOutcome(DomainCheck(name="freeze_window", passed=True, detail=detail), 0)
    until = f"until {window.end.isoformat()}"
    if environment not in calendar.freeze_environments:
        detail = f"inside freeze window '{window.reason}' ({until}); it does not bind {environment}"
        return FreezeOutcome(DomainCheck(name="freeze_window", passed=True, detail=detail), 0)
    if emergency_override is None:
        detail = (
            f"{environment} is frozen: '{window.reason}' {until}; deploy after it, or give an "
            f"emergency override reason (needs {calendar.emergency_min_approvals} approvals)"
        )
        return FreezeOutcome(
            DomainCheck(name="freeze_window", passed=False, detail=detail, blocking=True), 0
        )
    detail = (
        f"inside freeze window '{window.reason}' ({until}); emergency override: "
        f"{emergency_override!r}; needs {calendar.emergency_min_approvals} distinct approvals"
    )
    return FreezeOutcome(
        DomainCheck(name="freeze_window", passed=True, detail=detail),
        calendar.emergency_min_approvals,
    )


# --------------------------------------------------------------------------- work in progress


@dataclass(frozen=True)
class WorkInProgressOutcome:
    check: DomainCheck
    factor: RiskFactor


async def work_in_progress_check(
    check: WorkInProgressCheck | None,
    environment: str,
    live_endpoints: Sequence[str],
    query: AppQuery,
) -> WorkInProgressOutcome:
    """Ask the live version for its work in progress; see the module docstring for the rule."""
    if check is None:
        detail = "no work-in-progress check configured for this app"
        return WorkInProgressOutcome(
            DomainCheck(name="work_in_progress", passed=True, detail=detail),
            RiskFactor(name="work_in_progress", detail=detail, points=0),
        )
    blocks = environment in check.block_environments
    if not live_endpoints:
        detail = f"no live version to ask: nothing can be in progress on it ({check.path})"
        return WorkInProgressOutcome(
            DomainCheck(name="work_in_progress", passed=True, detail=detail),
            RiskFactor(name="work_in_progress", detail=detail, points=0),
        )
    errors: list[str] = []
    for endpoint in live_endpoints:
        try:
            answer = await query.get_json(endpoint, check.path, check.timeout_seconds)
            items = _items(answer, check)
        except ZdpError as err:
            errors.append(str(err))
            continue
        return _judge_items(items, check, environment, blocks, endpoint)
    detail = f"no live version answered {check.path}: {'; '.join(errors)}"
    if blocks:
        detail = (
            f"cannot confirm that no {check.noun} is in progress ({detail}); "
            f"a deployment to {environment} waits until the running version answers"
        )
    return WorkInProgressOutcome(_blocking_check(check, detail, blocks), _factor(check, detail))


def _items(answer: Any, check: WorkInProgressCheck) -> list[str]:
    raw = answer.get(check.field) if isinstance(answer, dict) else None
    if not isinstance(raw, list):
        raise ZdpError(f"answer of {check.path} has no list '{check.field}'")
    return [
        str(item.get(check.id_field, "?")) if isinstance(item, dict) else str(item) for item in raw
    ]


def _judge_items(
    items: list[str], check: WorkInProgressCheck, environment: str, blocks: bool, endpoint: str
) -> WorkInProgressOutcome:
    if not items:
        detail = f"no {check.noun} in progress (asked {endpoint}{check.path})"
        return WorkInProgressOutcome(
            DomainCheck(name="work_in_progress", passed=True, detail=detail),
            RiskFactor(name="work_in_progress", detail=detail, points=0),
        )
    noun = check.noun if len(items) == 1 else _plural(check.noun)
    listed = ", ".join(items[:10]) + (f" and {len(items) - 10} more" if len(items) > 10 else "")
    detail = f"{len(items)} {noun} in progress: {listed}"
    if blocks:
        detail = f"{detail}; a deployment to {environment} waits until none is in progress"
        if check.hint:
            detail = f"{detail} ({check.hint})"
    return WorkInProgressOutcome(_blocking_check(check, detail, blocks), _factor(check, detail))


def _blocking_check(check: WorkInProgressCheck, detail: str, blocks: bool) -> DomainCheck:
    """The check's verdict; where it blocks, how long a deployment may wait for it to clear."""
    waits = blocks and check.wait_seconds > 0
    return DomainCheck(
        name="work_in_progress",
        passed=not blocks,
        detail=detail,
        blocking=blocks,
        wait_seconds=check.wait_seconds if waits else None,
        poll_seconds=check.poll_seconds if waits else None,
    )


def _factor(check: WorkInProgressCheck, detail: str) -> RiskFactor:
    return RiskFactor(name="work_in_progress", detail=detail, points=check.points)


def _plural(noun: str) -> str:
    return f"{noun}es" if noun.endswith(("s", "sh", "ch", "x")) else f"{noun}s"


# --------------------------------------------------------------------------- validation


def validation_check(
    manifest: ReleaseManifest,
    app: AppConfig,
    environment: str,
    registry: Mapping[str, ApproverIdentity] | None = None,
) -> DomainCheck:
    """A release to a `requires_validation` (or part11) environment must name an approved
    IQ/OQ/PQ validation record, approved by a Part 11 e-signature of a registered validation
    approver who did not author the release. With `registry` None (a client without the
    approver registry) only the signature's presence is checked; the worker checks it all."""
    env = app.environments.get(environment)
    if env is None or not (env.requires_validation or "part11" in env.compliance_profiles):
        return DomainCheck(
            name="validation", passed=True, detail=f"{environment} does not require validation"
        )
    ref = manifest.validation
    where = f"{manifest.app} {manifest.version} to {environment}"
    if ref is None:
        return DomainCheck(
            name="validation",
            passed=False,
            blocking=True,
            detail=(
                f"{where} needs its validation status: the release names no validation "
                "document (zdp release create --validation-doc ID)"
            ),
        )
    missing = [q for q in ("IQ", "OQ", "PQ") if q not in ref.qualifications]
    if ref.status != "approved" or missing:
        problem = f"is {ref.status}" if ref.status != "approved" else f"lacks {'/'.join(missing)}"
        return DomainCheck(
            name="validation",
            passed=False,
            blocking=True,
            detail=f"{where}: validation document {ref.document_id} {problem}",
        )
    allowed = list(env.validation_approvers or env.approvers)
    if registry is None:
        refusal = (
            None
            if ref.signature is not None
            else (
                "it is not signed: a validation approver signs it with "
                "`zdp release approve-validation` before the release is signed"
            )
        )
        signed_by = "signed (signature checked by the worker)"
    else:
        manifestation, refusal = verify_validation(manifest, dict(registry), allowed)
        signed_by = manifestation.line() if manifestation else ""
    if refusal is not None:
        return DomainCheck(
            name="validation",
            passed=False,
            blocking=True,
            detail=f"{where}: validation document {ref.document_id}: {refusal}",
        )
    return DomainCheck(
        name="validation",
        passed=True,
        detail=f"covered by validation document {ref.document_id} (IQ/OQ/PQ approved, {signed_by})",
    )
