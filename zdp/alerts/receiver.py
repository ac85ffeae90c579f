"""Acting on Alertmanager's notifications: each firing alert the policy maps to `pause` or
`abort` is sent, signed by the receiver's identity, to the running deployment its `app` and
`environment` labels name, once.

For each alert, in order: resolved, unmatched, refused (no app/environment) and already acted
on (the same fingerprint and start, `SeenAlerts`) do nothing and are logged. Otherwise the
deployment `deploy-<app>-<environment>` is looked up; none running is logged too (and not
remembered: a deployment started while the alert still fires is acted on when Alertmanager
repeats it). A running one gets the control with the receiver as its actor and the alert as its
reason, so its timeline and, through the worker, the audit log name both; the receiver also
appends its own audit entry (workflow id `alert-receiver`: the alert's labels, fingerprint and
the run it went to). An audit append that fails does not hold the control back: stopping a
burning canary comes first, and the deployment's own record still names the alert.

When Temporal cannot be reached (or does not answer within `call_timeout`), the rest of the
notification is left and `TemporalUnreachable` raised: the HTTP layer answers 503 and
Alertmanager sends it again; alerts acted on before are remembered and not sent twice.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from zdp import deployments
from zdp.alerts.auth import ReceiverIdentity
from zdp.alerts.policy import AlertPolicy, Judgement, WebhookAlert, WebhookPayload, judge
from zdp.alerts.seen import SeenAlerts
from zdp.compliance.audit.log import AuditEvent, AuditStore, open_store
from zdp.errors import ZdpError
from zdp.models import Channel

log = logging.getLogger("zdp.alerts")

AUDIT_WORKFLOW_ID = "alert-receiver"
CHANNEL: Channel = "api"
T = TypeVar("T")

Outcome = Literal["acted", "duplicate", "ignored", "refused", "resolved", "no_deployment"]


class TemporalUnreachable(ZdpError):
    """Temporal did not answer: the notification is to be sent again (HTTP 503)."""


class AlertOutcome(BaseModel):
    """What the receiver did with one alert (the HTTP answer lists one per alert)."""

    alertname: str
    fingerprint: str
    outcome: Outcome
    action: Literal["pause", "abort"] | None = None
    deployment: str | None = None
    run_id: str | None = None
    detail: str


@dataclass
class AlertReceiver:
    """The policy, the memory of alerts acted on, the identity it acts as, and Temporal."""

    client: Client
    policy: AlertPolicy
    seen: SeenAlerts
    identity: ReceiverIdentity
    home: Path
    call_timeout: float = 10.0

    def __post_init__(self) -> None:
        # One notification at a time: two deliveries of one alert (an HA pair of
        # Alertmanagers, a retry racing the original) must not both act.
        self._lock = asyncio.Lock()
        self._audit: AuditStore | None = None

    async def receive(self, payload: WebhookPayload) -> list[AlertOutcome]:
        """Judge and act on every alert of the notification, in order (see the module)."""
        outcomes: list[AlertOutcome] = []
        async with self._lock:
            for alert in payload.alerts:
                outcome = await self._one(alert)
                _log(outcome)
                outcomes.append(outcome)
        return outcomes

    async def _one(self, alert: WebhookAlert) -> AlertOutcome:
        judgement = judge(alert, self.policy)
        if judgement.verdict != "act":
            return _outcome(alert, judgement.verdict, judgement.why, judgement.deployment)
        done = self.seen.when(alert.key)
        if done is not None:
            return _outcome(
                alert, "duplicate", f"already acted on this alert ({done})", judgement.deployment
            )
        return await self._act(alert, judgement)

    async def _act(self, alert: WebhookAlert, judgement: Judgement) -> AlertOutcome:
        deployment = judgement.deployment
        action = judgement.action
        assert deployment is not None and action is not None and judgement.reason is not None
        run_id = await self._running_run(deployment)
        if run_id is None:
            return _outcome(
                alert,
                "no_deployment",
                f"{judgement.why}, but no deployment {deployment} is running",
                deployment,
            )
        try:
            proof = await self._call(
                deployments.sign_request(
                    self.client,
                    deployment,
                    action,
                    self.identity.user,
                    CHANNEL,
                    self.identity.key,
                    run_id=run_id,
                ),
                deployment,
            )
            await self._call(
                deployments.control(
                    self.client,
                    deployment,
                    action,
                    self.identity.user,
                    judgement.reason,
                    CHANNEL,
                    proof,
                ),
                deployment,
            )
        except deployments.DeploymentNotFound:
            return _outcome(alert, "no_deployment", f"{deployment} ended meanwhile", deployment)
        except TemporalUnreachable:
            raise
        except ZdpError as err:  # the status query failed (no worker answered) or was refused
            raise TemporalUnreachable(f"cannot send the {action} to {deployment}: {err}") from None
        did = f"{action} sent to {deployment} (run {run_id})"
        try:
            self.seen.add(alert.key, did)
        except ZdpError as err:  # sent all the same; a repeat of it may be sent once more
            log.error("%s", err)
        await self._record(alert, judgement, run_id)
        return AlertOutcome(
            alertname=alert.name,
            fingerprint=alert.fingerprint,
            outcome="acted",
            action=action,
            deployment=deployment,
            run_id=run_id,
            detail=f"{did} as {self.identity.user}: {judgement.reason}",
        )

    async def _running_run(self, deployment: str) -> str | None:
        """The run id of the running deployment, None when none runs."""
        try:
            described = await self._call(
                self.client.get_workflow_handle(deployment).describe(), deployment
            )
        except deployments.DeploymentNotFound:
            return None
        if described.status != WorkflowExecutionStatus.RUNNING:
            return None
        return described.run_id

    async def _call(self, work: Awaitable[T], deployment: str) -> T:
        """One call to Temporal, bounded; TemporalUnreachable when it cannot be made."""
        try:
            return await asyncio.wait_for(work, self.call_timeout)
        except TimeoutError:
            raise TemporalUnreachable(
                f"Temporal did not answer within {self.call_timeout:g} s for {deployment} "
                "(is the server up, and a worker polling?)"
            ) from None
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                raise deployments.DeploymentNotFound(f"no deployment {deployment}") from None
            raise TemporalUnreachable(f"Temporal: {err}") from None
        except RuntimeError as err:  # the client's transport gave up
            raise TemporalUnreachable(f"Temporal: {err}") from None

    async def _record(self, alert: WebhookAlert, judgement: Judgement, run_id: str) -> None:
        """The receiver's own audit entry for a control it sent; a failure is logged only."""
        event = AuditEvent(
            event_id=f"alert/{alert.key}/{judgement.action}",
            at=datetime.now(UTC),
            kind="alert_control",
            message=(
                f"{self.identity.user} sent {judgement.action} to {judgement.deployment} "
                f"(run {run_id}): {judgement.reason}"
            ),
            actor=self.identity.user,
            data={
                "alertname": alert.name,
                "fingerprint": alert.fingerprint,
                "starts_at": alert.starts_at,
                "labels": dict(alert.labels),
                "annotations": dict(alert.annotations),
                "generator_url": alert.generator_url,
                "rule": judgement.rule.describe() if judgement.rule else None,
                "action": judgement.action,
                "deployment_id": judgement.deployment,
                "run_id": run_id,
                "key_fingerprint": self.identity.fingerprint,
            },
        )
        try:
            store = await asyncio.to_thread(self._store)
            await asyncio.to_thread(
                functools.partial(store.append, AUDIT_WORKFLOW_ID, [event], checkpoint=True)
            )
        except Exception as err:  # the control is sent; its deployment records it too
            log.error(
                "could not append the %s of %s to the audit log: %s (the deployment's own "
                "timeline and audit entries still name the alert)",
                judgement.action,
                judgement.deployment,
                err,
            )

    def _store(self) -> AuditStore:
        if self._audit is None:
            self._audit = open_store(self.home)
        return self._audit


def _outcome(
    alert: WebhookAlert, outcome: Outcome, detail: str, deployment: str | None = None
) -> AlertOutcome:
    return AlertOutcome(
        alertname=alert.name,
        fingerprint=alert.fingerprint,
        outcome=outcome,
        deployment=deployment,
        detail=detail,
    )


def _log(outcome: AlertOutcome) -> None:
    level = {"acted": logging.WARNING, "refused": logging.WARNING}.get(
        outcome.outcome, logging.INFO
    )
    log.log(
        level, "%s: alert %s (fingerprint %s): %s",
        outcome.outcome, outcome.alertname, outcome.fingerprint, outcome.detail,
    )  # fmt: skip
