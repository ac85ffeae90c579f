"""The simple gate evaluator: fails fast on a breach, passes after the bake, else inconclusive."""

from __future__ import annotations

import asyncio
import time

from zdp.health.gate import SimpleGateEvaluator, run_gate
from zdp.models import GateResult, GateThresholds, ProbeResult

T = GateThresholds(max_error_ratio=0.1, min_samples=4, probe_interval_seconds=0.01)


def _results(ok: int, bad: int, latency: float = 1.0) -> list[ProbeResult]:
    return [ProbeResult(endpoint="e", ok=True, latency_ms=latency) for _ in range(ok)] + [
        ProbeResult(endpoint="e", ok=False, latency_ms=latency, error="503") for _ in range(bad)
    ]


def test_no_verdict_before_min_samples_even_if_all_failed() -> None:
    ev = SimpleGateEvaluator(T, "canary")
    ev.add(_results(0, 3))
    assert ev.verdict(final=False) is None
    verdict = ev.verdict(final=True)
    assert verdict is not None and verdict.result is GateResult.inconclusive


def test_breach_fails_with_its_evidence_and_thresholds() -> None:
    ev = SimpleGateEvaluator(T, "canary")
    ev.add(_results(12, 3))
    verdict = ev.verdict(final=False)
    assert verdict is not None and verdict.result is GateResult.failed
    assert verdict.evidence["error_ratio"] == 0.2
    assert verdict.thresholds["max_error_ratio"] == 0.1
    assert "20.00%" in verdict.reason


def test_fewer_failures_than_min_failures_are_not_a_verdict_yet() -> None:
    # Two probes that timed out on a busy machine do not fail a release, whatever the ratio.
    ev = SimpleGateEvaluator(T, "canary")
    ev.add(_results(3, 2))
    assert ev.verdict(final=False) is None
    assert ev.verdict(final=True).result is GateResult.passed  # type: ignore[union-attr]
    ev.add(_results(0, 1))
    assert ev.verdict(final=False).result is GateResult.failed  # type: ignore[union-attr]


def test_error_ratio_at_the_threshold_passes() -> None:
    ev = SimpleGateEvaluator(T, "canary")
    ev.add(_results(9, 1))
    verdict = ev.verdict(final=True)
    assert verdict is not None and verdict.result is GateResult.passed


def test_slow_p95_fails() -> None:
    ev = SimpleGateEvaluator(T.model_copy(update={"max_latency_ms": 50}), "canary")
    ev.add(_results(10, 0, latency=80))
    verdict = ev.verdict(final=False)
    assert verdict is not None and verdict.result is GateResult.failed
    assert "p95 latency" in verdict.reason


class _Probe:
    def __init__(self, healthy: bool) -> None:
        self.healthy = healthy
        self.calls = 0

    async def probe(self, endpoint: str) -> ProbeResult:
        self.calls += 1
        return ProbeResult(endpoint=endpoint, ok=self.healthy, latency_ms=0.1)


async def _endpoints() -> list[str]:
    return ["a", "b"]


async def test_failing_slot_ends_the_gate_long_before_the_bake() -> None:
    started = time.monotonic()
    verdict = await run_gate(_Probe(False), _endpoints, T, "canary", bake_seconds=10)
    assert verdict.result is GateResult.failed
    assert time.monotonic() - started < 1.0


async def test_healthy_slot_passes_after_the_bake() -> None:
    started = time.monotonic()
    probe = _Probe(True)
    verdict = await run_gate(probe, _endpoints, T, "canary", bake_seconds=0.2)
    assert verdict.result is GateResult.passed
    assert time.monotonic() - started >= 0.2
    assert probe.calls == verdict.samples


async def test_slot_without_endpoints_is_inconclusive_not_endless() -> None:
    async def none() -> list[str]:
        return []

    verdict = await asyncio.wait_for(
        run_gate(_Probe(True), none, T, "canary", bake_seconds=0.1), timeout=5
    )
    assert verdict.result is GateResult.inconclusive


def test_failures_in_served_traffic_fail_the_gate_even_when_probes_pass() -> None:
    ev = SimpleGateEvaluator(T, "canary")
    ev.add(_results(10, 0))
    ev.set_traffic(requests=40, failures=6)
    verdict = ev.verdict(final=False)
    assert verdict is not None and verdict.result is GateResult.failed
    assert verdict.reason.startswith("6 of 40 requests served failed")
    assert verdict.evidence["traffic_error_ratio"] == 0.15


async def test_gate_reads_traffic_relative_to_its_start() -> None:
    counts = iter([(1000, 500)] + [(1000 + 10 * i, 500) for i in range(1, 1000)])

    async def traffic() -> tuple[int, int]:
        return next(counts)

    # 500 failures happened before the gate began: they are not this gate's business.
    verdict = await run_gate(_Probe(True), _endpoints, T, "canary", 0.1, traffic=traffic)
    assert verdict.result is GateResult.passed
    assert verdict.evidence["traffic_failures"] == 0
