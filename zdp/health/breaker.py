"""Circuit breakers per endpoint: stop probing an endpoint that keeps failing, then try it again.

A breaker is closed while its endpoint answers. After `failure_threshold` consecutive failures it
opens: sweeps skip the endpoint and report it failed at no cost ("circuit open"), so a dead
endpoint never spends the 50 ms probe deadline again and again. After `open_seconds` it goes
half-open and lets exactly one trial probe through: success closes it, failure opens it again
with a fresh timer. `BreakerBoard` keeps one breaker per endpoint, sweeps through them, and keeps
every state change as a `BreakerTransition` (also logged) for the gate's evidence and timeline.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from zdp.models import ProbeResult
from zdp.platforms.base import HealthProbe

log = logging.getLogger("zdp.health.breaker")

Clock = Callable[[], float]
CIRCUIT_OPEN = "circuit open"
# A probe's own sweep (`HttpProbe.probe_many`): endpoints, deadline, concurrency -> results.
ProbeMany = Callable[[Sequence[str], float | None, int], Awaitable[list[ProbeResult]]]


class BreakerState(StrEnum):
    closed = "closed"
    open = "open"
    half_open = "half_open"


@dataclass(frozen=True)
class BreakerTransition:
    """One state change of one endpoint's breaker, and why it happened."""

    endpoint: str
    old: BreakerState
    new: BreakerState
    at: datetime
    reason: str


