"""Client operations on deployments: start, decide, steer, and read status and timeline.

The CLI, the Slack bot, CI and tests all go through here, so every caller gets the same
errors: a deployment already in progress, an unknown deployment, a refused request, each one
line in words. After a workflow closes, status and timeline come from its history, so they
need no running worker.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import BaseModel
from temporalio.api.enums.v1 import EventType
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from zdp.compliance import identity
from zdp.compliance.esign import sign_approval
from zdp.errors import ZdpError
from zdp.models import (
    TASK_QUEUE,
    AbortInput,
    ApprovalInput,
    ApprovalSignature,
    AuditAnchor,
    AuditReceipt,
    Channel,
    DeploymentRequest,
    DeploymentResult,
    DeploymentStatus,
    Outcome,
    Phase,
    PromoteInput,
    RequestAction,
    SignedApproval,
    SignedRequest,
    Strategy,
    TimelineEvent,
    deployment_id,
)
from zdp.temporal import SA_APP, SA_ENVIRONMENT, SA_OUTCOME, SA_PHASE, SA_STRATEGY, SA_VERSION

WORKFLOW = "DeploymentWorkflow"


class DeploymentInProgress(ZdpError):
    """A deployment of this app and environment is already running."""


class DeploymentNotFound(ZdpError):
    """No deployment with that id exists in this namespace."""


class RequestRefused(ZdpError):
    """The workflow refused an approval, rejection or promotion; the message says why."""


def _claimed_version(request: DeploymentRequest) -> str:
    """The version the envelope claims, for the Temporal UI's summary only: the workflow
    verifies the signature before trusting anything in it."""
    try:
        statement = json.loads(base64.b64decode(request.release.payload))
        return str(statement["predicate"]["version"])
    except (ValueError, KeyError, TypeError):
        return "(unreadable release)"


async def start_deployment(
    client: Client, request: DeploymentRequest, task_queue: str = TASK_QUEUE
) -> WorkflowHandle[Any, DeploymentResult]:
    """Start the workflow `deploy-<app>-<environment>`; refused if one is already running."""
    workflow_id = deployment_id(request.app, request.environment)
    try:
        return await client.start_workflow(
            WORKFLOW,
            request,
            id=workflow_id,
            task_queue=task_queue,
            result_type=DeploymentResult,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(SA_APP, request.app),
                    SearchAttributePair(SA_ENVIRONMENT, request.environment),
                    SearchAttributePair(SA_STRATEGY, request.strategy.value),
                    SearchAttributePair(SA_PHASE, Phase.verify.value),
                ]
            ),
            static_summary=(
                f"{request.app} {_claimed_version(request)} → {request.environment} "
                f"({request.strategy.value})"
            ),
            static_details=(
                f"Started by **{request.initiator}**"
                + (f" · change `{request.change_ref}`" if request.change_ref else "")
                + (f"\n\n{request.reason}" if request.reason else "")
            ),
        )
    except WorkflowAlreadyStartedError:
        raise DeploymentInProgress(
            f"deployment already in progress: {workflow_id} (see `zdp status {workflow_id}`)"
        ) from None


def handle_for(client: Client, workflow_id: str) -> WorkflowHandle[Any, DeploymentResult]:
    return client.get_workflow_handle(workflow_id, result_type=DeploymentResult)


def _run_handle(
    client: Client, workflow_id: str, run_id: str | None
) -> WorkflowHandle[Any, DeploymentResult]:
    """The deployment's latest run (through `handle_for`), or exactly `run_id`."""
    if run_id is None:
        return handle_for(client, workflow_id)
    return client.get_workflow_handle(workflow_id, run_id=run_id, result_type=DeploymentResult)


async def _update(
    client: Client, workflow_id: str, name: str, arg: Any, run_id: str | None = None
) -> str:
    """Send the update to the deployment's current run, or to `run_id` exactly."""
    handle = client.get_workflow_handle(workflow_id, run_id=run_id, result_type=DeploymentResult)
    try:
        result = await handle.execute_update(name, arg, result_type=str)
    except WorkflowUpdateFailedError as err:
        raise RequestRefused(_failure_message(err)) from None
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            finished = await _finished(handle)
            if finished is not None:
                raise RequestRefused(
                    f"deployment {workflow_id} has finished ({finished}); there is nothing to "
                    f"{name}"
                ) from None
        raise _rpc_error(err, workflow_id) from None
    return str(result)


