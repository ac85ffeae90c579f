"""The gate engine: every health source for one slot over one bake window, and the verdict.

What users experience decides (the rule is written out in gate-policies.yaml's header):
1. probes of the slot's endpoints, swept in parallel behind per-endpoint circuit breakers
   (results also go to the health-state cache). A refused or reset connection or a non-2xx
   answer is an error; a probe that does not answer in time is evidence of slowness;
2. the router's counters of what the slot served (5xx, retried 5xx, connect failures), against
   the error budget and against the baseline slot's own ratio: real users weigh most;
3. sampled requests to the app's `sample_path` on the new slot AND on the baseline: their
   errors count like probe errors, their timings (a request still in flight counts, censored)
   are compared with the baseline's over a short recent window, so a slowdown or a hang is
   caught within a few samples while a busy machine, which slows both, is not blamed;
4. PromQL metric templates, when ZDP_PROMETHEUS_URL is set.
Differential diagnosis: when the baseline fails as much as the new version, the release is not
the cause; the verdict is inconclusive with a `diagnosis` and the workflow pauses instead of
rolling back.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from zdp.errors import ConfigError, ZdpError
from zdp.gates import GatePolicy
from zdp.health.analysis import Comparison, Timing, compare_errors, compare_slowness, diagnose
from zdp.health.breaker import BreakerBoard
from zdp.health.cache import HealthCache
from zdp.health.cpu_wait import CpuEvidence, CpuSample, CpuTrack, heavier_on_cpu
from zdp.health.gate import SimpleGateEvaluator
from zdp.health.policy import GatePolicies, load_gate_policies, thresholds_of
from zdp.health.prometheus import PrometheusProvider, TemplateRun
from zdp.models import GateInput, GateResult, GateVerdict, ProbeResult
from zdp.platforms.base import HealthProbe, ProcessStats, Runtime, TrafficRouter, TrafficStats
from zdp.rawhttp import KeepAlivePool
from zdp.settings import settings
from zdp.tracing import outbound_header, outbound_span

Progress = Callable[[dict[str, float]], None]
# How long a sampled request may take before it is given up (it counts as slow all along).
SAMPLE_CEILING_S = 2.0
# How often the gate judges what it has, between probe sweeps: a hung slot's requests turn
# slow while in flight, and every tick of delay is on the containment clock.
JUDGE_EVERY_S = 0.01
# How often the gate reads each slot's process counters (where the runtime can): /proc reads
# cost about 60 us each in a busy gate, and a reading every 20 ms is fine enough for waits and
# stops that matter when they last a tenth of a second or more.
READ_CPU_EVERY_S = 0.02


@dataclass
class _Timed:
    """One probe or sampled request: when it was sent, and how it ended (None: in flight)."""

    sent_at: float
    ms: float | None = None
    timed_out: bool = False
    error: bool = False

    def timing(self, now: float) -> Timing | None:
        """Its timing for the slowness judge; None for an error (errors are judged apart)."""
        if self.error:
            return None
        if self.ms is None:
            return Timing((now - self.sent_at) * 1000, censored=True, at=self.sent_at)
        return Timing(self.ms, censored=self.timed_out, at=self.sent_at)


@dataclass
class _Side:
    """Everything measured for one slot during the gate."""

    slot: str
    evaluator: SimpleGateEvaluator
    samples: deque[_Timed] = field(default_factory=deque)
    probes: deque[_Timed] = field(default_factory=deque)
    samples_answered: int = 0
    baseline_counts: tuple[int, int] | None = None
    # (monotonic time, requests, failures) as the router counted them at each tick.
    traffic: deque[tuple[float, int, int]] = field(default_factory=deque)
    # Set when a sampled request, a probe or a served request fails: the gate judges at once.
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    # Every endpoint the runtime listed for the slot during this gate.
    seen: set[str] = field(default_factory=set)
    probes_answered: int = 0
    # The scheduler's readings of the slot's process, where the runtime has them, and (its CPU
    # time, requests it had handled) where the warm-up ended: between the last reading before
    # it (`cpu_before_warm`) and the first after, in proportion to the time.
    cpu: deque[CpuSample] = field(default_factory=deque)
    cpu_mark: tuple[float, int] | None = None
    cpu_before_warm: tuple[float, float, int] | None = None  # (at, CPU ms, handled)
    # Judgements whose slowness failure was the machine's (waiting for a CPU), and the most
    # taken from one answer: the record of what the rule excused.
    cpu_excused: int = 0
    cpu_excused_ms: float = 0.0
    # Every endpoint it had during this gate is gone: its version stopped running.
    down: bool = False

    def handled(self) -> int:
        """Requests its process handled during the gate: real, sampled and probes."""
        return self.evaluator.traffic_requests + self.samples_answered + self.probes_answered

    def vanished(self, current: list[str]) -> list[ProbeResult]:
        """An endpoint the runtime listed before and lists no more (its process died) is an
        error at every tick until the gate ends: a crash must not look like silence. When none
        is left, the slot stopped running (`down`)."""
        self.down = self.down or (bool(self.seen) and not current)
        gone = sorted(self.seen.difference(current))
        self.seen.update(current)
        return [
            ProbeResult(endpoint=e, ok=False, latency_ms=0.0, error="no longer running")
            for e in gone
        ]

    def recent(
        self, which: Iterable[_Timed], now: float, window: float, since: float
    ) -> list[Timing]:
        """Timings sent in the last `window` seconds, and not before `since` (the warm-up)."""
        start = max(now - window, since)
        timings = (t.timing(now) for t in which if t.sent_at >= start)
        return [t for t in timings if t is not None]

    def trim(self, now: float, window: float) -> None:
        """Forget timings older than the window (the error counts keep everything)."""
        for queue in (self.samples, self.probes):
            while queue and queue[0].sent_at < now - window:
                queue.popleft()
        while len(self.traffic) > 1 and self.traffic[1][0] <= now - window:
            self.traffic.popleft()
        while len(self.cpu) > 2 and self.cpu[1].at <= now - window:
            self.cpu.popleft()

    def served_in_window(self) -> tuple[int, int]:
        """Real requests served and failed over the traffic window the side keeps."""
        if len(self.traffic) < 2:
            return 0, 0
        (_, r0, f0), (_, r1, f1) = self.traffic[0], self.traffic[-1]
        return r1 - r0, f1 - f0


class LatencySampler:
    """GETs `path` on each slot's endpoints at a fixed rate, directly (not through the proxy),
    so both slots are measured the same way, at the same moments, whatever their weight."""

    def __init__(self, rate_per_s: float, timeout: float = SAMPLE_CEILING_S) -> None:
        self.interval = 1.0 / max(rate_per_s, 0.1)
        self.timeout = timeout
        # Raw keep-alive pools, not httpx: a general client costs about 2 ms of CPU a request
        # here (zdp/rawhttp.py), and the gate's own CPU is taken from the judge's punctuality.
        self._pools: dict[str, KeepAlivePool] = {}

    async def run(self, sides: list[tuple[Callable[[], list[str]], _Side, str]]) -> None:
        """Send samples on a fixed schedule to every side in the same instant, never waiting
        for answers: a slow slot must not slow its own sampling, or a latency fault would
        starve the comparison of samples."""
        pending: set[asyncio.Task[None]] = set()
        next_at = time.monotonic()
        try:
            while True:
                for endpoints, side, path in sides:
                    for endpoint in [e for e in endpoints() if e.startswith("http")]:
                        timed = _Timed(sent_at=time.monotonic())
                        side.samples.append(timed)
                        task = asyncio.create_task(self._one(endpoint + path, side, timed))
                        pending.add(task)
                        task.add_done_callback(pending.discard)
                next_at += self.interval
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        finally:
            for task in pending:
                task.cancel()

    async def _one(self, url: str, side: _Side, timed: _Timed) -> None:
        status: int | None = None
        error: str | None = None
        pool = self._pools.get(url)
        if pool is None:
            # Enough connections for every request still in flight to a hung slot.
            limit = int(self.timeout / self.interval) + 8
            pool = self._pools[url] = KeepAlivePool(url, limit)
        try:
            async with asyncio.timeout(self.timeout):
                # The gate span's traceparent: the app's request joins the trace (sampled once
                # a second per URL, zdp.tracing).
                status = await pool.get(outbound_header(url))
            error = None if status < 400 else f"HTTP {status}"
        except TimeoutError:
            timed.timed_out = True
            error = f"no answer within {self.timeout:g} s"
        except ConnectionRefusedError:
            error = "connection refused"
        except (OSError, asyncio.IncompleteReadError, ValueError) as err:
            error = type(err).__name__
        timed.ms = (time.monotonic() - timed.sent_at) * 1000
        timed.error = error is not None and not timed.timed_out
        side.samples_answered += 1
        if timed.error:
            side.wake.set()
        side.evaluator.add(
            [
                ProbeResult(
                    endpoint=url,
                    ok=error is None,
                    latency_ms=timed.ms,
                    status_code=status,
                    error=error,
                    timed_out=timed.timed_out,
                )
            ]
        )

    async def aclose(self) -> None:
        pools, self._pools = self._pools, {}
        for pool in pools.values():
            pool.close()


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
        self.prometheus_url = prometheus_url or settings().PROMETHEUS_URL

    def policy(self, request: GateInput) -> GatePolicy:
        """The gate policy: the one the deployment's policy decision resolved (newer histories),
        else, for a deployment that started before policies travelled with it, the policy
        named after its risk level. ConfigError when there is none: never a gate that checks
        less than it says."""
        if request.policy is not None:
            return request.policy
        if request.environment is None or request.risk_level is None:
            raise ConfigError(
                f"gate {request.label or request.slot}: no gate policy in the gate's input and "
                "no environment and risk level to look one up by"
            )
        policies = self._policies or load_gate_policies()
        return policies.for_deployment(request.app, request.environment, request.risk_level.value)

    async def run(self, request: GateInput, progress: Progress | None = None) -> GateVerdict:
        """The verdict on the slot, in a span of its own: every probe and sampled request the
        gate makes names that span in its `traceparent`, so the apps' requests join the trace."""
        attributes = {"zdp.app": request.app, "zdp.slot": request.slot}
        with outbound_span(f"gate {request.label or request.slot}", attributes) as span:
            verdict = await self._run(request, progress)
            span.set_attribute("zdp.gate.result", verdict.result.value)
            return verdict

    async def _run(self, request: GateInput, progress: Progress | None = None) -> GateVerdict:
        policy = self.policy(request)
        # Older inputs carried their thresholds; the stricter error budget of the two wins.
        thresholds = thresholds_of(policy)
        if request.policy is None:
            thresholds = request.thresholds.model_copy(
                update={"max_error_ratio": min(thresholds.max_error_ratio, policy.max_error_ratio)}
            )
        board = BreakerBoard(
            failure_threshold=policy.breaker_failure_threshold,
            open_seconds=policy.breaker_open_seconds,
        )
        # Slowness is judged against a baseline measured at the same moments, never against a
        # fixed number: on a busy machine every fixed number is eventually exceeded.
        new = _Side(
            request.slot, SimpleGateEvaluator(thresholds, request.slot, judge_latency=False)
        )
        base = (
            _Side(
                request.baseline_slot,
                SimpleGateEvaluator(thresholds, request.baseline_slot, judge_latency=False),
            )
            if request.baseline_slot
            else None
        )
        sides = [s for s in (new, base) if s is not None]
        endpoints: dict[str, list[str]] = {}

        async def refresh() -> None:
            for side in sides:
                endpoints[side.slot] = await self.runtime.endpoints(request.app, side.slot)

        await refresh()
        for side in sides:
            side.baseline_counts = await self._counts(request.app, side.slot)
        sampler = LatencySampler(policy.sample_rate_per_s) if policy.sample_path else None
        # Without a fair baseline, the slot's own reference path (its liveness) is the baseline
        # of its sampled requests: same process, same load, same moments. A baseline is unfair
        # when it serves less traffic than the new slot (a blue-green watch after the switch,
        # a canary at 100%): an idle process answers faster than one serving every user.
        unfair = (
            base is not None
            and request.weight is not None
            and request.baseline_weight is not None
            and request.baseline_weight < request.weight
        )
        reference = (
            _Side(
                f"{request.slot}{policy.reference_path}",
                SimpleGateEvaluator(thresholds, request.slot, judge_latency=False),
            )
            if (base is None or unfair) and sampler is not None
            else None
        )

        def endpoints_of(slot: str) -> Callable[[], list[str]]:
            return lambda: endpoints.get(slot, [])

        streams = [(endpoints_of(s.slot), s, policy.sample_path or "") for s in sides]
        if reference is not None:
            streams.append((endpoints_of(request.slot), reference, policy.reference_path))
        tasks = [asyncio.create_task(sampler.run(streams))] if sampler is not None else []
        provider = PrometheusProvider(self.prometheus_url) if self.prometheus_url else None
        templates = [TemplateRun(t) for t in policy.templates] if provider else []
        started = time.monotonic()
        interval = policy.probe_interval_seconds
        window = policy.latency.window_seconds
        probe_timeout = policy.probe_timeout_ms / 1000
        hard_stop = started + 2 * request.bake_seconds + 5.0
        stats = self.runtime if isinstance(self.runtime, ProcessStats) else None

        async def sweep_forever() -> None:
            """Probes and the router's counters, every probe interval, in their own task: a
            sweep that waits out a hung endpoint's probe deadline must not delay the judge."""
            while True:
                tick = time.monotonic()
                await refresh()
                for side in sides:
                    current = endpoints.get(side.slot, [])
                    results = await board.sweep(self.probe, current, timeout=probe_timeout)
                    results += side.vanished(current)
                    side.evaluator.add(results)
                    side.probes.extend(_probe_timing(tick, r) for r in results)
                    side.probes_answered += len(results)
                    if any(not r.ok and not r.timed_out for r in results):
                        side.wake.set()
                    if self.cache is not None:
                        for result in results:
                            with contextlib.suppress(ZdpError):
                                await self.cache.put(result)
                    counts = await self._counts(request.app, side.slot)
                    if counts is not None and side.baseline_counts is not None:
                        requests = counts[0] - side.baseline_counts[0]
                        failures = counts[1] - side.baseline_counts[1]
                        if failures > side.evaluator.traffic_failures:
                            side.wake.set()
                        side.evaluator.set_traffic(requests, failures)
                        side.traffic.append((time.monotonic(), requests, failures))
                await asyncio.sleep(max(0.0, interval - (time.monotonic() - tick)))

        sweeper = asyncio.create_task(sweep_forever())
        tasks.append(sweeper)
        try:
            while True:
                tick = time.monotonic()
                if sweeper.done():
                    sweeper.result()  # a sweep that failed fails the gate's activity (retried)
                template_results = [
                    await run.step(
                        provider,
                        request.app,
                        request.slot,
                        request.version,
                        request.environment or "",
                    )
                    for run in templates
                    if provider is not None
                ]
                now = time.monotonic()
                elapsed = now - started
                since = started + policy.latency.warmup_seconds
                if stats is not None:
                    _read_cpu(stats, request.app, new, base, reference, since)
                comparisons = self._comparisons(
                    new,
                    base,
                    reference,
                    policy,
                    now,
                    since=since,
                    exposed=(request.weight or 0) > 0,
                )
                enough, short = self._enough(new, reference or base, policy, request)
                final = (elapsed >= request.bake_seconds and enough) or now >= hard_stop
                verdict = self._judge(
                    new, base, policy, comparisons, template_results, final, short
                )
                if progress is not None:
                    evidence = new.evaluator.evidence(latency=False)
                    progress({**evidence, "elapsed_s": round(elapsed, 3)})
                if verdict is not None:
                    verdict.evidence.update(_cpu_waits(new, base))
                    # What each PromQL template measured, in the verdict for the record.
                    for run in templates:
                        verdict.evidence.update(run.evidence())
                        verdict.details.append(run.reason())
                    verdict.breaker_transitions.extend(
                        f"{t.endpoint}: {t.old.value} -> {t.new.value} ({t.reason})"
                        for t in board.take_transitions()
                    )
                    return verdict
                for side in filter(None, (*sides, reference)):
                    side.trim(now, window)
                pause = JUDGE_EVERY_S - (time.monotonic() - tick)
                await _until_tick_or_error(new.wake, pause)
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

    def _enough(
        self,
        new: _Side,
        base: _Side | None,
        policy: GatePolicy,
        request: GateInput,
    ) -> tuple[bool, str | None]:
        """Whether there is enough evidence to end the bake; if not, what is missing.

        A gate does not pass on nothing: min_samples probes of the slot (a bake shorter than
        the sweeps that bring them, a zero bake too, is extended until they are in), sampled
        timings on both sides up to latency.min_samples, and a slot that takes real traffic
        needs errors.min_requests requests judged, real ones plus sampled ones."""
        probes, needed = len(new.evaluator.results), new.evaluator.thresholds.min_samples
        if probes < needed:
            return False, f"only {probes} probes, {needed} needed"
        if policy.sample_path and base is not None:
            fewest = min(new.samples_answered, base.samples_answered)
            if fewest < policy.latency.min_samples:
                return False, (
                    f"too few sampled requests to compare ({new.samples_answered} new, "
                    f"{base.samples_answered} baseline; need {policy.latency.min_samples} each)"
                )
        takes_traffic = (request.weight or 0) > 0 and isinstance(self.router, TrafficStats)
        judged = new.evaluator.traffic_requests + new.samples_answered
        if takes_traffic and judged < policy.errors.min_requests:
            return False, (
                f"nothing to judge: {new.evaluator.traffic_requests} real and "
                f"{new.samples_answered} sampled requests on {new.slot}; need "
                f"{policy.errors.min_requests}"
            )
        return True, None

    def _judge(
        self,
        new: _Side,
        base: _Side | None,
        policy: GatePolicy,
        comparisons: list[Comparison],
        template_results: list[GateResult | None],
        final: bool,
        short: str | None,
    ) -> GateVerdict | None:
        if base is not None and base.down:
            # The version users are served from died under the canary: whatever the new slot
            # shows, the release did not cause it, and rolling back would return users to
            # nothing. The workflow pauses with this diagnosis (an alert) for an operator.
            return GateVerdict(
                result=GateResult.inconclusive,
                reason=f"the baseline {base.slot} stopped running during the gate",
                slot=new.slot,
                samples=int(new.evaluator.evidence()["samples"]),
                evidence=new.evaluator.evidence(),
                thresholds=new.evaluator.thresholds_dict(),
                diagnosis=(
                    f"the baseline {base.slot} stopped running (every endpoint it had is gone), "
                    f"not because of this release; promote to move all traffic to {new.slot}"
                ),
                dimension="errors",
            )
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
        if reason is None and (not final or simple is None):
            return None
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
                dimension=kind,
            )
        assert simple is not None  # a verdict without a failure is only written when final
        details = [c.reason for c in comparisons]
        if self.prometheus_url is None and policy.templates:
            details.append(
                f"{len(policy.templates)} PromQL template(s) not run: ZDP_PROMETHEUS_URL is unset"
            )
        result, why = simple.result, simple.reason
        if short is not None and result is GateResult.passed:
            result, why = GateResult.inconclusive, f"{short} by the end of the extended bake"
        elif result is GateResult.passed:
            why = f"passed: {why}"
        return GateVerdict(
            result=result,
            reason=why,
            slot=new.slot,
            samples=simple.samples,
            evidence=evidence,
            thresholds=thresholds,
            details=details,
        )

    @staticmethod
    def _comparisons(
        new: _Side,
        base: _Side | None,
        reference: _Side | None,
        policy: GatePolicy,
        now: float,
        since: float,
        exposed: bool,
    ) -> list[Comparison]:
        lat, window = policy.latency, policy.latency.window_seconds
        # Both slots' processes as the scheduler saw them (the own-reference comparison is one
        # process against itself: nothing to take out there).
        both = _cpu_evidence(new, base, reference, policy)
        # How long the slot must have been slow: half the window unless the policy says. Speed
        # matters only where users are: a slot without traffic weight (a pre-switch or
        # pre-traffic gate) must be slow for 0.6 of the window, not a fresh process's moment.
        span = lat.min_span_seconds if lat.min_span_seconds is not None else window / 2
        if not exposed:
            span = max(span, 0.6 * window)

        def slowness(
            what: str,
            new_t: list[Timing],
            base_t: list[Timing],
            live: bool = False,
            cpu: CpuEvidence | None = None,
        ) -> Comparison:
            return compare_slowness(
                new_t,
                base_t,
                what=what,
                min_slow=lat.min_slow,
                alpha=lat.alpha,
                max_slowdown_ms=lat.max_slowdown_ms,
                max_slowdown_ratio=lat.max_slowdown_ratio,
                min_span_seconds=span,
                # The slot's own probes at the same moments tell its API's slowness from a
                # stall of its whole process (not for a slot nobody is exposed to).
                liveness=new.recent(new.probes, now, window, since) if live else (),
                responsive_span_seconds=lat.responsive_span_seconds if exposed else None,
                # The new slot's waiting for a CPU beyond the baseline's is the machine's, not
                # the release's (zdp/health/cpu_wait.py); only where both processes are read.
                cpu=cpu,
            )

        own = (
            slowness(
                f"sampled requests (against the slot's own {policy.reference_path}: "
                + ("no baseline slot)" if base is None else "the baseline serves less traffic)"),
                new.recent(new.samples, now, window, since),
                reference.recent(reference.samples, now, window, since),
                live=True,
            )
            if reference is not None
            else None
        )
        if base is None:
            return [own] if own is not None else []
        out = [
            compare_errors(
                new.evaluator.traffic_requests,
                new.evaluator.traffic_failures,
                base.evaluator.traffic_requests,
                base.evaluator.traffic_failures,
                min_requests=policy.errors.min_requests,
                max_error_ratio=policy.max_error_ratio,
                max_ratio_to_stable=policy.errors.max_ratio_to_stable,
                min_failures=policy.min_failures,
            )
        ]
        samples = own
        if own is not None:
            out.append(own)
        elif policy.sample_path:
            samples = slowness(
                "sampled requests",
                new.recent(new.samples, now, window, since),
                base.recent(base.samples, now, window, since),
                live=True,
                cpu=both,
            )
            out.append(samples)
        probes = slowness(
            "probes",
            new.recent(new.probes, now, window, since),
            base.recent(base.probes, now, window, since),
            cpu=both,
        )
        if probes.result is GateResult.failed:
            excuse = _probe_slowness_excuse(new, policy, samples)
            if excuse is not None:
                probes = Comparison(
                    GateResult.passed,
                    probes.metric,
                    f"{probes.reason}; not a failure: {excuse}",
                    probes.evidence,
                )
        out.append(probes)
        for c in out:  # a failure that net of waiting for a CPU passed: the machine's
            if c.evidence.get("cpu_wait_excused") == 1.0:
                new.cpu_excused += 1
                new.cpu_excused_ms = max(new.cpu_excused_ms, c.evidence["cpu_wait_taken_new_ms"])
        return out

    @staticmethod
    def _diagnose(new: _Side, base: _Side | None, policy: GatePolicy, kind: str) -> str | None:
        """Is the baseline as sick as the new slot, on the dimension that failed?

        Only errors are diagnosed: slowness is already judged against the baseline (a busy
        machine that slows both never fails the release), and a canary 200 ms slower is not
        excused by one stray error on stable. The baseline must be degraded itself (beyond the
        error budget), not merely "no better".
        """
        if base is None or kind != "errors":
            return None
        n, b = new.evaluator.evidence(), base.evaluator.evidence()
        budget = new.evaluator.thresholds.max_error_ratio
        return diagnose(
            max(n["error_ratio"], n["traffic_error_ratio"]),
            max(b["error_ratio"], b["traffic_error_ratio"]),
            0.0,
            0.0,
            tolerance=policy.diagnosis_tolerance,
            floor_error_ratio=max(budget, 0.01) + 1e-9,
        )


