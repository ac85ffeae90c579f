"""Gate policy models: what one health gate checks and with which thresholds, as plain data.

These are the models `gate-policies.yaml` is validated into and that travel, resolved, inside a
deployment's policy decision and each gate's input (so the history shows exactly what a gate
judged with). Pure pydantic: nothing here does I/O or imports the rest of the engine.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, Field, field_validator

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_]+)\s*\}\}")
_KNOWN_PLACEHOLDERS = frozenset({"app", "environment", "slot", "version", "interval"})
_COMPARATORS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def _duration(seconds: float) -> str:
    """A PromQL duration: whole seconds as "5s", anything finer in milliseconds."""
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{round(seconds * 1000)}ms"


class MetricTemplate(BaseModel, extra="forbid"):
    """One PromQL check: the query, the SUCCESS condition, and how many misses it tolerates."""

    name: str = Field(min_length=1)
    # PromQL with {{app}}, {{environment}}, {{slot}}, {{version}} and {{interval}} placeholders.
    query: str = Field(min_length=1)
    threshold: float
    # The success condition: `value <comparator> threshold`, e.g. error ratio "<" 0.01.
    comparator: Literal["<", "<=", ">", ">="]
    interval_seconds: float = Field(default=1.0, gt=0.0)
    # Breaches tolerated: the template fails once breaches exceed it (Argo's failureLimit).
    failure_limit: int = Field(default=1, ge=0)
    # Queries without data tolerated: beyond it the template is inconclusive.
    inconclusive_limit: int = Field(default=3, ge=0)
    # Successful measurements after which the template passes; None: it runs for the whole
    # bake and `TemplateRun.conclude()` decides at the end.
    count: int | None = Field(default=None, ge=1)

    @field_validator("query")
    @classmethod
    def _placeholders_are_known(cls, value: str) -> str:
        unknown = sorted({m for m in _PLACEHOLDER.findall(value)} - _KNOWN_PLACEHOLDERS)
        if unknown:
            raise ValueError(
                f"unknown placeholder {{{{{unknown[0]}}}}} in the query: use {{{{app}}}}, "
                "{{environment}}, {{slot}}, {{version}} or {{interval}}"
            )
        return value

    def render(self, app: str, slot: str, version: str, environment: str = "") -> str:
        """The query with its placeholders filled in for one app, slot, version and
        environment (the deployment's; empty where it has none)."""
        values = {
            "app": app,
            "environment": environment,
            "slot": slot,
            "version": version,
            "interval": _duration(self.interval_seconds),
        }
        return _PLACEHOLDER.sub(lambda m: values[m.group(1)], self.query)

    def succeeds(self, value: float) -> bool:
        """Whether one measured value meets the success condition."""
        return _COMPARATORS[self.comparator](value, self.threshold)


class LatencyAnalysis(BaseModel, extra="forbid"):
    """Slowness of the new slot against its baseline, measured the same way at the same moments.

    A sampled request or a probe is *slow* when it took longer than the baseline's recent p90
    plus `max_slowdown_ms` and than `max_slowdown_ratio` times its median; one still in flight (or
    timed out) past that threshold is slow already (a censored sample). Over the last
    `window_seconds`, the new slot fails when at least `min_slow` of its answers are slow and
    at least half of them are, or its latest `min_slow` or more are all slow; and those slow
    answers were slow for at least `min_span_seconds` (from the first one's sending to the
    last one's answer: a stall of the process, which delays every request in flight at once,
    is one event as long as the stall); and a one-sided Fisher exact test against the
    baseline's answers sent during that stretch gives p < `alpha` (see
    `zdp.health.analysis.compare_slowness`).
    """

    min_samples: int = Field(default=20, ge=3)
    alpha: float = Field(default=0.01, gt=0.0, lt=1.0)
    max_slowdown_ms: float = Field(default=20.0, ge=0.0)
    max_slowdown_ratio: float = Field(default=1.2, ge=1.0)
    min_slow: int = Field(default=5, ge=1)
    window_seconds: float = Field(default=0.5, gt=0.0)
    # How long the slot must have been slow (the first slow answer's sending to the last one's
    # answer), not a stall of its process on a busy machine. None: half of window_seconds. On a
    # slot without traffic weight, at least 0.6 of the window: nobody is exposed there.
    min_span_seconds: float | None = Field(default=None, ge=0.0)
    # Enough for sampled requests when the slot's own probes answered in time meanwhile (its
    # API is slow, its process is not stalled): a latency fault is caught as fast as before.
    responsive_span_seconds: float = Field(default=0.08, ge=0.0)
    # Answers sent in the gate's first seconds are not judged for slowness: a fresh process,
    # fresh connections.
    warmup_seconds: float = Field(default=0.3, ge=0.0)
    # Where the runtime can read the slots' processes (local), the time the new slot's process
    # waited for a CPU beyond the baseline's is taken out of its timings (the machine's, not
    # the release's), unless since the warm-up it used more than cpu_demand_ratio x the CPU the
    # baseline used for as many requests (the baseline's own at least) plus
    # cpu_demand_slack_ms (the counters tick in 10 ms): then its waiting is its own demand.
    cpu_demand_ratio: float = Field(default=2.0, ge=1.0)
    cpu_demand_slack_ms: float = Field(default=50.0, ge=0.0)


class ErrorAnalysis(BaseModel, extra="forbid"):
    """Canary-vs-stable error comparison on the requests each slot served."""

    min_requests: int = Field(default=10, ge=1)
    max_ratio_to_stable: float = Field(default=2.0, ge=1.0)


class GatePolicy(BaseModel, extra="forbid"):
    """Everything one health gate is run with: every threshold lives here and only here."""

    probe_interval_seconds: float = Field(gt=0.0)
    probe_timeout_ms: float = Field(default=50.0, gt=0.0)
    breaker_failure_threshold: int = Field(ge=1)
    breaker_open_seconds: float = Field(gt=0.0)
    min_samples: int = Field(ge=1)
    min_failures: int = Field(default=3, ge=1)
    max_error_ratio: float = Field(ge=0.0, le=1.0)
    latency: LatencyAnalysis = Field(default_factory=LatencyAnalysis)
    errors: ErrorAnalysis = Field(default_factory=ErrorAnalysis)
    sample_path: str | None = Field(default=None, pattern=r"^/")
    sample_rate_per_s: float = Field(default=20.0, gt=0.0)
    # Without a baseline (a first deployment), sampled requests are compared with the slot's
    # own answers on this cheap path at the same moments: a busy machine slows both.
    reference_path: str = Field(default="/healthz/live", pattern=r"^/")
    diagnosis_tolerance: float = Field(default=0.5, ge=0.0, le=1.0)
    templates: list[MetricTemplate] = Field(default_factory=list)
