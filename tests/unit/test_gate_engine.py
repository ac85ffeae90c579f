"""The gate engine's rule: what users experience decides; timeouts are slowness, not errors.

Each branch of the rule written in gate-policies.yaml's header has a test here. The slots are
fakes (a scripted probe, a router that counts what it is told, tiny HTTP servers for sampled
requests), so the verdicts do not depend on how busy the machine is.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import pytest

from zdp.errors import ConfigError
from zdp.gates import GatePolicy
from zdp.health.engine import GateEngine
from zdp.models import GateInput, GateResult, GateThresholds, ProbeResult

POLICY = GatePolicy(
    probe_interval_seconds=0.01,
    probe_timeout_ms=50,
    breaker_failure_threshold=3,
    breaker_open_seconds=1.0,
    min_samples=10,
    min_failures=3,
    max_error_ratio=0.01,
    latency={"min_samples": 10, "min_slow": 6, "window_seconds": 0.5, "max_slowdown_ms": 30},
    errors={"min_requests": 20},
)


def _input(policy: GatePolicy = POLICY, bake: float = 0.3, weight: int = 25) -> GateInput:
    return GateInput(
        app="shop",
        slot="canary",
        version="2.0.0",
        bake_seconds=bake,
        thresholds=GateThresholds(),
        baseline_slot="stable",
        policy=policy,
        weight=weight,
    )


class _Runtime:
    def __init__(self, endpoints: dict[str, list[str]]) -> None:
        self._endpoints = endpoints

    async def endpoints(self, app: str, slot: str) -> list[str]:
        return self._endpoints.get(slot, [])


class _Probe:
    """Answers each endpoint by a script: 'ok', 'timeout' or 'error', cycled."""

    def __init__(self, scripts: dict[str, list[str]]) -> None:
        self._cycles = {e: itertools.cycle(s) for e, s in scripts.items()}

    async def probe(self, endpoint: str) -> ProbeResult:
        outcome = next(self._cycles[endpoint])
        if outcome == "timeout":
            return ProbeResult(
                endpoint=endpoint, ok=False, latency_ms=50.0, error="timeout", timed_out=True
            )
        if outcome == "error":
            return ProbeResult(endpoint=endpoint, ok=False, latency_ms=1.0, error="HTTP 503")
        return ProbeResult(endpoint=endpoint, ok=True, latency_ms=1.0, status_code=200)


@dataclass
class _Counts:
    requests: int = 0
    failures: int = 0


class _Router:
    """Counts `per_tick` requests (and failures) for a slot each time it is read."""

    def __init__(self, per_tick: dict[str, tuple[int, int]]) -> None:
        self.per_tick = per_tick
        self.counts = {slot: _Counts() for slot in per_tick}

    async def set_weights(self, app: str, weights: Mapping[str, int]) -> dict[str, int]:
        return dict(weights)

    async def get_weights(self, app: str) -> dict[str, int]:
        return {}

    async def slot_stats(self, app: str) -> Mapping[str, _Counts]:
        for slot, (requests, failures) in self.per_tick.items():
            self.counts[slot].requests += requests
            self.counts[slot].failures += failures
        return self.counts


async def _judge(
    probe: dict[str, list[str]],
    router: _Router | None = None,
    endpoints: dict[str, list[str]] | None = None,
    request: GateInput | None = None,
) -> tuple[GateResult, str, list[str]]:
    runtime = _Runtime(endpoints or {"canary": ["c"], "stable": ["s"]})
    engine = GateEngine(runtime, _Probe(probe), router)  # type: ignore[arg-type]
    verdict = await asyncio.wait_for(engine.run(request or _input()), timeout=30)
    return verdict.result, verdict.reason, verdict.details


# --------------------------------------------------------------------------- probes


async def test_probe_timeouts_on_both_slots_alike_do_not_fail_the_gate() -> None:
    # The machine is busy: every third probe on either side misses its deadline.
    script = ["ok", "ok", "timeout"]
    result, reason, _ = await _judge({"c": script, "s": script}, request=_input(weight=0))
    assert result is GateResult.passed, reason
    assert "timed out (slowness, not errors)" in reason


async def test_probe_timeouts_on_a_slot_serving_real_traffic_cleanly_do_not_fail_it() -> None:
    # The canary's probes time out, but users are served: 40 real requests a tick, none failed.
    router = _Router({"canary": (40, 0), "stable": (120, 0)})
    request = _input(bake=1.5)  # past the 0.3 s warm-up, when slowness is judged
    result, reason, details = await _judge({"c": ["timeout"], "s": ["ok"]}, router, request=request)
    assert result is GateResult.passed, reason
    assert any("not a failure: canary served" in d for d in details), details


async def test_probe_timeouts_alone_on_a_slot_that_serves_nobody_fail_as_slowness() -> None:
    request = _input(bake=5, weight=0)
    result, reason, _ = await _judge({"c": ["timeout"], "s": ["ok"]}, request=request)
    assert result is GateResult.failed
    assert reason.startswith("probes slower than baseline")


async def test_a_fresh_process_slow_at_first_is_not_a_slow_release() -> None:
    # The new slot's first answers miss their deadline (cold start), then it answers normally.
    script = ["timeout"] * 8 + ["ok"] * 10_000
    request = _input(bake=1.5, weight=0)
    result, reason, _ = await _judge({"c": script, "s": ["ok"]}, request=request)
    assert result is GateResult.passed, reason


async def test_a_zero_bake_waits_for_min_samples_probes_and_passes() -> None:
    # The bake ends at once; the first judgement comes before the first sweep has answered.
    request = _input(bake=0.0, weight=0)
    runtime = _Runtime({"canary": ["c"], "stable": ["s"]})
    engine = GateEngine(runtime, _Probe({"c": ["ok"], "s": ["ok"]}))  # type: ignore[arg-type]
    verdict = await asyncio.wait_for(engine.run(request), timeout=30)
    assert verdict.result is GateResult.passed, verdict.reason
    assert verdict.samples >= POLICY.min_samples


async def test_refused_probes_are_errors_and_fail_fast() -> None:
    result, reason, _ = await _judge({"c": ["error"], "s": ["ok"]}, request=_input(bake=10))
    assert result is GateResult.failed
    assert "error ratio" in reason and "HTTP 503" in reason


async def test_a_pass_says_why_it_passed_below_min_failures() -> None:
    # 2 errors early on: over the 1% budget, but fewer than min_failures 3.
    script = ["error", "error", *(["ok"] * 1000)]
    result, reason, _ = await _judge({"c": script, "s": ["ok"]}, request=_input(weight=0))
    assert result is GateResult.passed, reason
    assert reason.startswith("passed: ")
    assert "fewer than min_failures 3" in reason


class _DyingRuntime(_Runtime):
    """The canary's process dies after a few ticks: the runtime lists its endpoint no more."""

    def __init__(self, endpoints: dict[str, list[str]], lives: int) -> None:
        super().__init__(endpoints)
        self.lives = lives

    async def endpoints(self, app: str, slot: str) -> list[str]:
        if slot == "canary":
            self.lives -= 1
            if self.lives < 0:
                return []
        return await super().endpoints(app, slot)


