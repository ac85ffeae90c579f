"""The health gate: sample probes over a bake window and decide pass, fail or inconclusive.

Two sources: active probes of the slot's endpoints, and, where the router counts them, the real
requests the slot served (its 5xx, retried 5xx and connect failures: with fallback to stable,
users never see those, so the router's counters are the only place they show). This is the
simple evaluator; the full gate engine (breakers, PromQL, canary-vs-stable analysis) replaces
`SimpleGateEvaluator` behind the same `run_gate`. A gate fails fast: the first decisive breach
ends it, the rest of the bake is not waited out.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from zdp.models import GateResult, GateThresholds, GateVerdict, ProbeResult
from zdp.platforms.base import HealthProbe

Progress = Callable[[dict[str, float]], None]
# Cumulative (requests, failures) the router has counted for the slot so far.
TrafficCounter = Callable[[], Awaitable[tuple[int, int]]]


@dataclass
class SimpleGateEvaluator:
    """Error ratio and p95 latency over every probe result seen so far.

    A result that timed out is evidence of slowness, not an error: it is counted apart
    (`timeouts`) and never enters the error ratio. `judge_latency` off leaves slowness to a
    comparison with the baseline (the gate engine does that when it has one).
    """

    thresholds: GateThresholds
    slot: str
    results: list[ProbeResult] = field(default_factory=list)
    traffic_requests: int = 0
    traffic_failures: int = 0
    judge_latency: bool = True
    # Running counts, so that judging every tick costs nothing however long the bake is.
    errors: int = 0
    timeouts: int = 0
    first_error: ProbeResult | None = None

    def add(self, batch: Sequence[ProbeResult]) -> None:
        for result in batch:
            self.results.append(result)
            if result.timed_out:
                self.timeouts += 1
            elif not result.ok:
                self.errors += 1
                self.first_error = self.first_error or result

    def set_traffic(self, requests: int, failures: int) -> None:
        """Requests the slot served since the gate began, and how many of them failed."""
        self.traffic_requests, self.traffic_failures = requests, failures

    def p95_ms(self) -> float:
        """The p95 latency of the answered results (a sort: called for verdicts, not per tick)."""
        latencies = sorted(r.latency_ms for r in self.results if r.ok)
        return latencies[max(0, math.ceil(0.95 * len(latencies)) - 1)] if latencies else 0.0

    def evidence(self, latency: bool = True) -> dict[str, float]:
        n = len(self.results)
        served = self.traffic_requests
        counts = {
            "samples": float(n),
            "errors": float(self.errors),
            "error_ratio": self.errors / n if n else 0.0,
            "timeouts": float(self.timeouts),
            "traffic_requests": float(served),
            "traffic_failures": float(self.traffic_failures),
            "traffic_error_ratio": self.traffic_failures / served if served else 0.0,
        }
        return counts | ({"latency_p95_ms": round(self.p95_ms(), 3)} if latency else {})

    def thresholds_dict(self) -> dict[str, float]:
        t = self.thresholds
        applied = {
            "max_error_ratio": t.max_error_ratio,
            "min_samples": float(t.min_samples),
            "min_failures": float(t.min_failures),
        }
        return applied | ({"max_latency_ms": t.max_latency_ms} if self.judge_latency else {})

    def breach(self) -> str | None:
        """A decisive failure, if there is one already."""
        ev = self.evidence(latency=False)
        if (
            ev["traffic_requests"] >= self.thresholds.min_samples
            and ev["traffic_failures"] >= self.thresholds.min_failures
            and ev["traffic_error_ratio"] > self.thresholds.max_error_ratio
        ):
            return (
                f"{int(ev['traffic_failures'])} of {int(ev['traffic_requests'])} requests served "
                f"failed ({ev['traffic_error_ratio']:.2%}), more than "
                f"{self.thresholds.max_error_ratio:.2%}"
            )
        if ev["samples"] < self.thresholds.min_samples:
            return None
        if (
            ev["error_ratio"] > self.thresholds.max_error_ratio
            and ev["errors"] >= self.thresholds.min_failures
        ):
            first = self.first_error
            assert first is not None
            return (
                f"error ratio {ev['error_ratio']:.2%} over {int(ev['samples'])} probes exceeds "
                f"{self.thresholds.max_error_ratio:.2%} (first: {first.endpoint}: {first.error})"
            )
        if self.judge_latency and (p95 := self.p95_ms()) > self.thresholds.max_latency_ms:
            return f"p95 latency {p95:.1f} ms exceeds {self.thresholds.max_latency_ms:.1f} ms"
        return None

    def pass_reason(self) -> str:
        """Why the evidence does not fail the slot, in words, with the numbers."""
        ev, t = self.evidence(), self.thresholds
        errors, n = int(ev["errors"]), int(ev["samples"])
        parts = [f"{n} probes, {errors} errors ({ev['error_ratio']:.2%})"]
        if ev["error_ratio"] > t.max_error_ratio:
            parts[0] += (
                f": over the {t.max_error_ratio:.2%} budget but fewer than min_failures "
                f"{t.min_failures}"
            )
        if ev["timeouts"]:
            parts.append(f"{int(ev['timeouts'])} timed out (slowness, not errors)")
        served, failed = int(ev["traffic_requests"]), int(ev["traffic_failures"])
        if served or failed:
            text = f"{served} real requests served, {failed} failed"
            if ev["traffic_error_ratio"] > t.max_error_ratio and failed < t.min_failures:
                text += f" (fewer than min_failures {t.min_failures})"
            elif ev["traffic_error_ratio"] > t.max_error_ratio:
                text += f" (fewer than min_samples {t.min_samples} requests)"
            parts.append(text)
        parts.append(f"p95 {ev['latency_p95_ms']:.1f} ms")
        return ", ".join(parts)

    def verdict(self, *, final: bool) -> GateVerdict | None:
        """A verdict once one is decided: a breach at any time, pass/inconclusive at the end."""
        reason = self.breach()
        if reason:
            result = GateResult.failed
        elif not final:
            return None
        elif len(self.results) < self.thresholds.min_samples:
            result = GateResult.inconclusive
            reason = f"only {len(self.results)} probes, {self.thresholds.min_samples} needed"
        else:
            result = GateResult.passed
            reason = self.pass_reason()
        ev = self.evidence()
        return GateVerdict(
            result=result,
            reason=reason,
            slot=self.slot,
            samples=int(ev["samples"]),
            evidence=ev,
            thresholds=self.thresholds_dict(),
        )


async def sweep(
    probe: HealthProbe, endpoints: Sequence[str], concurrency: int = 32
) -> list[ProbeResult]:
    """Probe every endpoint once, in parallel, with bounded concurrency."""
    limit = asyncio.Semaphore(concurrency)

    async def one(endpoint: str) -> ProbeResult:
        async with limit:
            return await probe.probe(endpoint)

    return list(await asyncio.gather(*(one(e) for e in endpoints)))


async def run_gate(
    probe: HealthProbe,
    endpoints: Callable[[], Awaitable[list[str]]],
    thresholds: GateThresholds,
    slot: str,
    bake_seconds: float,
    progress: Progress | None = None,
    traffic: TrafficCounter | None = None,
) -> GateVerdict:
    """Probe `slot` every interval for `bake_seconds` (and until min_samples), failing fast.

    The window is extended past `bake_seconds` only as long as needed to collect
    `min_samples`, and never beyond twice the bake plus one second: a slot with no endpoints
    ends inconclusive instead of waiting forever.
    """
    evaluator = SimpleGateEvaluator(thresholds=thresholds, slot=slot)
    baseline = await traffic() if traffic is not None else (0, 0)
    started = time.monotonic()
    hard_stop = (
        started
        + 2 * bake_seconds
        + 1.0
        + thresholds.min_samples * thresholds.probe_interval_seconds
    )
    while True:
        tick = time.monotonic()
        targets = await endpoints()
        if targets:
            evaluator.add(await sweep(probe, targets))
        if traffic is not None:
            requests, failures = await traffic()
            evaluator.set_traffic(requests - baseline[0], failures - baseline[1])
        elapsed = time.monotonic() - started
        baked = elapsed >= bake_seconds
        enough = len(evaluator.results) >= thresholds.min_samples
        final = (baked and enough) or time.monotonic() >= hard_stop
        verdict = evaluator.verdict(final=final)
        if progress is not None:
            progress({**evaluator.evidence(), "elapsed_s": round(elapsed, 3)})
        if verdict is not None:
            return verdict
        await asyncio.sleep(max(0.0, thresholds.probe_interval_seconds - (time.monotonic() - tick)))