async def _until_tick_or_error(wake: asyncio.Event, seconds: float) -> None:
    """Sleep until the next tick, or until something the new slot answered fails."""
    if seconds > 0 and not wake.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), seconds)
    wake.clear()


def _read_cpu(
    stats: ProcessStats,
    app: str,
    new: _Side,
    base: _Side | None,
    reference: _Side | None,
    since: float,
) -> None:
    """One reading of each slot's process (two /proc reads each on the local runtime); the
    readings either side of the warm-up's end give where CPU used and requests handled are
    counted from (`_at_moment`)."""
    for side in filter(None, (new, base)):
        at = time.monotonic()
        if side.cpu and at - side.cpu[-1].at < READ_CPU_EVERY_S:
            continue
        with contextlib.suppress(ZdpError):
            times = stats.cpu_times(app, side.slot)
            if times is None:
                continue
            side.cpu.append(
                CpuSample(at, times.waiting_ms, times.running_ms, times.process_cpu_ms, times.state)
            )
            if side.cpu_mark is None:
                handled = side.handled()
                if side is new and reference is not None:
                    handled += reference.samples_answered  # the same process answers those
                if at < since:
                    side.cpu_before_warm = (at, times.process_cpu_ms, handled)
                else:
                    # From the warm-up's end, as the slow answers are counted: a first reading
                    # after it that came late (a busy machine) would leave out CPU the process
                    # used for answers already judged.
                    side.cpu_mark = _at_moment(
                        side.cpu_before_warm, (at, times.process_cpu_ms, handled), since
                    )