async def test_a_crashed_slot_whose_endpoints_vanish_fails_instead_of_going_quiet() -> None:
    runtime = _DyingRuntime({"canary": ["c"], "stable": ["s"]}, lives=20)
    engine = GateEngine(runtime, _Probe({"c": ["ok"], "s": ["ok"]}))  # type: ignore[arg-type]
    verdict = await asyncio.wait_for(engine.run(_input(bake=30, weight=0)), timeout=30)
    assert verdict.result is GateResult.failed
    assert "(first: c: no longer running)" in verdict.reason


class _DyingBaseline(_Runtime):
    """Lists the stable endpoint for its first `lives` reads, then none (stable died)."""

    def __init__(self, endpoints: dict[str, list[str]], lives: int) -> None:
        super().__init__(endpoints)
        self.lives = lives

    async def endpoints(self, app: str, slot: str) -> list[str]:
        if slot == "stable":
            self.lives -= 1
            if self.lives < 0:
                return []
        return await super().endpoints(app, slot)


async def test_a_baseline_that_stops_running_is_not_blamed_on_the_release() -> None:
    """Stable dies under a healthy canary (bench/faults.py: stable_dies_mid_canary): the
    verdict is inconclusive with a diagnosis, so the workflow pauses with an alert instead of
    rolling back to nothing."""
    runtime = _DyingBaseline({"canary": ["c"], "stable": ["s"]}, lives=20)
    engine = GateEngine(runtime, _Probe({"c": ["ok"], "s": ["ok"]}))  # type: ignore[arg-type]
    verdict = await asyncio.wait_for(engine.run(_input(bake=30)), timeout=30)
    assert verdict.result is GateResult.inconclusive
    assert verdict.diagnosis is not None
    assert verdict.diagnosis.startswith("the baseline stable stopped running")