async def _finished(handle: WorkflowHandle[Any, Any]) -> str | None:
    """How a deployment that exists but no longer runs ended (its outcome); None otherwise."""
    try:
        described = await handle.describe()
    except RPCError:
        return None
    if described.status is None or described.status == WorkflowExecutionStatus.RUNNING:
        return None
    outcome = described.typed_search_attributes.get(SA_OUTCOME)
    return outcome or described.status.name.lower()


async def run_ended(client: Client, workflow_id: str, run_id: str) -> str | None:
    """How this run of the deployment ended (its outcome), "unknown" when no such run exists;
    None while it runs."""
    handle = client.get_workflow_handle(workflow_id, run_id=run_id)
    try:
        await handle.describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return "unknown run"
        raise _rpc_error(err, workflow_id) from None
    return await _finished(handle)


async def run_status(client: Client, workflow_id: str, run_id: str) -> DeploymentStatus:
    """The status of exactly this run (it must still be running)."""
    handle = client.get_workflow_handle(workflow_id, run_id=run_id)
    try:
        return await handle.query("status", result_type=DeploymentStatus)
    except RPCError as err:
        raise _rpc_error(err, workflow_id) from None


async def decide(
    client: Client,
    workflow_id: str,
    kind: Literal["approve", "reject"],
    approver: str,
    reason: str | None = None,
    signature: ApprovalSignature | None = None,
    channel: Channel = "api",
    proof: ApprovalSignature | None = None,
    run_id: str | None = None,
) -> str:
    """The `approve` or `reject` update (to `run_id` exactly, when given); RequestRefused
    carries the workflow's reason (a refusal is recorded in the deployment's timeline and
    audit log)."""
    decision = ApprovalInput(
        approver=approver, reason=reason, signature=signature, channel=channel, proof=proof
    )
    return await _update(client, workflow_id, kind, decision, run_id)


async def approve(
    client: Client,
    workflow_id: str,
    approver: str,
    reason: str | None = None,
    signature: ApprovalSignature | None = None,
    channel: Channel = "api",
    proof: ApprovalSignature | None = None,
    run_id: str | None = None,
) -> str:
    return await decide(
        client, workflow_id, "approve", approver, reason, signature, channel, proof, run_id
    )


async def reject(
    client: Client,
    workflow_id: str,
    approver: str,
    reason: str | None = None,
    signature: ApprovalSignature | None = None,
    channel: Channel = "api",
    proof: ApprovalSignature | None = None,
    run_id: str | None = None,
) -> str:
    return await decide(
        client, workflow_id, "reject", approver, reason, signature, channel, proof, run_id
    )


async def sign_request(
    client: Client,
    workflow_id: str,
    action: RequestAction,
    actor: str,
    channel: Channel,
    key: Ed25519PrivateKey,
    *,
    attested_by: str | None = None,
    via: dict[str, str] | None = None,
    run_id: str | None = None,
) -> ApprovalSignature:
    """`actor`'s signed request (or a bot's attestation for `actor`), bound to the running
    deployment's run id (or `run_id`) and release digest and dated now: it proves who sent
    it, and is good for this one request only."""
    desc = await client.get_workflow_handle(workflow_id, run_id=run_id).describe()
    run = client.get_workflow_handle(workflow_id, run_id=desc.run_id)
    try:
        current = await run.query("status", result_type=DeploymentStatus)
    except RPCError as err:
        raise _rpc_error(err, workflow_id) from None
    payload = SignedRequest(
        action=action,
        actor=actor,
        deployment_id=workflow_id,
        run_id=desc.run_id,
        release_digest=current.release_digest or "",
        channel=channel,
        signed_at=datetime.now(UTC),
        attested_by=attested_by,
        via=via or {},
    )
    return identity.sign_request(key, payload)