def _at_moment(
    before: tuple[float, float, int] | None, after: tuple[float, float, int], moment: float
) -> tuple[float, int]:
    """(CPU ms, requests handled) at `moment`, between a reading before it and one after it,
    each (at, CPU ms, handled), in proportion to the time (both only grow); the later reading
    alone without an earlier one."""
    at, cpu, handled = after
    if before is None or at <= before[0]:
        return cpu, handled
    t0, cpu0, handled0 = before
    share = min(1.0, max(0.0, (moment - t0) / (at - t0)))
    return cpu0 + share * (cpu - cpu0), round(handled0 + share * (handled - handled0))


def _cpu_evidence(
    new: _Side, base: _Side | None, reference: _Side | None, policy: GatePolicy
) -> CpuEvidence | None:
    """Both slots' readings for the slowness judge, and whether the new slot's waiting for a
    CPU is its own demand: clearly more CPU since the warm-up than the baseline's used for as
    many requests
    (another thread of its own burning CPU holds its serving thread on the run queue)."""
    if base is None or len(new.cpu) < 2 or len(base.cpu) < 2:
        return None
    lat = policy.latency
    demand = None
    evidence: dict[str, float] = {}
    if new.cpu_mark is not None and base.cpu_mark is not None:
        new_handled = new.handled() + (reference.samples_answered if reference else 0)
        used_new = (new.cpu[-1].process_cpu_ms - new.cpu_mark[0], new_handled - new.cpu_mark[1])
        used_base = (
            base.cpu[-1].process_cpu_ms - base.cpu_mark[0],
            base.handled() - base.cpu_mark[1],
        )
        demand = heavier_on_cpu(
            used_new, used_base, ratio=lat.cpu_demand_ratio, slack_ms=lat.cpu_demand_slack_ms
        )
        for name, (ms, n) in (("new", used_new), ("baseline", used_base)):
            evidence[f"cpu_{name}_ms"] = round(ms, 1)
            evidence[f"cpu_{name}_requests"] = float(n)
    return CpuEvidence(tuple(new.cpu), tuple(base.cpu), demand, evidence)