# --------------------------------------------------------------------------- real traffic


async def test_failures_users_hit_fail_the_gate_even_when_probes_pass() -> None:
    router = _Router({"canary": (10, 2), "stable": (30, 0)})
    result, reason, _ = await _judge({"c": ["ok"], "s": ["ok"]}, router)
    assert result is GateResult.failed
    assert "requests served failed" in reason


async def test_a_slot_taking_traffic_with_nothing_to_judge_is_not_a_pass() -> None:
    # Weight 25 but the router counts no request at all, and no sampled path is configured.
    router = _Router({"canary": (0, 0), "stable": (0, 0)})
    result, reason, _ = await _judge({"c": ["ok"], "s": ["ok"]}, router)
    assert result is GateResult.inconclusive
    assert reason.startswith("nothing to judge: 0 real and 0 sampled requests on canary; need 20")


# --------------------------------------------------------------------------- sampled requests


@dataclass
class _Server:
    url: str
    delay_s: float  # for the sampled path, /quote
    hang: bool = False
    busy_s: float = 0.0  # for every path: the whole process (or machine) is slow


@pytest.fixture
async def servers() -> AsyncIterator[dict[str, _Server]]:
    """Two loopback HTTP servers answering 200 after the server's delay (or never, hung)."""
    made: dict[str, _Server] = {}
    closing: list[asyncio.Server] = []

    def make(name: str) -> _Server:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while head := await reader.readuntil(b"\r\n\r\n"):
                    server = made[name]
                    if server.hang:
                        await asyncio.sleep(3600)
                    sampled = head.split(b" ", 2)[1].startswith(b"/quote")
                    await asyncio.sleep(server.busy_s + (server.delay_s if sampled else 0.0))
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
                pass
            finally:
                writer.close()

        return handle  # type: ignore[return-value]

    for name in ("canary", "stable"):
        server = await asyncio.start_server(make(name), "127.0.0.1", 0)  # type: ignore[arg-type]
        port = server.sockets[0].getsockname()[1]
        made[name] = _Server(f"http://127.0.0.1:{port}", 0.0)
        closing.append(server)
    yield made
    for server in closing:
        server.close()


def _sampled(bake: float = 1.0, first: bool = False) -> GateInput:
    policy = POLICY.model_copy(
        update={"sample_path": "/quote", "sample_rate_per_s": 50, "reference_path": "/live"}
    )
    request = _input(policy, bake=bake, weight=0)
    return request.model_copy(update={"baseline_slot": None}) if first else request


async def test_truly_slow_canary_fails_on_its_sampled_requests(
    servers: dict[str, _Server],
) -> None:
    servers["canary"].delay_s = 0.2
    endpoints = {slot: [s.url] for slot, s in servers.items()}
    probe = {servers["canary"].url: ["ok"], servers["stable"].url: ["ok"]}
    result, reason, _ = await _judge(probe, endpoints=endpoints, request=_sampled(bake=5))
    assert result is GateResult.failed
    assert reason.startswith("sampled requests slower than baseline")