def sign_start(request: DeploymentRequest, key: Ed25519PrivateKey) -> DeploymentRequest:
    """The request with its initiator's signed start: bound to the deployment id, the release
    digest the envelope claims and the digest of the whole request (a start has no run id
    yet; the worker lets one run use it)."""
    from zdp.acceptance import claimed_manifest

    payload = SignedRequest(
        action="start",
        actor=request.initiator,
        deployment_id=deployment_id(request.app, request.environment),
        run_id="",
        release_digest=claimed_manifest(request.release).artifact.digest,
        request_digest=identity.request_digest(request),
        channel=request.channel,
        signed_at=datetime.now(UTC),
    )
    return request.model_copy(update={"proof": identity.sign_request(key, payload)})


async def sign_decision(
    client: Client,
    workflow_id: str,
    approver: str,
    decision: Literal["approve", "reject", "promote"],
    meaning: str,
    key: Ed25519PrivateKey,
) -> ApprovalSignature:
    """A Part 11 signature on this decision, bound to the running deployment (its run id and
    release digest) and dated now; the workflow checks every field before accepting it."""
    current = await status(client, workflow_id)
    if current.release_digest is None:
        raise RequestRefused(f"{workflow_id} has no verified release to sign for yet")
    printed = current.printed_names.get(approver)
    if printed is None:
        raise RequestRefused(
            f"{approver} has no registered signing identity for {workflow_id}"
            + ("" if current.signature_required else " (this deployment needs no signature)")
        )
    desc = await handle_for(client, workflow_id).describe()
    payload = SignedApproval(
        deployment_id=workflow_id,
        run_id=desc.run_id,
        release_digest=current.release_digest,
        decision=decision,
        meaning=meaning,
        signer=approver,
        printed_name=printed,
        signed_at=datetime.now(UTC),
    )
    return sign_approval(key, payload)


async def promote(
    client: Client,
    workflow_id: str,
    approver: str,
    reason: str | None = None,
    channel: Channel = "api",
    proof: ApprovalSignature | None = None,
    signature: ApprovalSignature | None = None,
) -> str:
    request = PromoteInput(
        approver=approver, reason=reason, channel=channel, proof=proof, signature=signature
    )
    return await _update(client, workflow_id, "promote", request)


async def send_signal(client: Client, workflow_id: str, name: str, arg: Any = None) -> None:
    """pause, resume, abort (with AbortInput), approve_signal, reject_signal."""
    handle = handle_for(client, workflow_id)
    try:
        if arg is None:
            await handle.signal(name)
        else:
            await handle.signal(name, arg)
    except RPCError as err:
        raise _rpc_error(err, workflow_id) from None


async def control(
    client: Client,
    workflow_id: str,
    name: Literal["pause", "resume", "abort"],
    actor: str,
    reason: str | None = None,
    channel: Channel = "api",
    proof: ApprovalSignature | None = None,
) -> None:
    """pause (hold at the current weight after the running gate), resume, or abort; the
    timeline names `actor`, or records why the request was refused."""
    request = AbortInput(actor=actor, reason=reason, channel=channel, proof=proof)
    await send_signal(client, workflow_id, name, request)


async def pause(client: Client, workflow_id: str, actor: str, reason: str | None = None) -> None:
    await control(client, workflow_id, "pause", actor, reason)


async def resume(client: Client, workflow_id: str, actor: str, reason: str | None = None) -> None:
    await control(client, workflow_id, "resume", actor, reason)


async def abort(client: Client, workflow_id: str, actor: str, reason: str | None = None) -> None:
    await control(client, workflow_id, "abort", actor, reason)


async def is_running(client: Client, workflow_id: str, run_id: str | None = None) -> bool:
    """Whether the deployment's latest run (or run `run_id`) is running."""
    try:
        desc = await _run_handle(client, workflow_id, run_id).describe()
    except RPCError as err:
        raise _rpc_error(err, workflow_id, run_id) from None
    return desc.status == WorkflowExecutionStatus.RUNNING


async def status(client: Client, workflow_id: str, run_id: str | None = None) -> DeploymentStatus:
    """Live status from the workflow while it runs; its final status from history after. Of
    the latest run, or of exactly `run_id` (an earlier run: the one a rollback went back to)."""
    handle = _run_handle(client, workflow_id, run_id)
    if await is_running(client, workflow_id, run_id):
        return await handle.query("status", result_type=DeploymentStatus)
    closed = await closed_result(client, workflow_id, run_id)
    return closed.status