def _cpu_waits(new: _Side, base: _Side | None) -> dict[str, float]:
    """How long each slot's process waited for a CPU over the last window, and how often the
    gate found the new slot slow only for waiting, for the record."""
    out: dict[str, float] = {}
    if new.cpu:
        out["cpu_wait.excused_judgements"] = float(new.cpu_excused)
        out["cpu_wait.excused_most_ms"] = round(new.cpu_excused_ms, 1)
    for name, side in (("new", new), ("baseline", base)):
        if side is not None and len(side.cpu) >= 2:
            track = CpuTrack(side.cpu)
            out[f"cpu_wait.{name}_ms"] = round(track.waited(track.start, track.end), 1)
            out[f"cpu_wait.{name}_over_s"] = round(track.end - track.start, 3)
    return out


def _probe_timing(sent_at: float, result: ProbeResult) -> _Timed:
    """A probe result as a timing (an error, a skipped probe included, is judged apart)."""
    return _Timed(
        sent_at, result.latency_ms, result.timed_out, not result.ok and not result.timed_out
    )


def _probe_slowness_excuse(
    new: _Side, policy: GatePolicy, samples: Comparison | None
) -> str | None:
    """Why slow probes alone must not fail the slot: what users get says otherwise."""
    served, failed = new.served_in_window()
    if served >= policy.errors.min_requests and failed == 0:
        return f"{new.slot} served {served} real requests in the same window without a failure"
    if samples is not None and samples.result is GateResult.passed:
        return "the sampled requests to the same slot were not slower than the baseline's"
    return None
