"""Canary-vs-stable analysis: pure judges that compare the new version with the old one.

As Kayenta's judge, each comparison looks at both slots side by side rather than at the canary
alone, so a slowdown or an error burst that hits stable just as hard is not blamed on the
release. Every result carries the numbers that decided it. Nothing here does I/O.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from scipy.stats import fisher_exact

from zdp.health.cpu_wait import CpuEvidence, CpuSample, CpuTrack, stopped
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

    @property
    def until(self) -> float:
        """When it answered (or, censored, the last moment it was known not to have)."""
        return self.at + self.ms / 1000


def net_of_cpu_wait(
    timings: Sequence[Timing], own: CpuTrack, other: CpuTrack
) -> tuple[list[Timing], float]:
    """Each timing less the time `own`'s process waited for a CPU beyond `other`'s while it was
    in flight (zdp/health/cpu_wait.py), with the most taken from one timing (ms). Without
    readings of both slots, unchanged. Only ever shorter: it never turns a pass into a fail."""
    if not own or not other:
        return list(timings), 0.0
    start, end = max(own.start, other.start), min(own.end, other.end)
    out: list[Timing] = []
    most = 0.0
    for t in timings:
        a, b = max(t.at, start), min(t.until, end)
        extra = min(t.ms, max(0.0, own.waited(a, b) - other.waited(a, b)))
        most = max(most, extra)
        out.append(Timing(t.ms - extra, t.censored, t.at) if extra > 0 else t)
    return out, most


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
    liveness: Sequence[Timing] = (),
    responsive_span_seconds: float | None = None,
    cpu: CpuEvidence | None = None,
) -> Comparison:
    """Is the new slot slow where its baseline, measured the same way at the same moments, is not?

    An answer is slow when it took longer than the baseline's p90 plus `max_slowdown_ms`, and
    longer than `max_slowdown_ratio` times the baseline's median: the new slot must be slower
    than even the baseline's own spikes, which a busy machine raises on both sides. A censored
    timing counts as slow once it is past that threshold and is left out while it is not (its
    outcome is unknown).

    The new slot is *mostly slow* when at least `min_slow` of its answers are slow and at least
    half of the known ones are; it *turned slow* (a hang, a new latency) when its latest known
    answers, at least `min_slow` of them, are all slow. Either way the slow answers make a
    *slow stretch*: from the first one's sending to the last one's answer (for one still in
    flight, now). It fails the release only when
    - the stretch lasts at least `min_span_seconds`: one stall of the process (descheduled on a
      busy machine, a collection) delays every request in flight at once, and however many of
      them it catches it is one event as long as the stall, not a slow release, which stays
      slow. Unless the new slot's own process was seen answering meanwhile: when `liveness`
      (its answers on a cheap path, its probes) sent while its slow answers were being sent
      were all answered within the slow threshold, one of them sent at least the threshold
      after the first slow answer (so during any stall that delayed that one), the slowness
      is its API's, not a stall of the process, and a stretch of `responsive_span_seconds` is
      enough; and
    - at the same moments the baseline was fast: its answers sent during the stretch are the
      comparison, and a one-sided Fisher exact test says the new slot's share of slow answers
      in the stretch is above the baseline's there (p < alpha). A baseline not sampled during
      the stretch cannot be called fine then, so there is no failure (yet); a stall of the
      whole machine (or of the gate's own process) slows both sides at those moments alike.

    With `cpu` (the scheduler's readings of both slots' processes, where the runtime has them),
    a failure is judged again on the new slot's timings net of the time its process waited for
    a CPU beyond the baseline's process while each was in flight (`net_of_cpu_wait`): a canary
    kept off the CPU by a busy machine is judged as if it had been given one like its baseline,
    while its own time on a CPU (a release that burns CPU) is never taken out. The new slot
    keeps its waiting when `cpu.own_demand` says it used clearly more CPU for its requests than
    the baseline. And a process stopped (state T: it neither ran nor waited for a CPU) from a
    threshold after the first slow answer was sent to the last reading is hung, not stalled by
    the machine: `responsive_span_seconds` is enough, as with responsive liveness.
    """

    def judge(timings: Sequence[Timing]) -> Comparison:
        return _judge_slowness(
            timings,
            baseline,
            what=what,
            min_slow=min_slow,
            alpha=alpha,
            max_slowdown_ms=max_slowdown_ms,
            max_slowdown_ratio=max_slowdown_ratio,
            min_span_seconds=min_span_seconds,
            liveness=liveness,
            responsive_span_seconds=responsive_span_seconds,
            readings=cpu.new if cpu is not None else (),
        )

    judged = judge(new)
    if cpu is None:
        return judged
    judged.evidence.update(cpu.evidence, cpu_own_demand=float(cpu.own_demand is not None))
    if cpu.own_demand is not None:
        why = f"; the new slot's waiting for a CPU is not taken out: {cpu.own_demand}"
        return replace(judged, reason=judged.reason + why)
    if judged.result is not GateResult.failed:
        return judged  # net of waiting it could only be faster
    netted, taken = net_of_cpu_wait(new, cpu.new_track, cpu.baseline_track)
    if taken < 1.0:  # less than a millisecond changes nothing
        return judged
    again = judge(netted)
    again.evidence.update(
        cpu.evidence,
        cpu_own_demand=0.0,
        cpu_wait_taken_new_ms=round(taken, 1),
        cpu_wait_excused=float(again.result is GateResult.passed),
    )
    head, _, rest = again.reason.partition(": ")
    return replace(
        again,
        reason=(
            f"{head} (net of waiting for a CPU beyond the baseline's process: up to "
            f"{taken:.0f} ms taken from one answer; {judged.result.value} without): {rest}"
        ),
    )


def _judge_slowness(
    new: Sequence[Timing],
    baseline: Sequence[Timing],
    *,
    what: str,
    min_slow: int,
    alpha: float,
    max_slowdown_ms: float,
    max_slowdown_ratio: float,
    min_span_seconds: float,
    liveness: Sequence[Timing],
    responsive_span_seconds: float | None,
    readings: Sequence[CpuSample],
) -> Comparison:
    """`compare_slowness` on the timings given (`readings`: the new slot's process's, to tell a
    hang from a stall)."""
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
        return sorted(
            (t for t in timings if not t.censored or t.ms > threshold), key=lambda t: t.at
        )

    known_n, known_b = known(new), known(baseline)
    slow_n = [t for t in known_n if t.ms > threshold]
    slow_new, known_new = len(slow_n), len(known_n)
    slow_base, known_base = sum(1 for t in known_b if t.ms > threshold), len(known_b)
    # The latest run of slow answers: the known answers since the last fast one.
    run = len(known_n)
    while run > 0 and known_n[run - 1].ms > threshold:
        run -= 1
    latest = known_n[run:]

    def judge(slow: list[Timing]) -> tuple[float, float, int, int, int, int]:
        """The stretch the slow answers make, and the Fisher p of the new slot's slow share in
        it against the baseline's answers sent during it (with the four counts)."""
        if not slow:
            return 0.0, 1.0, 0, 0, 0, 0
        start, end = slow[0].at, max(t.until for t in slow)
        in_n = [t for t in known_n if start <= t.at <= end]
        in_b = [t for t in known_b if start <= t.at <= end]
        s_n = sum(1 for t in in_n if t.ms > threshold)
        s_b = sum(1 for t in in_b if t.ms > threshold)
        p = 1.0
        if in_b:
            table = [[s_n, len(in_n) - s_n], [s_b, len(in_b) - s_b]]
            p = float(fisher_exact(table, alternative="greater").pvalue)
        return end - start, p, s_n, len(in_n), s_b, len(in_b)

    def hung(slow: list[Timing]) -> bool:
        """Whether the new slot's process was stopped from a threshold after the first slow
        answer was sent (it was overdue by then) to the last reading."""
        if not slow or len(readings) < 2:
            return False
        return stopped(readings, slow[0].at + threshold / 1000, readings[-1].at)

    hung_n, hung_latest = hung(slow_n), hung(latest)

    def required(slow: list[Timing], hang: bool) -> float:
        """The stretch asked of these slow answers: the short one when the process answered
        its liveness in time while they were being sent, or did not run at all (a hang), else
        the long one.

        A stall from s to e delays every answer in flight: the first slow answer was sent
        after s minus the threshold (it would have been answered by then), the last before e
        minus the threshold (it waited longer than that). So a liveness answer sent a
        threshold after the first slow one and before the last was sent during the stall,
        and was slow too: a fast one there means the process was not stalled."""
        if responsive_span_seconds is None or not slow:
            return min_span_seconds
        if hang:
            return min(responsive_span_seconds, min_span_seconds)
        first, last = slow[0].at, slow[-1].at
        sent = [t for t in liveness if first <= t.at <= last]
        fast = [t for t in sent if not t.censored and t.ms <= threshold]
        if len(fast) == len(sent) and any(t.at >= first + threshold / 1000 for t in fast):
            return min(responsive_span_seconds, min_span_seconds)
        return min_span_seconds

    span, p_value, *counts = judge(slow_n)
    span_latest, p_recent, *counts_latest = judge(latest)
    need, need_latest = required(slow_n, hung_n), required(latest, hung_latest)
    mostly_slow = slow_new >= min_slow and 2 * slow_new >= known_new
    turned_slow = len(latest) >= min_slow
    evidence |= {
        "threshold_ms": round(threshold, 3),
        "baseline_median_ms": round(median, 3),
        "baseline_p90_ms": round(p90, 3),
        "new_slow": float(slow_new),
        "new_known": float(known_new),
        "baseline_slow": float(slow_base),
        "baseline_known": float(known_base),
        "new_slow_span_s": round(span, 3),
        "baseline_known_in_span": float(counts[3]),
        "baseline_slow_in_span": float(counts[2]),
        "p_value": p_value,
        "new_latest_slow": float(len(latest)),
        "new_latest_span_s": round(span_latest, 3),
        "p_value_latest": p_recent,
        "required_span_s": need,
        "required_latest_span_s": need_latest,
    }

    def stretch(seconds: float, c: list[int], p: float) -> str:
        return (
            f"slow for {seconds * 1000:.0f} ms ({c[0]} of {c[1]} new vs {c[2]} of {c[3]} "
            f"baseline answers sent then slow, p={p:.2g})"
        )

    numbers = (
        f"{slow_new} of {known_new} new vs {slow_base} of {known_base} baseline answers slower "
        f"than {threshold:.1f} ms (baseline median {median:.1f} ms, p90 {p90:.1f} ms)"
    )
    if slow_n:
        numbers += "; " + stretch(span, counts, p_value)
    if turned_slow:
        numbers += f"; its latest {len(latest)} all slow, " + stretch(
            span_latest, counts_latest, p_recent
        )
    if hung_latest or hung_n:
        numbers += "; its process was stopped meanwhile (it neither ran nor waited for a CPU)"
    failed = (mostly_slow and span >= need and p_value < alpha) or (
        turned_slow and span_latest >= need_latest and p_recent < alpha
    )
    if failed:
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