class CircuitBreaker:
    """The breaker of one endpoint. Not thread-safe; use it from one event loop."""

    def __init__(
        self,
        endpoint: str,
        failure_threshold: int = 3,
        open_seconds: float = 1.0,
        clock: Clock = time.monotonic,
        on_transition: Callable[[BreakerTransition], None] | None = None,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if open_seconds < 0:
            raise ValueError("open_seconds must not be negative")
        self.endpoint = endpoint
        self.failure_threshold = failure_threshold
        self.open_seconds = open_seconds
        self._clock = clock
        self._on_transition = on_transition
        self._state = BreakerState.closed
        self._failures = 0
        self._opened_at = 0.0
        self._trial_outstanding = False

    @property
    def state(self) -> BreakerState:
        return self._state

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def allow(self) -> bool:
        """May the endpoint be probed now? Half-open allows one trial at a time."""
        if self._state is BreakerState.closed:
            return True
        if self._state is BreakerState.open:
            waited = self._clock() - self._opened_at
            if waited < self.open_seconds:
                return False
            self._move(BreakerState.half_open, f"open for {waited:.3f} s, trying one probe")
            self._trial_outstanding = True
            return True
        if self._trial_outstanding:
            return False
        self._trial_outstanding = True
        return True

    def record(self, ok: bool) -> BreakerTransition | None:
        """Count one probe outcome; returns the state change it caused, if any."""
        if self._state is BreakerState.closed:
            if ok:
                self._failures = 0
                return None
            self._failures += 1
            if self._failures < self.failure_threshold:
                return None
            return self._open(f"{self._failures} consecutive failures")
        if self._state is BreakerState.half_open:
            self._trial_outstanding = False
            if ok:
                self._failures = 0
                return self._move(BreakerState.closed, "trial probe succeeded")
            self._failures += 1
            return self._open("trial probe failed")
        # Open: an outcome of a probe that began before the breaker opened changes nothing.
        return None

    def abandon_trial(self) -> None:
        """The half-open trial was cancelled before it had an outcome: allow another one."""
        if self._state is BreakerState.half_open:
            self._trial_outstanding = False

    def _open(self, reason: str) -> BreakerTransition:
        self._opened_at = self._clock()
        self._trial_outstanding = False
        return self._move(BreakerState.open, f"{reason}; skipping for {self.open_seconds:g} s")

    def _move(self, new: BreakerState, reason: str) -> BreakerTransition:
        change = BreakerTransition(
            endpoint=self.endpoint, old=self._state, new=new, at=datetime.now(UTC), reason=reason
        )
        self._state = new
        log.info("breaker %s: %s -> %s (%s)", self.endpoint, change.old, change.new, reason)
        if self._on_transition is not None:
            self._on_transition(change)
        return change


class BreakerBoard:
    """One breaker per endpoint, and sweeps that respect them."""

    def __init__(
        self, failure_threshold: int = 3, open_seconds: float = 1.0, clock: Clock = time.monotonic
    ) -> None:
        self.failure_threshold = failure_threshold
        self.open_seconds = open_seconds
        self._clock = clock
        self._breakers: dict[str, CircuitBreaker] = {}
        self._transitions: list[BreakerTransition] = []

    def breaker(self, endpoint: str) -> CircuitBreaker:
        """The endpoint's breaker, created closed on first use."""
        found = self._breakers.get(endpoint)
        if found is None:
            found = CircuitBreaker(
                endpoint,
                failure_threshold=self.failure_threshold,
                open_seconds=self.open_seconds,
                clock=self._clock,
                on_transition=self._transitions.append,
            )
            self._breakers[endpoint] = found
        return found

    def states(self) -> dict[str, BreakerState]:
        """The state of every breaker seen so far."""
        return {endpoint: b.state for endpoint, b in self._breakers.items()}

    def take_transitions(self) -> list[BreakerTransition]:
        """Every state change since the last call, oldest first; the board forgets them."""
        taken, self._transitions = self._transitions, []
        return taken

    async def sweep(
        self,
        probe: HealthProbe,
        endpoints: Sequence[str],
        concurrency: int = 32,
        timeout: float | None = None,
    ) -> list[ProbeResult]:
        """Probe every endpoint once, in parallel with bounded concurrency, in input order.

        An endpoint whose breaker is open is not probed: its result is a failure with the
        error "circuit open" and zero latency. A probe that takes longer than `timeout` seconds
        is a timed-out result, which the breaker ignores (slow is not dead). Every other probed
        outcome is recorded in its breaker.
        """
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        many = getattr(probe, "probe_many", None)
        if many is not None:
            return await self._sweep_many(many, endpoints, concurrency, timeout)
        limit = asyncio.Semaphore(concurrency)

        async def one(endpoint: str) -> ProbeResult:
            breaker = self.breaker(endpoint)
            # Asked before queueing for the semaphore: a skipped endpoint costs nothing.
            if not breaker.allow():
                return ProbeResult(endpoint=endpoint, ok=False, latency_ms=0.0, error=CIRCUIT_OPEN)
            started = time.perf_counter()
            try:
                async with limit, asyncio.timeout(timeout):
                    result = await probe.probe(endpoint)
            except TimeoutError:
                result = ProbeResult(
                    endpoint=endpoint,
                    ok=False,
                    latency_ms=(time.perf_counter() - started) * 1000,
                    error=f"timeout after {timeout * 1000:g} ms" if timeout else "timeout",
                    timed_out=True,
                )
            except asyncio.CancelledError:
                breaker.abandon_trial()
                raise
            except Exception as exc:  # a probe must not raise; count it as a failure if it does
                text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                result = ProbeResult(endpoint=endpoint, ok=False, latency_ms=0.0, error=text)
            if result.timed_out:
                # Slow is not dead: a timeout neither opens nor closes the breaker (the gate
                # judges slowness against the baseline), and the endpoint keeps being measured.
                breaker.abandon_trial()
            else:
                breaker.record(result.ok)
            return result

        return list(await asyncio.gather(*(one(e) for e in endpoints)))

    async def _sweep_many(
        self,
        probe_many: ProbeMany,
        endpoints: Sequence[str],
        concurrency: int,
        timeout: float | None,
    ) -> list[ProbeResult]:
        """`sweep` through a probe that sweeps by itself (`HttpProbe.probe_many`): the same
        breakers, skips and outcomes, without a task per endpoint."""
        results: list[ProbeResult | None] = []
        allowed: list[tuple[int, CircuitBreaker]] = []
        for endpoint in endpoints:
            breaker = self.breaker(endpoint)
            if breaker.allow():
                allowed.append((len(results), breaker))
                results.append(None)
            else:
                results.append(
                    ProbeResult(endpoint=endpoint, ok=False, latency_ms=0.0, error=CIRCUIT_OPEN)
                )
        if not allowed:
            return [result for result in results if result is not None]
        try:
            probed = await probe_many([endpoints[i] for i, _ in allowed], timeout, concurrency)
        except asyncio.CancelledError:
            for _, breaker in allowed:
                breaker.abandon_trial()
            raise
        except Exception as exc:  # a probe must not raise; count it as a failure if it does
            text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            probed = [
                ProbeResult(endpoint=endpoints[i], ok=False, latency_ms=0.0, error=text)
                for i, _ in allowed
            ]
        for (index, breaker), result in zip(allowed, probed, strict=True):
            results[index] = result
            if result.timed_out:
                breaker.abandon_trial()  # slow is not dead, as in `sweep`
            else:
                breaker.record(result.ok)
        return [result for result in results if result is not None]
