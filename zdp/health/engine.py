"""The gate engine: every health source for one slot over one bake window, and the verdict.

Sources, each judged as soon as it has enough data, so the first decisive breach ends the gate:
1. probes of the slot's endpoints, swept in parallel behind per-endpoint circuit breakers
   (results also go to the health-state cache);
2. the router's counters of what the slot served (5xx, retried 5xx, connect failures), against
   the error budget and against the baseline slot's own ratio;
3. sampled requests to the app's `sample_path` on the new slot AND on the baseline, compared
   with a one-sided Mann-Whitney U test (latency) and counted for errors;
4. PromQL metric templates, when ZDP_PROMETHEUS_URL is set.
Differential diagnosis: when the baseline is as sick as the new version, the release is not the
cause; the verdict is inconclusive with a `diagnosis` and the workflow pauses instead of
rolling back.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from zdp.errors import ZdpError
from zdp.health.analysis import Comparison, compare_errors, compare_latency, diagnose
from zdp.health.breaker import BreakerBoard
from zdp.health.cache import HealthCache
from zdp.health.gate import SimpleGateEvaluator
from zdp.health.policy import GatePolicies, GatePolicy, load_gate_policies
from zdp.health.prometheus import PrometheusProvider, TemplateRun
from zdp.models import GateInput, GateResult, GateVerdict, ProbeResult
from zdp.platforms.base import HealthProbe, Runtime, TrafficRouter, TrafficStats

Progress = Callable[[dict[str, float]], None]


@dataclass
class _Side:
    """Everything measured for one slot during the gate."""

    slot: str
    evaluator: SimpleGateEvaluator
    latencies_ms: list[float] = field(default_factory=list)
    baseline_counts: tuple[int, int] | None = None


class LatencySampler:
    """GETs `path` on each slot's endpoints at a fixed rate, directly (not through the proxy),
    so both slots are measured the same way whatever their traffic weight."""

    def __init__(self, path: str, rate_per_s: float, timeout: float = 2.0) -> None:
        self.path = path
        self.interval = 1.0 / max(rate_per_s, 0.1)
        self.timeout = timeout
        self.client = httpx.AsyncClient(timeout=timeout, trust_env=False)

    async def run(self, endpoints: Callable[[], list[str]], side: _Side) -> None:
        """Send samples on a fixed schedule, never waiting for answers: a slow slot must not
        slow its own sampling, or a latency fault would starve the comparison of samples."""
        pending: set[asyncio.Task[None]] = set()
        try:
            while True:
                for endpoint in [e for e in endpoints() if e.startswith("http")]:
                    task = asyncio.create_task(self._one(endpoint, side))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                await asyncio.sleep(self.interval)
        finally:
            for task in pending:
                task.cancel()

    async def _one(self, endpoint: str, side: _Side) -> None:
        started = time.perf_counter()
        try:
            answer = await self.client.get(endpoint.rstrip("/") + self.path)
            status: int | None = answer.status_code
            ok, error = (
                answer.status_code < 400,
                (None if answer.status_code < 400 else f"HTTP {answer.status_code}"),
            )
        except httpx.HTTPError as err:
            ok, status, error = False, None, type(err).__name__
        latency = (time.perf_counter() - started) * 1000
        side.evaluator.add(
            [
                ProbeResult(
                    endpoint=endpoint + self.path,
                    ok=ok,
                    latency_ms=latency,
                    status_code=status,
                    error=error,
                )
            ]
        )
        if ok:
            side.latencies_ms.append(latency)

    async def aclose(self) -> None:
        await self.client.aclose()


class GateEngine:
    def __init__(
        self,
        runtime: Runtime,
        probe: HealthProbe,
        router: TrafficRouter | None = None,
        policies: GatePolicies | None = None,
        cache: HealthCache | None = None,
        prometheus_url: str | None = None,
    ) -> None:
        self.runtime = runtime
        self.probe = probe
        self.router = router
        self._policies = policies
        self.cache = cache
        self.prometheus_url = prometheus_url or os.environ.get("ZDP_PROMETHEUS_URL")

    def policy(self, request: GateInput) -> GatePolicy | None:
        """The gate policy for this app, environment and risk level, if one is configured."""
        if request.environment is None or request.risk_level is None:
            return None
        try:
            policies = self._policies or load_gate_policies()
            return policies.for_deployment(request.app, request.environment, request.risk_level)
        except ZdpError:
            return None

    async def run(self, request: GateInput, progress: Progress | None = None) -> GateVerdict:
        policy = self.policy(request)
        thresholds = request.thresholds
        if policy is not None:
            # The stricter error budget of the two wins. The sample minimum stays the risk
            # tier's: a canary at 1% sees few requests, and a breach must end the gate fast.
            thresholds = thresholds.model_copy(
                update={"max_error_ratio": min(thresholds.max_error_ratio, policy.max_error_ratio)}
            )
        board = BreakerBoard(
            failure_threshold=policy.breaker_failure_threshold if policy else 3,
            open_seconds=policy.breaker_open_seconds if policy else 1.0,
        )
        new = _Side(request.slot, SimpleGateEvaluator(thresholds, request.slot))
        base = (
            _Side(request.baseline_slot, SimpleGateEvaluator(thresholds, request.baseline_slot))
            if request.baseline_slot
            else None
        )
        endpoints: dict[str, list[str]] = {}

        async def refresh() -> None:
            for side in filter(None, (new, base)):
                endpoints[side.slot] = await self.runtime.endpoints(request.app, side.slot)

        await refresh()
        for side in filter(None, (new, base)):
            side.baseline_counts = await self._counts(request.app, side.slot)
        sampler = (
            LatencySampler(policy.sample_path, policy.sample_rate_per_s)
            if (policy and policy.sample_path)
            else None
        )

        def endpoints_of(slot: str) -> Callable[[], list[str]]:
            return lambda: endpoints.get(slot, [])

        tasks = [
            asyncio.create_task(sampler.run(endpoints_of(side.slot), side))
            for side in filter(None, (new, base))
            if sampler is not None
        ]
        provider = PrometheusProvider(self.prometheus_url) if self.prometheus_url else None
        templates = [TemplateRun(t) for t in policy.templates] if (policy and provider) else []
        started = time.monotonic()
        interval = thresholds.probe_interval_seconds
        hard_stop = started + 2 * request.bake_seconds + 5.0
        try:
            while True:
                tick = time.monotonic()
                await refresh()
                for side in filter(None, (new, base)):
                    results = await board.sweep(self.probe, endpoints.get(side.slot, []))
                    side.evaluator.add(results)
                    if self.cache is not None:
                        for result in results:
                            with contextlib.suppress(ZdpError):
                                await self.cache.put(result)
                    counts = await self._counts(request.app, side.slot)
                    if counts is not None and side.baseline_counts is not None:
                        side.evaluator.set_traffic(
                            counts[0] - side.baseline_counts[0],
                            counts[1] - side.baseline_counts[1],
                        )
                template_results = [
                    await run.step(provider, request.app, request.slot, request.version)
                    for run in templates
                    if provider is not None
                ]
                elapsed = time.monotonic() - started
                latency_ready = (
                    sampler is None
                    or base is None
                    or policy is None
                    or min(len(new.latencies_ms), len(base.latencies_ms))
                    >= policy.latency.min_samples
                )
                final = (
                    elapsed >= request.bake_seconds
                    and len(new.evaluator.results) >= thresholds.min_samples
                    and latency_ready
                ) or time.monotonic() >= hard_stop
                verdict = self._judge(new, base, policy, template_results, final)
                if progress is not None:
                    progress({**new.evaluator.evidence(), "elapsed_s": round(elapsed, 3)})
                if verdict is not None:
                    verdict.breaker_transitions.extend(
                        f"{t.endpoint}: {t.old.value} -> {t.new.value} ({t.reason})"
                        for t in board.take_transitions()
                    )
                    return verdict
                await asyncio.sleep(max(0.0, interval - (time.monotonic() - tick)))
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if sampler is not None:
                await sampler.aclose()
            if provider is not None:
                await provider.aclose()

    async def _counts(self, app: str, slot: str) -> tuple[int, int] | None:
        router = self.router
        if not isinstance(router, TrafficStats):
            return None
        stats = (await router.slot_stats(app)).get(slot)
        return (stats.requests, stats.failures) if stats is not None else (0, 0)

    def _judge(
        self,
        new: _Side,
        base: _Side | None,
        policy: GatePolicy | None,
        template_results: list[GateResult | None],
        final: bool,
    ) -> GateVerdict | None:
        comparisons = self._comparisons(new, base, policy)
        failed = [c for c in comparisons if c.result is GateResult.failed]
        simple = new.evaluator.verdict(final=final)
        reason: str | None = None
        kind = "errors"  # which dimension failed: the diagnosis compares the baseline on it
        if simple is not None and simple.result is GateResult.failed:
            reason = simple.reason
            kind = "latency" if "latency" in simple.reason else "errors"
        elif failed:
            reason, kind = failed[0].reason, failed[0].metric
        elif GateResult.failed in template_results:
            reason, kind = "a PromQL metric template failed", "template"
        evidence = new.evaluator.evidence()
        for c in comparisons:
            evidence.update({f"{c.metric}.{k}": v for k, v in c.evidence.items()})
        if base is not None:
            evidence.update({f"baseline.{k}": v for k, v in base.evaluator.evidence().items()})
        thresholds = new.evaluator.thresholds_dict()
        if reason is not None:
            diagnosis = self._diagnose(new, base, policy, kind)
            return GateVerdict(
                result=GateResult.inconclusive if diagnosis else GateResult.failed,
                reason=reason,
                slot=new.slot,
                samples=int(evidence["samples"]),
                evidence=evidence,
                thresholds=thresholds,
                diagnosis=diagnosis,
            )
        if not final or simple is None:
            return None
        inconclusive = [c for c in comparisons if c.result is GateResult.inconclusive]
        details = [c.reason for c in inconclusive]
        return GateVerdict(
            result=simple.result,
            reason=simple.reason,
            slot=new.slot,
            samples=simple.samples,
            evidence=evidence,
            thresholds=thresholds,
            details=details,
        )

    @staticmethod
    def _comparisons(new: _Side, base: _Side | None, policy: GatePolicy | None) -> list[Comparison]:
        if base is None or policy is None:
            return []
        out = [
            compare_errors(
                new.evaluator.traffic_requests,
                new.evaluator.traffic_failures,
                base.evaluator.traffic_requests,
                base.evaluator.traffic_failures,
                min_requests=policy.errors.min_requests,
                max_error_ratio=policy.max_error_ratio,
                max_ratio_to_stable=policy.errors.max_ratio_to_stable,
            )
        ]
        if new.latencies_ms or base.latencies_ms:
            # The most recent window on each side: a slowdown that starts mid-bake is judged on
            # what the slot does now, not diluted by the healthy samples before it.
            window = policy.latency.min_samples
            out.append(
                compare_latency(
                    new.latencies_ms[-window:],
                    base.latencies_ms[-window:],
                    min_samples=policy.latency.min_samples,
                    alpha=policy.latency.alpha,
                    max_slowdown_ms=policy.latency.max_slowdown_ms,
                    max_slowdown_ratio=policy.latency.max_slowdown_ratio,
                )
            )
        return out

    @staticmethod
    def _diagnose(
        new: _Side, base: _Side | None, policy: GatePolicy | None, kind: str
    ) -> str | None:
        """Is the baseline as sick as the new slot, on the dimension that failed?

        Only that dimension counts: a canary 200 ms slower is not excused by one stray probe
        error on stable, and the baseline must be degraded itself (beyond the error budget,
        or slow beyond the latency floor), not merely "no better".
        """
        if base is None or kind == "template":
            return None
        tolerance = policy.diagnosis_tolerance if policy else 0.5
        if kind == "latency":
            return diagnose(
                0.0, 0.0, _median(new.latencies_ms), _median(base.latencies_ms), tolerance=tolerance
            )
        n, b = new.evaluator.evidence(), base.evaluator.evidence()
        budget = new.evaluator.thresholds.max_error_ratio
        return diagnose(
            max(n["error_ratio"], n["traffic_error_ratio"]),
            max(b["error_ratio"], b["traffic_error_ratio"]),
            0.0,
            0.0,
            tolerance=tolerance,
            floor_error_ratio=max(budget, 0.01) + 1e-9,
        )


def _median(values: list[float]) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[len(ordered) // 2]