async def test_hung_canary_fails_while_its_requests_are_still_in_flight(
    servers: dict[str, _Server],
) -> None:
    servers["canary"].hang = True
    endpoints = {slot: [s.url] for slot, s in servers.items()}
    probe = {servers["canary"].url: ["ok"], servers["stable"].url: ["ok"]}
    result, reason, _ = await _judge(probe, endpoints=endpoints, request=_sampled(bake=5))
    # Failed long before any sampled request could time out (2 s): censored timings count.
    assert result is GateResult.failed
    assert reason.startswith("sampled requests slower than baseline")


async def test_equally_fast_slots_pass_with_every_check_named(
    servers: dict[str, _Server],
) -> None:
    endpoints = {slot: [s.url] for slot, s in servers.items()}
    probe = {servers["canary"].url: ["ok"], servers["stable"].url: ["ok"]}
    result, reason, details = await _judge(probe, endpoints=endpoints, request=_sampled())
    assert result is GateResult.passed, reason
    assert any(d.startswith("sampled requests not slower than baseline") for d in details)
    assert any(d.startswith("probes not slower than baseline") for d in details)


async def test_first_deployment_slow_release_fails_against_its_own_liveness(
    servers: dict[str, _Server],
) -> None:
    # No baseline slot: the sampled API is compared with the same process's liveness path.
    servers["canary"].delay_s = 0.2
    endpoints = {"canary": [servers["canary"].url]}
    probe = {servers["canary"].url: ["ok"]}
    request = _sampled(bake=5, first=True)
    result, reason, _ = await _judge(probe, endpoints=endpoints, request=request)
    assert result is GateResult.failed
    assert reason.startswith("sampled requests (against the slot's own /live: no baseline slot)")


async def test_first_deployment_on_a_busy_machine_passes(servers: dict[str, _Server]) -> None:
    # Everything the process answers takes 100 ms: busy, not a slow release.
    servers["canary"].busy_s = 0.1
    endpoints = {"canary": [servers["canary"].url]}
    probe = {servers["canary"].url: ["ok"]}
    request = _sampled(bake=1, first=True)
    result, reason, details = await _judge(probe, endpoints=endpoints, request=request)
    assert result is GateResult.passed, reason
    assert any("not slower than baseline" in d for d in details), details


async def test_a_loaded_slot_is_not_compared_with_an_idle_baseline(
    servers: dict[str, _Server],
) -> None:
    # After a blue-green switch the new colour serves everyone and the old one idles: the new
    # colour answers everything 100 ms slower, its API no slower than its own liveness.
    servers["canary"].busy_s = 0.1
    endpoints = {slot: [s.url] for slot, s in servers.items()}
    probe = {servers["canary"].url: ["ok"], servers["stable"].url: ["ok"]}
    request = _sampled(bake=1).model_copy(update={"weight": 100, "baseline_weight": 0})
    result, reason, details = await _judge(probe, endpoints=endpoints, request=request)
    assert result is GateResult.passed, reason
    assert any("the baseline serves less traffic" in d for d in details), details


async def test_a_slow_api_after_the_switch_still_fails(servers: dict[str, _Server]) -> None:
    servers["canary"].delay_s = 0.2
    endpoints = {slot: [s.url] for slot, s in servers.items()}
    probe = {servers["canary"].url: ["ok"], servers["stable"].url: ["ok"]}
    request = _sampled(bake=5).model_copy(update={"weight": 100, "baseline_weight": 0})
    result, reason, _ = await _judge(probe, endpoints=endpoints, request=request)
    assert result is GateResult.failed
    assert "the baseline serves less traffic" in reason


# --------------------------------------------------------------------------- the policy


async def test_a_gate_with_no_policy_to_run_refuses_instead_of_checking_less() -> None:
    request = _input().model_copy(update={"policy": None, "environment": None})
    engine = GateEngine(_Runtime({}), _Probe({}))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="no gate policy"):
        await engine.run(request)
