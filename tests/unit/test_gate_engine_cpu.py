"""The gate engine with a runtime that can read its processes' scheduler counters
(zdp.platforms.base.ProcessStats): a canary kept off the CPU by the machine passes, a hung or a
CPU-hungry one still fails.

The slots are tiny loopback HTTP servers and a fake runtime whose counters follow a scripted
machine: while the canary is "held", its server answers nothing and its counters stand still in
the state the script gives (R: waiting for a CPU; T: stopped). Held for 0.6 s, more than twice
the 0.25 s a stall is given, so the verdicts do not hang on how busy the test machine is.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from zdp.gates import GatePolicy
from zdp.health.engine import GateEngine, _at_moment
from zdp.models import GateInput, GateResult, GateThresholds, GateVerdict, ProbeResult
from zdp.platforms.base import CpuTimes

POLICY = GatePolicy(
    probe_interval_seconds=0.01,
    probe_timeout_ms=50,
    breaker_failure_threshold=3,
    breaker_open_seconds=1.0,
    min_samples=10,
    min_failures=3,
    max_error_ratio=0.01,
    latency={"min_samples": 10, "min_slow": 5, "window_seconds": 0.5, "max_slowdown_ms": 30},
    errors={"min_requests": 20},
    sample_path="/quote",
    sample_rate_per_s=50,
)
HELD_S = 0.6  # how long the canary is held, from 0.5 s into the gate


@dataclass
class _Slot:
    url: str = ""
    held_from: float = float("inf")
    held_until: float = float("inf")
    held_state: str = "R"
    answer_s: float = 0.0  # how long each answer takes when not held
    # Counter rates per second of wall time when not held: CPU used, waiting for one.
    runs: float = 0.02
    waits: float = 0.01
    started: float = field(default_factory=time.monotonic)

    def held(self, now: float) -> bool:
        return self.held_from <= now < self.held_until

    def times(self, now: float) -> CpuTimes:
        """Counters as the kernel keeps them: a wait is added when it ends."""
        free = (min(now, self.held_from) - self.started) + max(0.0, now - self.held_until)
        waited = self.waits * free * 1000
        if self.held_state == "R" and now >= self.held_until:
            waited += (self.held_until - self.held_from) * 1000
        ran = self.runs * free * 1000
        return CpuTimes(waited, ran, ran, self.held_state if self.held(now) else "S")


class _Runtime:
    def __init__(self, slots: dict[str, _Slot], readable: bool = True) -> None:
        self.slots, self.readable = slots, readable

    async def endpoints(self, app: str, slot: str) -> list[str]:
        return [self.slots[slot].url]

    def cpu_times(self, app: str, slot: str) -> CpuTimes | None:
        return self.slots[slot].times(time.monotonic()) if self.readable else None


class _PlainRuntime:
    """A runtime with no process to read (Kubernetes, the memory platform)."""

    def __init__(self, slots: dict[str, _Slot]) -> None:
        self.slots = slots

    async def endpoints(self, app: str, slot: str) -> list[str]:
        return [self.slots[slot].url]


class _Probe:
    async def probe(self, endpoint: str) -> ProbeResult:
        return ProbeResult(endpoint=endpoint, ok=True, latency_ms=1.0, status_code=200)


@pytest.fixture
async def slots() -> AsyncIterator[dict[str, _Slot]]:
    made = {"canary": _Slot(), "stable": _Slot()}
    servers: list[asyncio.Server] = []

    def handler(slot: _Slot):  # type: ignore[no-untyped-def]
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while await reader.readuntil(b"\r\n\r\n"):
                    while slot.held(time.monotonic()):
                        await asyncio.sleep(0.005)
                    await asyncio.sleep(slot.answer_s)
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    await writer.drain()
            except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
                pass
            finally:
                writer.close()

        return handle

    for slot in made.values():
        server = await asyncio.start_server(handler(slot), "127.0.0.1", 0)
        slot.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
        servers.append(server)
    yield made
    for server in servers:
        server.close()


def _request(bake: float = 2.0) -> GateInput:
    return GateInput(
        app="shop",
        slot="canary",
        version="2.0.0",
        bake_seconds=bake,
        thresholds=GateThresholds(),
        baseline_slot="stable",
        policy=POLICY,
        weight=25,
        baseline_weight=75,
    )


async def _judge(runtime: object, bake: float = 2.0) -> GateVerdict:
    engine = GateEngine(runtime, _Probe())  # type: ignore[arg-type]
    return await asyncio.wait_for(engine.run(_request(bake)), timeout=60)


def _hold(slot: _Slot, state: str, seconds: float = HELD_S) -> None:
    slot.held_from = time.monotonic() + 0.5
    slot.held_until = slot.held_from + seconds
    slot.held_state = state


async def test_a_canary_the_machine_keeps_off_the_cpu_passes(slots: dict[str, _Slot]) -> None:
    _hold(slots["canary"], "R")
    verdict = await _judge(_Runtime(slots))
    # (The next test is the same hold judged without the counters: it fails.)
    assert verdict.result is GateResult.passed, verdict.reason
    assert verdict.evidence["slowness.sampled requests.cpu_own_demand"] == 0.0
    # The record says the gate found it slow, and that it was only waiting for a CPU.
    assert verdict.evidence["cpu_wait.excused_judgements"] > 0
    assert verdict.evidence["cpu_wait.excused_most_ms"] > 100


async def test_the_same_hold_fails_where_the_processes_cannot_be_read(
    slots: dict[str, _Slot],
) -> None:
    # What the gate did before, and still does on Kubernetes: a 0.6 s stall is a slow release.
    _hold(slots["canary"], "R")
    verdict = await _judge(_PlainRuntime(slots))
    assert verdict.result is GateResult.failed, verdict.reason
    assert verdict.reason.startswith("sampled requests slower than baseline")


async def test_a_stopped_canary_still_fails_and_says_it_did_not_run(
    slots: dict[str, _Slot],
) -> None:
    _hold(slots["canary"], "T", seconds=3600.0)
    verdict = await _judge(_Runtime(slots), bake=5.0)
    assert verdict.result is GateResult.failed, verdict.reason
    assert "its process was stopped meanwhile" in verdict.reason


async def test_a_canary_hungry_for_cpu_keeps_its_waiting(slots: dict[str, _Slot]) -> None:
    # Each answer takes 300 ms and its process burns CPU all along (half a core, queueing for
    # the rest) while the baseline's barely runs: its waiting is its own demand.
    canary = slots["canary"]
    canary.answer_s, canary.runs, canary.waits, canary.held_state = 0.3, 0.5, 0.5, "R"
    verdict = await _judge(_Runtime(slots), bake=5.0)
    assert verdict.result is GateResult.failed, verdict.reason
    assert "its waiting for a CPU is its own demand" in verdict.reason


def test_cpu_is_counted_from_the_warm_ups_end_when_the_first_reading_after_it_is_late() -> None:
    # Readings at 1.0 s (100 ms of CPU, 10 requests) and, the machine busy, only at 1.4 s (300 ms,
    # 30): at the warm-up's end (1.1 s) the process had used about 150 ms for 15 requests.
    # Counting from the late reading would leave out what it used for answers already judged.
    late = (1.4, 300.0, 30)
    cpu, handled = _at_moment((1.0, 100.0, 10), late, 1.1)
    assert (cpu, handled) == (pytest.approx(150.0), 15)
    assert _at_moment(None, late, 1.1) == (300.0, 30)  # nothing read before it
    assert _at_moment((1.0, 100.0, 10), late, 0.5) == (100.0, 10)  # never before it
