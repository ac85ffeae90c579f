"""Circuit breakers per endpoint, driven by a fake clock and a scripted probe."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

import pytest

from zdp.health.breaker import (
    CIRCUIT_OPEN,
    BreakerBoard,
    BreakerState,
    BreakerTransition,
    CircuitBreaker,
)
from zdp.models import ProbeResult
from zdp.platforms.base import HealthProbe


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class ScriptedProbe:
    """Healthy unless the endpoint is in `down`; remembers every endpoint it probed."""

    def __init__(self, down: Iterable[str] = ()) -> None:
        self.down = set(down)
        self.calls: list[str] = []

    async def probe(self, endpoint: str) -> ProbeResult:
        self.calls.append(endpoint)
        await asyncio.sleep(0)
        ok = endpoint not in self.down
        return ProbeResult(
            endpoint=endpoint, ok=ok, latency_ms=1.0, error=None if ok else "HTTP 503"
        )


class SweepingProbe(ScriptedProbe):
    """The same, answering a whole sweep at once, as HttpProbe.probe_many does."""

    async def probe_many(
        self, endpoints: list[str], timeout: float | None, concurrency: int
    ) -> list[ProbeResult]:
        return [await self.probe(e) for e in endpoints]


@pytest.fixture(params=[ScriptedProbe, SweepingProbe], ids=["probe", "probe_many"])
def scripted(request: pytest.FixtureRequest) -> type[ScriptedProbe]:
    """Sweeps give the same outcomes whether the board probes one by one or the probe sweeps."""
    return request.param  # type: ignore[no-any-return]


def moves(transitions: list[BreakerTransition]) -> list[tuple[str, str, str]]:
    return [(t.endpoint, t.old.value, t.new.value) for t in transitions]


def test_breaker_opens_after_threshold_consecutive_failures() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("a", failure_threshold=3, open_seconds=1.0, clock=clock)
    assert breaker.record(False) is None
    assert breaker.record(False) is None
    opened = breaker.record(False)
    assert opened is not None
    assert (opened.old, opened.new) == (BreakerState.closed, BreakerState.open)
    assert "3 consecutive failures" in opened.reason
    assert opened.at.tzinfo is not None
    assert breaker.state is BreakerState.open
    assert not breaker.allow()


def test_a_success_resets_the_consecutive_failure_count() -> None:
    breaker = CircuitBreaker("a", failure_threshold=3, clock=FakeClock())
    for ok in (False, False, True, False, False):
        assert breaker.record(ok) is None
    assert breaker.state is BreakerState.closed
    assert breaker.allow()


def test_half_open_allows_exactly_one_trial() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("a", failure_threshold=1, open_seconds=1.0, clock=clock)
    breaker.record(False)
    clock.advance(0.999)
    assert not breaker.allow()
    clock.advance(0.001)
    assert breaker.allow()
    assert breaker.state is BreakerState.half_open
    assert not breaker.allow()
    assert not breaker.allow()


def test_trial_success_closes_and_trial_failure_reopens_with_a_fresh_timer() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("a", failure_threshold=1, open_seconds=1.0, clock=clock)
    breaker.record(False)
    clock.advance(1.0)
    assert breaker.allow()
    reopened = breaker.record(False)
    assert reopened is not None and reopened.new is BreakerState.open
    clock.advance(0.5)
    assert not breaker.allow()  # the timer restarted at the failed trial
    clock.advance(0.5)
    assert breaker.allow()
    closed = breaker.record(True)
    assert closed is not None
    assert (closed.old, closed.new) == (BreakerState.half_open, BreakerState.closed)
    assert breaker.allow() and breaker.allow()


def test_a_cancelled_trial_lets_another_trial_through() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("a", failure_threshold=1, open_seconds=1.0, clock=clock)
    breaker.record(False)
    clock.advance(1.0)
    assert breaker.allow()
    breaker.abandon_trial()
    assert breaker.allow()
    assert not breaker.allow()


def test_invalid_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="failure_threshold"):
        CircuitBreaker("a", failure_threshold=0)
    with pytest.raises(ValueError, match="open_seconds"):
        CircuitBreaker("a", open_seconds=-1)


async def test_open_endpoint_is_skipped_without_probing(scripted: type[ScriptedProbe]) -> None:
    clock = FakeClock()
    board = BreakerBoard(failure_threshold=2, open_seconds=1.0, clock=clock)
    probe = scripted(down={"bad"})
    for _ in range(2):
        await board.sweep(probe, ["good", "bad"])
    assert board.states() == {"good": BreakerState.closed, "bad": BreakerState.open}

    probe.calls.clear()
    results = await board.sweep(probe, ["good", "bad"])
    assert probe.calls == ["good"]
    assert [r.endpoint for r in results] == ["good", "bad"]
    skipped = results[1]
    assert (skipped.ok, skipped.latency_ms, skipped.error) == (False, 0.0, CIRCUIT_OPEN)
    assert results[0].ok


async def test_half_open_sweep_probes_once_then_recovers_or_reopens(
    scripted: type[ScriptedProbe],
) -> None:
    clock = FakeClock()
    board = BreakerBoard(failure_threshold=1, open_seconds=1.0, clock=clock)
    probe = scripted(down={"x"})
    await board.sweep(probe, ["x"])
    clock.advance(1.0)

    probe.calls.clear()
    results = await board.sweep(probe, ["x", "x"])  # the same endpoint twice: one trial only
    assert probe.calls == ["x"]
    assert [r.error for r in results] == ["HTTP 503", CIRCUIT_OPEN]
    assert board.states()["x"] is BreakerState.open

    probe.down.clear()
    clock.advance(1.0)
    results = await board.sweep(probe, ["x"])
    assert results[0].ok
    assert board.states()["x"] is BreakerState.closed


async def test_transitions_are_recorded_in_order_drained_and_logged(
    caplog: pytest.LogCaptureFixture, scripted: type[ScriptedProbe]
) -> None:
    clock = FakeClock()
    board = BreakerBoard(failure_threshold=1, open_seconds=1.0, clock=clock)
    probe = scripted(down={"x"})
    with caplog.at_level(logging.INFO, logger="zdp.health.breaker"):
        await board.sweep(probe, ["x"])  # closed -> open
        clock.advance(1.0)
        await board.sweep(probe, ["x"])  # open -> half_open -> open
        probe.down.clear()
        clock.advance(1.0)
        await board.sweep(probe, ["x"])  # open -> half_open -> closed
    taken = board.take_transitions()
    assert moves(taken) == [
        ("x", "closed", "open"),
        ("x", "open", "half_open"),
        ("x", "half_open", "open"),
        ("x", "open", "half_open"),
        ("x", "half_open", "closed"),
    ]
    assert [t.at for t in taken] == sorted(t.at for t in taken)
    assert board.take_transitions() == []
    logged = [r for r in caplog.records if r.name == "zdp.health.breaker"]
    assert len(logged) == 5
    assert "half_open -> closed" in logged[-1].getMessage()


async def test_sweep_bounds_concurrency() -> None:
    active = peak = 0

    class SlowProbe:
        async def probe(self, endpoint: str) -> ProbeResult:
            nonlocal active, peak
            active += 1
            peak = max(peak, active)
            await asyncio.sleep(0.001)
            active -= 1
            return ProbeResult(endpoint=endpoint, ok=True, latency_ms=1.0)

    slow: HealthProbe = SlowProbe()
    results = await BreakerBoard().sweep(slow, [f"e{i}" for i in range(20)], concurrency=4)
    assert len(results) == 20 and all(r.ok for r in results)
    assert peak == 4


async def test_a_probe_that_raises_counts_as_a_failure() -> None:
    class BrokenProbe:
        async def probe(self, endpoint: str) -> ProbeResult:
            raise RuntimeError("boom")

    board = BreakerBoard(failure_threshold=1)
    results = await board.sweep(BrokenProbe(), ["a"])
    assert results[0].error == "RuntimeError: boom"
    assert board.states()["a"] is BreakerState.open


async def test_a_timed_out_probe_neither_opens_nor_closes_the_breaker_in_a_probes_sweep() -> None:
    class Hung:
        async def probe(self, endpoint: str) -> ProbeResult:
            raise AssertionError("a sweeping probe is asked for the whole sweep")

        async def probe_many(
            self, endpoints: list[str], timeout: float | None, concurrency: int
        ) -> list[ProbeResult]:
            return [
                ProbeResult(endpoint=e, ok=False, latency_ms=50.0, error="timeout", timed_out=True)
                for e in endpoints
            ]

    board = BreakerBoard(failure_threshold=1)
    results = await board.sweep(Hung(), ["a", "b"], timeout=0.05)
    assert [r.timed_out for r in results] == [True, True]
    assert board.states() == {"a": BreakerState.closed, "b": BreakerState.closed}


async def test_a_probes_sweep_that_raises_counts_as_a_failure_of_each_endpoint() -> None:
    class Broken:
        async def probe(self, endpoint: str) -> ProbeResult:
            raise AssertionError("unused")

        async def probe_many(
            self, endpoints: list[str], timeout: float | None, concurrency: int
        ) -> list[ProbeResult]:
            raise RuntimeError("boom")

    board = BreakerBoard(failure_threshold=1)
    results = await board.sweep(Broken(), ["a", "b"])
    assert [r.error for r in results] == ["RuntimeError: boom"] * 2
    assert board.states() == {"a": BreakerState.open, "b": BreakerState.open}
