"""The engine's Prometheus metrics: one registry, served by the worker (`zdp worker`).

Names follow Prometheus' conventions: the `zdp_` prefix, base units (seconds, ratios 0-1),
`_total` on counters. Label sets are bounded: app, environment, strategy, outcome, phase, slot,
result, source, kind, backend; never a deployment id or a version on a counter. One running
deployment per app and environment, so the per-deployment gauges are bounded too (Flagger's
`flagger_canary_weight`, Argo Rollouts' `rollout_info{phase}`).

Where the numbers come from:
- The workflow's timeline. Every event a deployment records passes through
  `DeploymentObserver.observe` (wired in DeploymentWorkflow). Counters and histograms move only
  when the workflow runs live, never while it replays its history (a worker taking a
  deployment over would count it twice); gauges are set during replay too, so a worker that
  took a deployment over shows where it stands.
- The activities: audit appends and their failures, evidence sealing time.

Workflow code calls these from the sandbox through `imports_passed_through`; nothing here may
raise into a workflow: `DeploymentObserver.observe` swallows its own errors.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

log = logging.getLogger("zdp.metrics")

REGISTRY = CollectorRegistry(auto_describe=True)

DEPLOYMENT = ("app", "environment")
PHASE_LABELS = (*DEPLOYMENT, "strategy", "phase")  # zdp_deployment_phase and its timestamp

DEPLOYMENTS_STARTED = Counter(
    "zdp_deployments_started_total",
    "Deployments started, by app, environment and strategy.",
    [*DEPLOYMENT, "strategy"],
    registry=REGISTRY,
)
DEPLOYMENTS = Counter(
    "zdp_deployments_total",
    "Deployments finished, by app, environment, strategy and outcome (promoted, rolled_back, "
    "rejected, expired, aborted, failed, blocked).",
    [*DEPLOYMENT, "strategy", "outcome"],
    registry=REGISTRY,
)
DEPLOYMENT_DURATION = Histogram(
    "zdp_deployment_duration_seconds",
    "From a deployment's start to its end, by app, environment, strategy and outcome.",
    [*DEPLOYMENT, "strategy", "outcome"],
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 12 * 3600),
    registry=REGISTRY,
)
PHASE = Gauge(
    "zdp_deployment_phase",
    "1 for the phase each running deployment is in (one series per running deployment; it "
    "goes when the deployment ends).",
    PHASE_LABELS,
    registry=REGISTRY,
)
PHASE_ENTERED = Gauge(
    "zdp_deployment_phase_entered_timestamp_seconds",
    "Unix time at which each running deployment entered its current phase.",
    PHASE_LABELS,
    registry=REGISTRY,
)
TRAFFIC = Gauge(
    "zdp_deployment_traffic_ratio",
    "Share of the app's traffic each slot takes (0-1), as the deployment last set it.",
    [*DEPLOYMENT, "slot"],
    registry=REGISTRY,
)
APPROVAL_DEADLINE = Gauge(
    "zdp_approval_deadline_timestamp_seconds",
    "Unix time at which a deployment waiting for approval expires (while it waits).",
    list(DEPLOYMENT),
    registry=REGISTRY,
)
APPROVAL_WAIT = Histogram(
    "zdp_approval_wait_seconds",
    "From asking for approval to the decision, by result (approved, rejected, expired, aborted).",
    [*DEPLOYMENT, "result"],
    buckets=(1, 10, 30, 60, 300, 900, 1800, 3600, 4 * 3600, 12 * 3600, 24 * 3600),
    registry=REGISTRY,
)
GATE_VERDICTS = Counter(
    "zdp_gate_verdicts_total",
    "Health-gate verdicts, by result (pass, fail, inconclusive) and source: what decided a "
    "failure (errors, latency, template), `evidence` for too little of it, `all` for a pass.",
    [*DEPLOYMENT, "result", "source"],
    registry=REGISTRY,
)
CONTAINMENT = Histogram(
    "zdp_detection_to_containment_seconds",
    "From the failing gate verdict to the traffic back on what served before.",
    list(DEPLOYMENT),
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=REGISTRY,
)
COMPENSATIONS = Counter(
    "zdp_compensations_total",
    "Compensations run during rollbacks, by kind (traffic, retire, ...).",
    [*DEPLOYMENT, "kind"],
    registry=REGISTRY,
)
AUDIT_APPENDS = Counter(
    "zdp_audit_appends_total",
    "Appends to the audit log that succeeded, by backend (file, postgres).",
    ["backend"],
    registry=REGISTRY,
)
AUDIT_EVENTS = Counter(
    "zdp_audit_events_appended_total",
    "Timeline events appended to the audit log (a retry appends nothing twice).",
    ["backend"],
    registry=REGISTRY,
)
AUDIT_FAILURES = Counter(
    "zdp_audit_append_failures_total",
    "Appends to the audit log that failed (the workflow retries them), by backend.",
    ["backend"],
    registry=REGISTRY,
)
EVIDENCE_SEAL = Histogram(
    "zdp_evidence_seal_seconds",
    "Time to seal a deployment's evidence bundle.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)

# Every metric the engine registers, by name (without `_total`/`_bucket` suffixes): what the
# monitoring rules and dashboards may name (tests/monitoring check them against this).
ENGINE_METRICS: tuple[str, ...] = tuple(
    sorted(
        m.name + ("_total" if m.type == "counter" else "")
        for m in REGISTRY.collect()
        if m.name  # every family registered above
    )
)


OUTCOMES = ("promoted", "rolled_back", "rejected", "expired", "aborted", "failed", "blocked")
VERDICT_KINDS = (
    ("pass", "all"),
    ("fail", "errors"),
    ("fail", "latency"),
    ("fail", "template"),
    ("inconclusive", "errors"),
    ("inconclusive", "latency"),
    ("inconclusive", "template"),
    ("inconclusive", "evidence"),
)
for _backend in ("file", "postgres"):
    for _counter in (AUDIT_APPENDS, AUDIT_EVENTS, AUDIT_FAILURES):
        _counter.labels(_backend)


def _ts(at: datetime) -> float:
    return at.timestamp()


@dataclass
class DeploymentObserver:
    """Turns one deployment's timeline into the metrics above. One per workflow run."""

    app: str
    environment: str
    strategy: str
    started_at: datetime | None = None
    phase: str | None = None
    approval_asked: datetime | None = None
    failed_at: datetime | None = None  # the failing gate verdict, for the containment clock
    slots: set[str] = field(default_factory=set)
    before_pause: str | None = None  # the phase an operator's pause interrupted

    def __post_init__(self) -> None:
        """Every outcome and verdict this deployment can count starts at 0, so a rule's
        increase() sees the first one (a counter series that appears with 1 has no increase)."""
        labels = (self.app, self.environment)
        for outcome in OUTCOMES:
            DEPLOYMENTS.labels(*labels, self.strategy, outcome)
        DEPLOYMENTS_STARTED.labels(*labels, self.strategy)
        for result, source in VERDICT_KINDS:
            GATE_VERDICTS.labels(*labels, result, source)

    def observe(
        self,
        kind: str,
        phase: str,
        at: datetime,
        data: dict[str, Any],
        *,
        live: bool,
        outcome: str | None = None,
        approval_deadline: datetime | None = None,
    ) -> None:
        """One timeline event. `live` is False while the workflow replays its history."""
        try:
            self._observe(kind, phase, at, data, live, outcome, approval_deadline)
        except Exception:  # metrics never break a deployment
            log.exception("metrics: could not observe %s event", kind)

    def _observe(
        self,
        kind: str,
        phase: str,
        at: datetime,
        data: dict[str, Any],
        live: bool,
        outcome: str | None,
        approval_deadline: datetime | None,
    ) -> None:
        labels = (self.app, self.environment)
        if kind == "started":
            self.started_at = at
            if live:
                DEPLOYMENTS_STARTED.labels(*labels, self.strategy).inc()
                _forget_earlier_run(self.app, self.environment)
        elif kind == "phase":
            self.before_pause = None
            self._enter(phase, at, live, outcome, approval_deadline)
        elif kind == "paused" and self.phase not in (None, "paused", "done"):
            # An operator's pause keeps the workflow's phase; the metrics show it paused.
            self.before_pause = self.phase
            self._enter("paused", at, live, outcome, None)
        elif kind == "resumed" and self.phase == "paused" and self.before_pause:
            previous, self.before_pause = self.before_pause, None
            self._enter(previous, at, live, outcome, None)
        elif kind in ("weights", "compensated") and isinstance(data.get("weights"), dict):
            self._weights(data["weights"], at, live, restored=kind == "compensated")
        if kind == "compensated" and live:
            COMPENSATIONS.labels(*labels, str(data.get("kind", "unknown"))).inc()
        elif kind == "gate_verdict":
            result = str(data.get("result", "unknown"))
            dimension = data.get("dimension")
            if result == "pass":
                source = "all"
            elif dimension:
                source = str(dimension)
            else:  # inconclusive for want of evidence; a failure from before `dimension`
                source = "evidence" if result == "inconclusive" else "unknown"
            if live:
                GATE_VERDICTS.labels(*labels, result, source).inc()
            if result == "fail" and self.failed_at is None:
                self.failed_at = at
        elif kind == "approved":
            self._approval_decided("approved", at, live)

    def _enter(
        self,
        phase: str,
        at: datetime,
        live: bool,
        outcome: str | None,
        approval_deadline: datetime | None,
    ) -> None:
        labels = (self.app, self.environment)
        if self.phase is not None:
            for gauge in (PHASE, PHASE_ENTERED):
                _remove(gauge, *labels, self.strategy, self.phase)
        if self.phase == "await_approval" and phase != "await_approval":
            result = {"rollback": "aborted", "done": outcome or "aborted"}.get(phase, "approved")
            self._approval_decided(result, at, live)
        self.phase = phase
        if phase == "done":
            self._done(at, live, outcome or "unknown")
            return
        PHASE.labels(*labels, self.strategy, phase).set(1)
        PHASE_ENTERED.labels(*labels, self.strategy, phase).set(_ts(at))
        if phase == "await_approval":
            self.approval_asked = at
            if approval_deadline is not None:
                APPROVAL_DEADLINE.labels(*labels).set(_ts(approval_deadline))

    def _approval_decided(self, result: str, at: datetime, live: bool) -> None:
        asked, self.approval_asked = self.approval_asked, None
        _remove(APPROVAL_DEADLINE, self.app, self.environment)
        if asked is not None and live:
            APPROVAL_WAIT.labels(self.app, self.environment, result).observe(
                max(0.0, (at - asked).total_seconds())
            )

    def _weights(self, weights: dict[str, Any], at: datetime, live: bool, restored: bool) -> None:
        for slot, weight in weights.items():
            self.slots.add(str(slot))
            TRAFFIC.labels(self.app, self.environment, str(slot)).set(float(weight) / 100.0)
        if restored and self.failed_at is not None:
            failed, self.failed_at = self.failed_at, None
            if live:
                CONTAINMENT.labels(self.app, self.environment).observe(
                    max(0.0, (at - failed).total_seconds())
                )

    def _done(self, at: datetime, live: bool, outcome: str) -> None:
        labels = (self.app, self.environment)
        if live:
            DEPLOYMENTS.labels(*labels, self.strategy, outcome).inc()
            if self.started_at is not None:
                DEPLOYMENT_DURATION.labels(*labels, self.strategy, outcome).observe(
                    max(0.0, (at - self.started_at).total_seconds())
                )
        _remove(APPROVAL_DEADLINE, *labels)


def _forget_earlier_run(app: str, environment: str) -> None:
    """Drop the phase and approval-deadline series an earlier run of this deployment left in this
    process. One run of an app in an environment runs at a time (its workflow id is
    deploy-<app>-<environment>), so a run starting means the earlier one ended: one that never
    reached `done` here (terminated, or finished on another worker) would otherwise show its
    last phase for good, and an alert on a phase's age would fire on it."""
    for gauge in (PHASE, PHASE_ENTERED):
        left = {
            tuple(sample.labels[name] for name in PHASE_LABELS)
            for family in gauge.collect()
            for sample in family.samples
            if (sample.labels["app"], sample.labels["environment"]) == (app, environment)
        }
        for values in left:
            _remove(gauge, *values)
    _remove(APPROVAL_DEADLINE, app, environment)


def _remove(metric: Gauge, *labels: str) -> None:
    try:
        metric.remove(*labels)
    except KeyError:
        pass
