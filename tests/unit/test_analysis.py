"""Canary-vs-stable analysis: slowness (Fisher exact, censored timings), error ratios and
differential diagnosis."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from zdp.health.analysis import Timing, compare_errors, compare_slowness, diagnose
from zdp.models import GateResult


def _latencies(n: int, mean: float, sd: float = 10.0, seed: int = 7) -> list[float]:
    rng = random.Random(seed)
    return [max(0.1, rng.gauss(mean, sd)) for _ in range(n)]


def _timed(values: list[float], censored: bool = False) -> list[Timing]:
    return [Timing(v, censored) for v in values]


def test_identical_timings_pass() -> None:
    result = compare_slowness(
        _timed(_latencies(25, 5.0, sd=1.0, seed=8)),
        _timed(_latencies(25, 5.0, sd=1.0, seed=7)),
        what="sampled requests",
    )
    assert result.result is GateResult.passed
    assert result.evidence["new_n"] == 25.0
    assert "not slower than baseline" in result.reason


def test_canary_200_ms_slower_fails_with_significant_p_value() -> None:
    result = compare_slowness(
        _timed(_latencies(25, 205.0, sd=2.0, seed=8)),
        _timed(_latencies(25, 5.0, sd=1.0, seed=7)),
        what="sampled requests",
    )
    assert result.result is GateResult.failed
    assert result.evidence["p_value"] < 0.01
    assert result.evidence["new_slow"] == 25.0
    assert "sampled requests slower than baseline: 25 of 25 new" in result.reason


def test_slowdown_within_tolerance_passes() -> None:
    # 1 ms slower on every request: real, but below max_slowdown_ms: not a user-visible change.
    result = compare_slowness(
        _timed(_latencies(200, 51.0, sd=2.0, seed=8)),
        _timed(_latencies(200, 50.0, sd=2.0, seed=7)),
        what="sampled requests",
        max_slowdown_ms=20.0,
    )
    assert result.result is GateResult.passed


def test_too_few_timings_is_inconclusive() -> None:
    result = compare_slowness(_timed([500.0] * 5), _timed([5.0] * 30), what="probes", min_slow=6)
    assert result.result is GateResult.inconclusive
    assert "5 new" in result.reason
    assert "p_value" not in result.evidence


def test_faster_canary_passes() -> None:
    result = compare_slowness(_timed([2.0] * 20), _timed([200.0] * 20), what="probes")
    assert result.result is GateResult.passed


def test_busy_machine_slowing_both_sides_alike_is_not_blamed_on_the_release() -> None:
    # A stall of the machine: the same share of answers on both sides took 60-120 ms, and the
    # probes that timed out (censored at 50 ms) did so on both sides too.
    stalled = [60.0, 80.0, 120.0, 90.0, 70.0, 100.0, 65.0, 85.0]
    new = _timed([3.0] * 12 + stalled) + _timed([50.0] * 5, censored=True)
    base = _timed([2.0] * 12 + stalled) + _timed([50.0] * 5, censored=True)
    result = compare_slowness(new, base, what="probes", max_slowdown_ms=30)
    assert result.result is GateResult.passed


def test_requests_in_flight_past_the_threshold_count_as_slow_at_once() -> None:
    # A hung canary: its last requests have not answered for 40-100 ms; nothing has come back
    # slow yet, but the gate need not wait for a timeout to know.
    new = _timed([3.0] * 14) + _timed([100.0, 90.0, 80.0, 70.0, 60.0, 50.0, 40.0], censored=True)
    result = compare_slowness(new, _timed([3.0] * 20), what="sampled requests", min_slow=6)
    assert result.result is GateResult.failed
    assert result.evidence["new_slow"] == 7.0


def test_requests_in_flight_younger_than_the_threshold_are_not_judged() -> None:
    new = _timed([3.0] * 20) + _timed([4.0] * 6, censored=True)
    result = compare_slowness(new, _timed([3.0] * 20), what="sampled requests")
    assert result.result is GateResult.passed
    assert result.evidence["new_known"] == 20.0


def test_a_moments_hiccup_is_not_a_slow_release_but_a_lasting_one_is() -> None:
    # The new slot's latest 6 answers are all slow: sent within 20 ms (a cold connection, a
    # stall of the process) they are a hiccup; sent over 100 ms they are a slow release.
    fast = [Timing(3.0, at=i * 0.02) for i in range(14)]
    base = [Timing(3.0, at=i * 0.02) for i in range(20)]

    def judged(spacing: float) -> GateResult:
        slow = [Timing(200.0, at=0.3 + i * spacing) for i in range(6)]
        return compare_slowness(
            fast + slow, base, what="sampled requests", min_slow=6, min_span_seconds=0.08
        ).result

    assert judged(0.004) is GateResult.passed
    assert judged(0.02) is GateResult.failed


def test_a_few_slow_answers_among_many_fast_ones_pass() -> None:
    # A stall of the canary's process alone for ~100 ms: 5 slow samples, not a slow release.
    new = _timed([3.0] * 10 + [80.0] * 5 + [3.0] * 10)
    result = compare_slowness(new, _timed([3.0] * 25), what="sampled requests", min_slow=6)
    assert result.result is GateResult.passed


def test_error_burst_on_canary_alone_fails() -> None:
    result = compare_errors(100, 20, 1000, 2)
    assert result.result is GateResult.failed
    assert result.evidence["canary_error_ratio"] == 0.2
    assert "20/100" in result.reason


def test_fewer_canary_failures_than_min_failures_pass_and_say_so() -> None:
    result = compare_errors(136, 2, 400, 0, min_failures=3)
    assert result.result is GateResult.passed
    assert "fewer than min_failures 3" in result.reason
    assert compare_errors(136, 3, 400, 0, min_failures=3).result is GateResult.failed


def test_errors_within_budget_pass() -> None:
    assert compare_errors(1000, 5, 1000, 0).result is GateResult.passed


def test_stable_equally_bad_is_not_blamed_on_the_canary() -> None:
    result = compare_errors(100, 34, 1000, 310)
    assert result.result is GateResult.passed
    assert "stable fails about as often" in result.reason


def test_too_few_canary_requests_is_inconclusive() -> None:
    result = compare_errors(9, 9, 1000, 0, min_requests=10)
    assert result.result is GateResult.inconclusive


def test_no_stable_traffic_judges_the_canary_on_its_budget() -> None:
    assert compare_errors(100, 5, 0, 0).result is GateResult.failed


def test_diagnosis_when_stable_errs_as_much() -> None:
    sentence = diagnose(0.34, 0.31, 40.0, 40.0)
    assert sentence is not None
    assert "errors 34% vs 31%" in sentence and "not the cause" in sentence


def test_diagnosis_when_stable_is_as_slow() -> None:
    sentence = diagnose(0.0, 0.0, 900.0, 800.0)
    assert sentence is not None and "latency 900 ms vs 800 ms" in sentence


def test_no_diagnosis_when_only_the_canary_degrades() -> None:
    assert diagnose(0.34, 0.001, 40.0, 40.0) is None
    assert diagnose(0.34, 0.05, 40.0, 40.0) is None  # above the floor but far below the canary
    assert diagnose(0.0, 0.0, 900.0, 60.0) is None


def test_no_diagnosis_for_healthy_stable_below_the_floor() -> None:
    assert diagnose(0.005, 0.005, 40.0, 40.0) is None


@settings(max_examples=50, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(6, 40),
    canary_mean=st.floats(2.0, 400.0),
    shift=st.floats(0.0, 500.0),
)
def test_shifting_the_canary_up_never_turns_fail_into_pass(
    seed: int, n: int, canary_mean: float, shift: float
) -> None:
    stable = _timed(_latencies(n, 5.0, sd=1.0, seed=seed))
    canary = _latencies(n, canary_mean, sd=30.0, seed=seed + 1)
    before = compare_slowness(_timed(canary), stable, what="sampled requests")
    after = compare_slowness(_timed([x + shift for x in canary]), stable, what="sampled requests")
    if before.result is GateResult.failed:
        assert after.result is GateResult.failed
