"""Canary-vs-stable analysis: latency (Mann-Whitney U), error ratios and differential diagnosis."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from zdp.health.analysis import compare_errors, compare_latency, diagnose
from zdp.models import GateResult


def _latencies(n: int, mean: float, sd: float = 10.0, seed: int = 7) -> list[float]:
    rng = random.Random(seed)
    return [max(0.1, rng.gauss(mean, sd)) for _ in range(n)]


def test_identical_distributions_pass() -> None:
    stable = _latencies(200, 50.0, seed=7)
    canary = _latencies(200, 50.0, seed=8)
    result = compare_latency(canary, stable)
    assert result.result is GateResult.passed
    assert result.evidence["p_value"] > 0.01
    assert result.evidence["canary_n"] == 200.0


def test_canary_200_ms_slower_fails_with_significant_p_value() -> None:
    stable = _latencies(100, 50.0, seed=7)
    canary = _latencies(100, 250.0, seed=8)
    result = compare_latency(canary, stable)
    assert result.result is GateResult.failed
    assert result.evidence["p_value"] < 0.01
    assert result.evidence["canary_median_ms"] > result.evidence["stable_median_ms"] + 150
    assert "slower than stable by" in result.reason and "p=" in result.reason


def test_tiny_but_significant_slowdown_passes() -> None:
    stable = _latencies(2000, 50.0, sd=2.0, seed=7)
    canary = _latencies(2000, 51.0, sd=2.0, seed=8)
    result = compare_latency(canary, stable)
    assert result.evidence["p_value"] < 0.01
    assert result.result is GateResult.passed
    assert "within tolerance" in result.reason


def test_below_min_samples_is_inconclusive() -> None:
    result = compare_latency(_latencies(19, 500.0), _latencies(100, 50.0), min_samples=20)
    assert result.result is GateResult.inconclusive
    assert "19 canary" in result.reason
    assert "p_value" not in result.evidence


def test_faster_canary_passes() -> None:
    result = compare_latency(_latencies(100, 20.0, seed=8), _latencies(100, 200.0))
    assert result.result is GateResult.passed


def test_error_burst_on_canary_alone_fails() -> None:
    result = compare_errors(100, 20, 1000, 2)
    assert result.result is GateResult.failed
    assert result.evidence["canary_error_ratio"] == 0.2
    assert "20/100" in result.reason


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
    n=st.integers(20, 80),
    canary_mean=st.floats(20.0, 400.0),
    shift=st.floats(0.0, 500.0),
)
def test_shifting_the_canary_up_never_turns_fail_into_pass(
    seed: int, n: int, canary_mean: float, shift: float
) -> None:
    stable = _latencies(n, 50.0, seed=seed)
    canary = _latencies(n, canary_mean, sd=30.0, seed=seed + 1)
    before = compare_latency(canary, stable)
    after = compare_latency([x + shift for x in canary], stable)
    if before.result is GateResult.failed:
        assert after.result is GateResult.failed
