"""Canary-vs-stable analysis: pure judges that compare the new version with the old one.

As Kayenta's judge, each comparison looks at both slots side by side rather than at the canary
alone, so a slowdown or an error burst that hits stable just as hard is not blamed on the
release. Every result carries the numbers that decided it. Nothing here does I/O.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from scipy.stats import fisher_exact

from zdp.models import GateResult


@dataclass(frozen=True)
class Comparison:
    """The outcome of comparing one metric between canary and stable, with its evidence."""

    result: GateResult
    metric: str
    reason: str
    evidence: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Timing:
    """How long one answer took, in ms; `censored`: at least that long (it timed out, or it
    is still in flight), the true time is unknown."""

    ms: float
    censored: bool = False
    at: float = 0.0  # when it was sent (seconds, any monotonic origin)


def compare_slowness(
    new: Sequence[Timing],
    baseline: Sequence[Timing],
    *,
    what: str,
    min_slow: int = 6,
    alpha: float = 0.01,
    max_slowdown_ms: float = 20.0,
    max_slowdown_ratio: float = 1.2,
    min_span_seconds: float = 0.0,
) -> Comparison:
    """Is the new slot slow where its baseline, measured the same way at the same moment, is not?

    An answer is slow when it took longer than the baseline's p90 plus `max_slowdown_ms`, and
    longer than `max_slowdown_ratio` times the baseline's median: the new slot must be slower
    than even the baseline's own spikes, which a busy machine raises on both sides. A censored
    timing counts as slow once it is past that threshold and is left out while it is not (its
    outcome is unknown). Fails when at least `min_slow` new answers are slow, at least half of
    the known ones are, and a one-sided Fisher exact test says the new slot's share of slow
    answers is above the baseline's (p < alpha);
    or, for a slot that just turned slow (a hang), when its latest `min_slow` known answers are
    all slow and the same test holds. Either way the slow answers must have been sent over at
    least `min_span_seconds`: a moment's hiccup (a cold connection, a new process's first
    requests) is not a slow release. A busy machine slows both sides alike, so it does not fail
    the release.
    """
    evidence: dict[str, float] = {"new_n": float(len(new)), "baseline_n": float(len(baseline))}
    if len(baseline) < min_slow or len(new) < min_slow:
        return Comparison(
            GateResult.inconclusive,
            f"slowness.{what}",
            f"{what}: too few timings to compare ({len(new)} new, {len(baseline)} baseline; "
            f"need {min_slow} each)",
            evidence,
        )
    ordered = sorted(t.ms for t in baseline)
    median = float(statistics.median(ordered))
    p90 = ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]
    threshold = max(p90 + max_slowdown_ms, median * max_slowdown_ratio)

    def known(timings: Sequence[Timing]) -> list[Timing]:
        return [t for t in timings if not t.censored or t.ms > threshold]

    known_n, known_b = known(new), known(baseline)
    slow_at = [t.at for t in known_n if t.ms > threshold]
    slow_new, known_new = len(slow_at), len(known_n)
    slow_base, known_base = sum(1 for t in known_b if t.ms > threshold), len(known_b)
    latest = known_n[-min_slow:]
    turned_slow = len(latest) == min_slow and all(t.ms > threshold for t in latest)

    def fisher(slow: int, known: int) -> float:
        if not known or not known_base:
            return 1.0
        table = [[slow, known - slow], [slow_base, known_base - slow_base]]
        return float(fisher_exact(table, alternative="greater").pvalue)

    p_value = fisher(slow_new, known_new)
    # A slot that just turned slow: its latest answers, all slow, against the baseline's window
    # (the fast answers from before it turned would otherwise dilute the test for a while).
    p_recent = fisher(len(latest), len(latest)) if turned_slow else 1.0
    evidence |= {
        "threshold_ms": round(threshold, 3),
        "baseline_median_ms": round(median, 3),
        "baseline_p90_ms": round(p90, 3),
        "new_slow": float(slow_new),
        "new_known": float(known_new),
        "baseline_slow": float(slow_base),
        "baseline_known": float(known_base),
        "p_value": p_value,
        "p_value_latest": p_recent,
    }
    numbers = (
        f"{slow_new} of {known_new} new vs {slow_base} of {known_base} baseline answers slower "
        f"than {threshold:.1f} ms (baseline median {median:.1f} ms, p90 {p90:.1f} ms), "
        f"p={p_value:.2g}"
    )
    if turned_slow:
        numbers += f"; its latest {min_slow} all slow, p={p_recent:.2g}"
    span = max(slow_at) - min(slow_at) if slow_at else 0.0
    evidence["new_slow_span_s"] = round(span, 3)
    mostly_slow = slow_new >= min_slow and 2 * slow_new >= known_new and span >= min_span_seconds
    turned_slow = turned_slow and latest[-1].at - latest[0].at >= min_span_seconds
    if (mostly_slow and p_value < alpha) or (turned_slow and p_recent < alpha):
        return Comparison(
            GateResult.failed,
            f"slowness.{what}",
            f"{what} slower than baseline: {numbers}",
            evidence,
        )
    return Comparison(
        GateResult.passed,
        f"slowness.{what}",
        f"{what} not slower than baseline: {numbers}",
        evidence,
    )


def compare_errors(
    canary_requests: int,
    canary_failures: int,
    stable_requests: int,
    stable_failures: int,
    *,
    min_requests: int = 10,
    max_error_ratio: float = 0.01,
    max_ratio_to_stable: float = 2.0,
    min_failures: int = 1,
) -> Comparison:
    """Does the canary fail more than its budget AND clearly more than stable does, with at
    least `min_failures` failures (as the error budget asks everywhere)?"""
    canary_ratio = canary_failures / canary_requests if canary_requests else 0.0
    stable_ratio = stable_failures / stable_requests if stable_requests else 0.0
    evidence = {
        "canary_requests": float(canary_requests),
        "canary_failures": float(canary_failures),
        "canary_error_ratio": canary_ratio,
        "stable_requests": float(stable_requests),
        "stable_failures": float(stable_failures),
        "stable_error_ratio": stable_ratio,
    }
    if canary_requests < min_requests:
        return Comparison(
            GateResult.inconclusive,
            "errors",
            f"too few canary requests to judge ({canary_requests}; need {min_requests})",
            evidence,
        )
    numbers = (
        f"{canary_failures}/{canary_requests} = {canary_ratio:.2%} on canary vs "
        f"{stable_failures}/{stable_requests} = {stable_ratio:.2%} on stable"
    )
    over_budget = canary_ratio > max_error_ratio
    over_stable = canary_ratio > max_ratio_to_stable * stable_ratio
    if over_budget and over_stable and canary_failures < min_failures:
        return Comparison(
            GateResult.passed,
            "errors",
            f"canary errors are over the {max_error_ratio:.2%} budget but fewer than "
            f"min_failures {min_failures} ({numbers})",
            evidence,
        )
    if over_budget and over_stable:
        return Comparison(
            GateResult.failed,
            "errors",
            f"canary fails more than {max_error_ratio:.2%} and more than "
            f"{max_ratio_to_stable:g}x stable ({numbers})",
            evidence,
        )
    if over_budget:
        why = f"stable fails about as often (within {max_ratio_to_stable:g}x)"
    else:
        why = f"within the {max_error_ratio:.2%} budget"
    return Comparison(GateResult.passed, "errors", f"canary errors are {why} ({numbers})", evidence)


def diagnose(
    canary_error_ratio: float,
    stable_error_ratio: float,
    canary_latency_ms: float,
    stable_latency_ms: float,
    *,
    tolerance: float = 0.5,
    floor_error_ratio: float = 0.01,
    floor_latency_ms: float = 250.0,
) -> str | None:
    """Differential diagnosis: a sentence when stable degrades as much as the canary, else None.

    Stable counts as equally degraded when its error ratio is at least `floor_error_ratio` and
    no more than `tolerance` (relative) below the canary's, or when its latency is at least
    `floor_latency_ms` and no more than `tolerance` below the canary's. Then the cause is shared
    (a dependency, the network, load), so the caller should pause and alert, not roll back.
    """
    if stable_error_ratio >= floor_error_ratio and stable_error_ratio >= canary_error_ratio * (
        1.0 - tolerance
    ):
        return (
            f"stable degrades as much as the canary (errors {canary_error_ratio:.0%} vs "
            f"{stable_error_ratio:.0%}): the release is not the cause"
        )
    if stable_latency_ms >= floor_latency_ms and stable_latency_ms >= canary_latency_ms * (
        1.0 - tolerance
    ):
        return (
            f"stable degrades as much as the canary (latency {canary_latency_ms:.0f} ms vs "
            f"{stable_latency_ms:.0f} ms): the release is not the cause"
        )
    return None