async def wait_until(
    client: Client,
    workflow_id: str,
    condition: Callable[[DeploymentStatus], bool],
    timeout: float = 300.0,
    every: float = 0.05,
    stop_on_outcome: bool = True,
) -> DeploymentStatus:
    """Poll the status until `condition` holds, the deployment has an outcome (unless
    `stop_on_outcome` is off: an earlier run of the id may have one), or `timeout` seconds
    pass (a wall-clock bound, so a busy machine gets the same time, not fewer polls); the last
    status either way. A deployment that does not exist yet is waited for too."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            current: DeploymentStatus | None = await status(client, workflow_id)
        except DeploymentNotFound:
            current = None
        ended = stop_on_outcome and current is not None and current.outcome is not None
        if current is not None and (condition(current) or ended):
            return current
        if loop.time() >= deadline:
            if current is None:
                raise DeploymentNotFound(f"no deployment {workflow_id} after {timeout:.0f} s")
            return current
        await asyncio.sleep(every)


async def timeline(
    client: Client, workflow_id: str, run_id: str | None = None
) -> list[TimelineEvent]:
    """The latest run's timeline (or run `run_id`'s): live while it runs, from history after."""
    handle = _run_handle(client, workflow_id, run_id)
    if await is_running(client, workflow_id, run_id):
        return list(await handle.query("timeline", result_type=list[TimelineEvent]))
    closed = await closed_result(client, workflow_id, run_id)
    return closed.timeline


async def wait_result(client: Client, workflow_id: str) -> DeploymentResult:
    try:
        return await handle_for(client, workflow_id).result()
    except RPCError as err:
        raise _rpc_error(err, workflow_id) from None


async def closed_result(
    client: Client, workflow_id: str, run_id: str | None = None
) -> DeploymentResult:
    """The result recorded in the closed workflow's history; rebuilt from events if it failed.
    Of the latest run, or of exactly `run_id`.

    Read from the run that `describe` found closed, never the latest run: a new deployment of
    the same app and environment may start in between, and waiting for its result would block
    until it ends (a caller waiting to approve it would wait for ever)."""
    try:
        desc = await _run_handle(client, workflow_id, run_id).describe()
    except RPCError as err:
        raise _rpc_error(err, workflow_id, run_id) from None
    handle = client.get_workflow_handle(
        workflow_id, run_id=desc.run_id, result_type=DeploymentResult
    )
    if desc.status == WorkflowExecutionStatus.COMPLETED:
        return await handle.result(follow_runs=False)
    history = await handle.fetch_history()
    events = _timeline_from_events(history.events)
    attrs = desc.typed_search_attributes
    app, env = attrs.get(SA_APP) or "?", attrs.get(SA_ENVIRONMENT) or "?"
    cause = f"workflow {desc.status.name.lower() if desc.status else 'closed'} without a result"
    return DeploymentResult(
        outcome=Outcome.failed,
        cause=cause,
        status=DeploymentStatus(
            deployment_id=workflow_id,
            app=app,
            environment=env,
            version=None,
            strategy=Strategy(attrs.get(SA_STRATEGY) or "canary"),
            phase=Phase.done,
            outcome=Outcome.failed,
            cause=cause,
        ),
        timeline=events,
    )


def _timeline_from_events(events: Any) -> list[TimelineEvent]:
    """A coarse timeline for a workflow that closed without a result (terminated, timed out)."""
    out: list[TimelineEvent] = []
    for event in events:
        at = event.event_time.ToDatetime().replace(tzinfo=None)
        kind = EventType.Name(event.event_type).removeprefix("EVENT_TYPE_").lower()
        detail = ""
        if event.HasField("activity_task_scheduled_event_attributes"):
            detail = event.activity_task_scheduled_event_attributes.activity_type.name
        elif event.HasField("workflow_execution_signaled_event_attributes"):
            detail = event.workflow_execution_signaled_event_attributes.signal_name
        elif event.HasField("workflow_execution_terminated_event_attributes"):
            detail = event.workflow_execution_terminated_event_attributes.reason
        if kind.startswith("workflow_task"):
            continue
        out.append(
            TimelineEvent(at=at, phase=Phase.done, kind=kind, message=f"{kind} {detail}".strip())
        )
    return out


def _failure_message(err: WorkflowUpdateFailedError) -> str:
    cause: BaseException | None = err.cause
    while cause is not None and not isinstance(cause, ApplicationError):
        cause = cause.__cause__
    return cause.message if isinstance(cause, ApplicationError) else str(err)


def _rpc_error(err: RPCError, workflow_id: str, run_id: str | None = None) -> ZdpError:
    if err.status == RPCStatusCode.NOT_FOUND:
        if run_id is not None:
            return DeploymentNotFound(
                f"no run {run_id} of deployment {workflow_id} (`zdp history` lists its runs)"
            )
        return DeploymentNotFound(f"no deployment {workflow_id} (check the id and namespace)")
    return ZdpError(f"Temporal refused the request for {workflow_id}: {err.message}")


class RunSummary(BaseModel):
    """One run of a deployment, as `zdp history` lists it (from Temporal's visibility)."""

    run_id: str
    started_at: datetime
    closed_at: datetime | None = None
    status: str  # running, completed, failed, terminated, …
    version: str | None = None
    strategy: str | None = None
    outcome: str | None = None

    @property
    def running(self) -> bool:
        return self.status == "running"


async def runs(client: Client, workflow_id: str, limit: int = 50) -> list[RunSummary]:
    """The runs of deployment `workflow_id`, newest first (at most `limit`): each a deployment
    of the app to the environment. DeploymentNotFound when it has none."""
    found: list[RunSummary] = []
    try:
        async for wf in client.list_workflows(f"WorkflowId = '{_quoted(workflow_id)}'"):
            attrs = wf.typed_search_attributes
            state = wf.status.name.lower() if wf.status is not None else "unknown"
            found.append(
                RunSummary(
                    run_id=wf.run_id,
                    started_at=wf.start_time,
                    closed_at=wf.close_time,
                    status=state,
                    version=attrs.get(SA_VERSION),
                    strategy=attrs.get(SA_STRATEGY),
                    outcome=attrs.get(SA_OUTCOME),
                )
            )
    except RPCError as err:
        raise _rpc_error(err, workflow_id) from None
    if not found:
        raise DeploymentNotFound(f"no deployment {workflow_id} (check the id and namespace)")
    found.sort(key=lambda r: r.started_at, reverse=True)
    return found[:limit]


async def resolve_run(client: Client, workflow_id: str, selector: str | None) -> str | None:
    """The run id a run selector names: None (the latest run) stays None; `promoted` is the
    latest run that ended promoted (what a rollback since went back to); anything else is a
    run id, or a unique part of one (at least 4 characters) as `zdp history` prints them.
    Run ids begin with the time they were made, so their last characters tell runs apart."""
    if selector is None:
        return None
    wanted = selector.strip().lower()
    if len(wanted) < 4:
        raise ZdpError(
            f"--run {selector!r}: give a run id or at least 4 characters of one (`zdp history` "
            "lists them), or `promoted`"
        )
    listed = await runs(client, workflow_id, limit=1000)
    if wanted == "promoted":
        for run in listed:
            if run.outcome == Outcome.promoted.value:
                return run.run_id
        raise DeploymentNotFound(f"no run of {workflow_id} ended promoted")
    exact = [r.run_id for r in listed if r.run_id.lower() == wanted]
    matches = exact or [r.run_id for r in listed if wanted in r.run_id.lower()]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        # Visibility may lag a run that just started: a whole run id is tried as it is.
        if len(wanted) == 36:
            return selector.strip()
        raise DeploymentNotFound(
            f"no run {selector} of deployment {workflow_id} (`zdp history` lists its runs)"
        )
    raise ZdpError(
        f"--run {selector} is ambiguous for {workflow_id}: {len(matches)} run ids contain it; "
        "give more of the id (its last characters tell runs apart)"
    )


def _quoted(value: str) -> str:
    """A value for a visibility query's single-quoted string."""
    return value.replace("\\", "\\\\").replace("'", "\\'")


async def cached_health(
    client: Client, workflow_id: str, run_id: str | None = None
) -> dict[str, Any]:
    """The latest probe result per endpoint of this deployment, from the health-state cache.

    Nothing is probed: the gates wrote these. Shared between processes only when the cache is
    Redis (ZDP_REDIS_URL); the in-memory cache of another process is not visible here.
    """
    from zdp.health.cache import health_cache_from_env

    endpoints: list[str] = []
    for event in await timeline(client, workflow_id, run_id):
        if event.kind == "provisioned":
            endpoints.extend(str(e) for e in event.data.get("endpoints", []))
    cache = health_cache_from_env()
    try:
        return dict(await cache.get_many(endpoints)) if endpoints else {}
    finally:
        await cache.aclose()


async def audit_anchors(client: Client, concurrency: int = 8) -> list[tuple[str, AuditAnchor]]:
    """Every audit-log anchor in the histories of this namespace's deployments, running or
    closed: the signed checkpoints their `record_audit` activities returned. Read from the
    histories themselves, so no worker needs to run. Each comes with where it was found."""
    runs = [
        (wf.id, wf.run_id) async for wf in client.list_workflows(f"WorkflowType = '{WORKFLOW}'")
    ]
    gate = asyncio.Semaphore(concurrency)

    async def scan(workflow_id: str, run_id: str) -> list[tuple[str, AuditAnchor]]:
        async with gate:
            history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        source = f"the Temporal history of {workflow_id} (run {run_id[:8]})"
        activity_of: dict[int, str] = {}
        found: list[tuple[str, AuditAnchor]] = []
        for event in history.events:
            if event.HasField("activity_task_scheduled_event_attributes"):
                attrs = event.activity_task_scheduled_event_attributes
                activity_of[event.event_id] = attrs.activity_type.name
            elif event.HasField("activity_task_completed_event_attributes"):
                done = event.activity_task_completed_event_attributes
                if activity_of.get(done.scheduled_event_id) != "record_audit":
                    continue
                (receipt,) = await client.data_converter.decode(
                    done.result.payloads, [AuditReceipt]
                )
                if isinstance(receipt, AuditReceipt) and receipt.anchor is not None:
                    found.append((source, receipt.anchor))
        return found

    scanned = await asyncio.gather(*(scan(w, r) for w, r in runs))
    return [anchor for group in scanned for anchor in group]


async def live_gate(
    client: Client, workflow_id: str, run_id: str | None = None
) -> dict[str, float] | None:
    """The running health gate's latest figures (what it heartbeats: probes, errors, real
    requests and failures, seconds into the bake), or None when no gate runs now."""
    handle = _run_handle(client, workflow_id, run_id)
    try:
        described = await handle.describe()
    except RPCError as err:
        raise _rpc_error(err, workflow_id, run_id) from None
    if described.status != WorkflowExecutionStatus.RUNNING:
        # A closed run can still list the gate it cancelled on its way out (a rollback does
        # not wait for the cancellation): no gate runs for it any more.
        return None
    for pending in described.raw_description.pending_activities:
        if pending.activity_type.name != "run_health_gate":
            continue
        payloads = pending.heartbeat_details.payloads
        if not payloads:
            return {}
        decoded = await client.data_converter.decode(payloads)
        figures = decoded[-1] if decoded else {}
        return {str(k): float(v) for k, v in dict(figures).items()}
    return None


def containment_seconds(events: list[TimelineEvent]) -> float | None:
    """From the failing gate verdict to the traffic back on what served before (the first
    `compensated` traffic event after it), as the timeline recorded them; None without both."""
    failed: datetime | None = None
    for event in events:
        if event.kind == "gate_verdict" and event.data.get("result") == "fail" and not failed:
            failed = event.at
        elif failed and event.kind == "compensated" and event.data.get("kind") == "traffic":
            return max(0.0, (event.at - failed).total_seconds())
    return None


def gate_line(figures: dict[str, float]) -> str:
    """One line of a running gate's figures, for people."""
    parts = [f"{figures.get('elapsed_s', 0.0):.1f} s into the bake"]
    if "samples" in figures:
        parts.append(
            f"{figures['samples']:.0f} probes, {figures.get('errors', 0):.0f} failed "
            f"({figures.get('error_ratio', 0.0):.1%})"
        )
    if figures.get("traffic_requests"):
        parts.append(
            f"{figures['traffic_requests']:.0f} real requests, "
            f"{figures.get('traffic_failures', 0):.0f} failed "
            f"({figures.get('traffic_error_ratio', 0.0):.1%})"
        )
    return ", ".join(parts)
