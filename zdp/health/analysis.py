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

from scipy.stats import mannwhitneyu

from zdp.models import GateResult


@dataclass(frozen=True)
class Comparison:
    """The outcome of comparing one metric between canary and stable, with its evidence."""

    result: GateResult
    metric: str
    reason: str
    evidence: dict[str, float] = field(default_factory=dict)


def _p95(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)] if ordered else 0.0


def compare_latency(
    canary_ms: Sequence[float],
    stable_ms: Sequence[float],
    *,
    min_samples: int = 20,
    alpha: float = 0.01,
    max_slowdown_ms: float = 20.0,
    max_slowdown_ratio: float = 1.2,
) -> Comparison:
    """Is the canary slower than stable, significantly AND by enough to matter to a user?

    One-sided Mann-Whitney U (no normality assumption: latencies are skewed). A significant
    slowdown fails only when the canary's median exceeds stable's by more than
    `max_slowdown_ms` and by more than `max_slowdown_ratio` times: with thousands of samples a
    0.3 ms slowdown is significant, and rolling back for it would be noise.
    """
    n_canary, n_stable = len(canary_ms), len(stable_ms)
    evidence: dict[str, float] = {"canary_n": float(n_canary), "stable_n": float(n_stable)}
    if n_canary < min_samples or n_stable < min_samples:
        return Comparison(
            GateResult.inconclusive,
            "latency",
            f"too few latency samples to compare ({n_canary} canary, {n_stable} stable; "
            f"need {min_samples} each)",
            evidence,
        )
    test = mannwhitneyu(canary_ms, stable_ms, alternative="greater")
    p_value = float(test.pvalue)
    canary_median = float(statistics.median(canary_ms))
    stable_median = float(statistics.median(stable_ms))
    evidence |= {
        "p_value": p_value,
        "u_statistic": float(test.statistic),
        "canary_median_ms": canary_median,
        "stable_median_ms": stable_median,
        "canary_p95_ms": float(_p95(canary_ms)),
        "stable_p95_ms": float(_p95(stable_ms)),
    }
    slowdown = canary_median - stable_median
    numbers = (
        f"median {canary_median:.1f} ms vs {stable_median:.1f} ms, p={p_value:.2g}, "
        f"n={n_canary}/{n_stable}"
    )
    significant = p_value < alpha
    large = slowdown > max_slowdown_ms and canary_median > max_slowdown_ratio * stable_median
    if significant and large:
        return Comparison(
            GateResult.failed,
            "latency",
            f"canary is slower than stable by {slowdown:.1f} ms ({numbers}), more than "
            f"{max_slowdown_ms:g} ms and {max_slowdown_ratio:g}x",
            evidence,
        )
    why = "not significantly slower" if not significant else "slower, but within tolerance"
    return Comparison(
        GateResult.passed, "latency", f"canary is {why} than stable ({numbers})", evidence
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
) -> Comparison:
    """Does the canary fail more than its budget AND clearly more than stable does?"""
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
