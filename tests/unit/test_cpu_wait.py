"""Waiting for a CPU is the machine's, not the release's (zdp/health/cpu_wait.py and
compare_slowness with the scheduler's readings).

The data are shaped like the busy-machine runs: samples every 20 ms to both slots, readings of
both processes every 10 ms, and the CI failure this rule answers (a healthy finance-trading
canary rolled back: "8 of 16 new vs 0 of 20 baseline answers slower than 108.7 ms (baseline
median 9.5 ms, p90 78.7 ms); slow for 297 ms"), where the canary's process was kept off the CPU
while the stable's answered in time. Everything is computed: no test here measures time.
"""

from __future__ import annotations

from zdp.health.analysis import Timing, compare_slowness
from zdp.health.cpu_wait import CpuEvidence, CpuSample, CpuTrack, heavier_on_cpu, stopped
from zdp.models import GateResult

# The demo's gate (gate-policies.yaml `demo`): half the 0.5 s window asked of a slow stretch.
_DEMO = {
    "what": "sampled requests",
    "min_slow": 5,
    "alpha": 0.001,
    "max_slowdown_ms": 30.0,
    "max_slowdown_ratio": 1.3,
    "min_span_seconds": 0.25,
}
_EVERY = 0.02  # a sample to each slot every 20 ms
_READ = 0.01  # a reading of each process every 10 ms


def _answers(
    now: float, stall: tuple[float, float] | None = None, ms: float = 5.0, first: float = 0.2
) -> list[Timing]:
    """Samples of a slot that answers in `ms`, except that nothing is answered from stall[0] to
    stall[1]: what is in flight then is answered when the stall ends (or is still in flight)."""
    out = []
    at = first
    while at < now - 1e-9:
        done = at + ms / 1000
        if stall is not None and stall[0] < done and at < stall[1]:
            done = stall[1] + ms / 1000
        if done > now:
            out.append(Timing((now - at) * 1000, censored=True, at=at))
        else:
            out.append(Timing((done - at) * 1000, at=at))
        at = round(at + _EVERY, 6)
    return out


def _busy_baseline(now: float) -> list[Timing]:
    """The CI failure's baseline: median about 9.5 ms, p90 78.7 ms (one answer in five late)."""
    return [
        Timing(78.7 if i % 5 == 4 else 8.0 + i % 4, at=t.at)
        for i, t in enumerate(_answers(now, ms=9.5))
    ]


def _readings(
    now: float,
    *,
    waits_per_read: float = 0.5,
    runs_per_read: float = 0.3,
    held: tuple[float, float] | None = None,
    held_state: str = "R",
    first: float = 0.2,
) -> list[CpuSample]:
    """A process read every 10 ms: it waits `waits_per_read` ms for a CPU and runs
    `runs_per_read` ms between readings, except while `held` (from, to): then its counters stand
    still in state `held_state`. Held runnable (R) it is waiting all along, and the kernel adds
    that wait when it runs again; stopped (T) or asleep (S) it is not waiting."""
    out = []
    waited = ran = 0.0
    at = first
    while at <= now + 1e-9:
        if held is not None and held[0] <= at < held[1]:
            state = held_state
        else:
            if held is not None and held_state == "R" and held[1] <= at < held[1] + _READ:
                waited += (held[1] - held[0]) * 1000  # the wait ends: the counter catches up
            waited += waits_per_read
            ran += runs_per_read
            state = "S"
        out.append(CpuSample(at, waited, ran, ran, state))
        at = round(at + _READ, 6)
    return out


def _cpu(new: list[CpuSample], base: list[CpuSample], demand: str | None = None) -> CpuEvidence:
    return CpuEvidence(new, base, demand)


# --------------------------------------------------------------------------- the readings


def test_a_wait_still_in_progress_counts_from_the_readings_and_never_twice() -> None:
    # Runnable from 0.30 s to 0.70 s without running: the kernel shows nothing until it runs.
    track = CpuTrack(_readings(1.0, waits_per_read=0.0, held=(0.3, 0.7)))
    assert 0.195 * 1000 <= track.waited(0.3, 0.5) <= 0.205 * 1000  # mid-wait, from readings
    assert 395.0 <= track.waited(0.2, 1.0) <= 410.0  # the counter caught up: counted once
    assert track.waited(0.75, 1.0) == 0.0


def test_only_a_stopped_process_is_told_apart_as_hung() -> None:
    held = _readings(0.6, held=(0.3, 9.0), held_state="T")
    assert stopped(held, 0.33, 0.6)
    assert not stopped(held, 0.2, 0.6)  # it ran before 0.3 s
    # Waiting for a CPU (R), a disk (D), or asleep (S: its worker threads may be waiting).
    for state in ("R", "D", "S"):
        assert not stopped(_readings(0.6, held=(0.3, 9.0), held_state=state), 0.33, 0.6)
    # One reading is not enough (a gate that was itself kept off the CPU read it once).
    sparse = [s for s in held if s.at < 0.45]
    assert not stopped(sparse, 0.44, 0.6)


def test_more_cpu_than_the_baseline_for_as_many_requests_is_the_slots_own_demand() -> None:
    assert heavier_on_cpu((120.0, 100), (100.0, 100), ratio=2.0, slack_ms=50.0) is None
    why = heavier_on_cpu((5000.0, 100), (100.0, 100), ratio=2.0, slack_ms=50.0)
    assert why is not None and "5000 ms of CPU for 100 requests" in why
    # An idle new colour before a blue-green switch (a bench run): 320 ms for 81 requests
    # against the live colour's 320 ms for 320. Not heavier: a process has fixed costs.
    assert heavier_on_cpu((320.0, 81), (320.0, 320), ratio=2.0, slack_ms=50.0) is None
    # Serving more than the baseline, it may use proportionally more.
    assert heavier_on_cpu((900.0, 400), (200.0, 100), ratio=2.0, slack_ms=50.0) is None
    assert heavier_on_cpu((2000.0, 400), (200.0, 100), ratio=2.0, slack_ms=50.0) is not None


# --------------------------------------------------------------------------- the judge


def test_the_ci_false_rollback_a_canary_kept_off_the_cpu_now_passes() -> None:
    # The canary's process was runnable but not running for 400 ms (a busy machine), the
    # stable's answered at the same moments. Judged on raw timings, as in the CI run, that is
    # a failure; net of the canary's extra waiting for a CPU it is not slow at all.
    now = 0.72
    new, base = _answers(now, stall=(0.3, 0.7)), _busy_baseline(now)
    raw = compare_slowness(new, base, **_DEMO)  # type: ignore[arg-type]
    assert raw.result is GateResult.failed, raw.reason
    assert raw.evidence["threshold_ms"] == 108.7  # the CI run's
    cpu = _cpu(_readings(now, held=(0.3, 0.7)), _readings(now))
    judged = compare_slowness(new, base, cpu=cpu, **_DEMO)  # type: ignore[arg-type]
    assert judged.result is GateResult.passed, judged.reason
    assert judged.evidence["new_slow"] == 0.0
    assert judged.evidence["cpu_wait_taken_new_ms"] > 300
    assert "net of waiting for a CPU" in judged.reason
    # Mid-stall, before the kernel has added the wait, the readings already count it.
    for mid in (0.6, 0.65):
        cpu = _cpu(_readings(mid, held=(0.3, 0.7)), _readings(mid))
        result = compare_slowness(
            _answers(mid, stall=(0.3, 0.7)), _busy_baseline(mid), cpu=cpu, **_DEMO
        )  # type: ignore[arg-type]
        assert result.result is GateResult.passed, (mid, result.reason)


def test_the_same_stall_asleep_instead_of_waiting_is_the_releases() -> None:
    # Same answers, but the process was asleep (not waiting for a CPU): nothing is taken out.
    now = 0.72
    cpu = _cpu(_readings(now, held=(0.3, 0.7), held_state="S"), _readings(now))
    result = compare_slowness(
        _answers(now, stall=(0.3, 0.7)), _busy_baseline(now), cpu=cpu, **_DEMO
    )  # type: ignore[arg-type]
    assert result.result is GateResult.failed, result.reason
    assert result.evidence.get("cpu_wait_taken_new_ms", 0.0) == 0.0


def _latency_fault(now: float, added_ms: float = 200.0, onset: float = 0.3) -> list[Timing]:
    """A release whose API answers `added_ms` late from `onset` on (asleep meanwhile)."""
    out = []
    for t in _answers(now, ms=5.0):
        ms = 5.0 + (added_ms if t.at >= onset else 0.0)
        done = t.at + ms / 1000
        out.append(Timing((now - t.at) * 1000, True, t.at) if done > now else Timing(ms, at=t.at))
    return out


def test_a_latency_fault_on_a_busy_machine_is_still_caught() -> None:
    now = 0.9
    base = _answers(now, ms=8.0)
    # Both processes wait for a CPU alike: nothing is taken out.
    alike = _cpu(_readings(now, waits_per_read=3.0), _readings(now, waits_per_read=3.0))
    result = compare_slowness(_latency_fault(now), base, cpu=alike, **_DEMO)  # type: ignore[arg-type]
    assert result.result is GateResult.failed, result.reason
    # Even kept off the CPU much more than the baseline (6 ms of every 10 against 1), what is
    # left of +200 ms is still far over the threshold.
    more = _cpu(_readings(now, waits_per_read=6.0), _readings(now, waits_per_read=1.0))
    result = compare_slowness(_latency_fault(now), base, cpu=more, **_DEMO)  # type: ignore[arg-type]
    assert result.result is GateResult.failed, result.reason
    assert 0 < result.evidence["cpu_wait_taken_new_ms"] < 150


def test_a_release_that_burns_cpu_is_still_caught() -> None:
    # A busy loop per request: 250 ms answers; the process runs 5 ms and waits 5 ms of every
    # 10 (it is hungry, so it also queues for the CPU). Only waiting is ever taken out: what is
    # left, its own running, is still slow.
    now = 0.9
    base = _answers(now, ms=8.0)
    heavy = _readings(now, waits_per_read=5.0, runs_per_read=5.0)
    result = compare_slowness(
        _latency_fault(now, added_ms=245.0), base, cpu=_cpu(heavy, _readings(now)), **_DEMO
    )  # type: ignore[arg-type]
    assert result.result is GateResult.failed, result.reason
    # And where it used clearly more CPU per request than the baseline, none of its waiting is
    # taken out: it waits because of its own demand.
    demand = heavier_on_cpu((2500.0, 40), (40.0, 40), ratio=2.0, slack_ms=50.0)
    result = compare_slowness(
        _latency_fault(now, added_ms=245.0), base, cpu=_cpu(heavy, _readings(now), demand), **_DEMO
    )  # type: ignore[arg-type]
    assert result.result is GateResult.failed, result.reason
    assert result.evidence.get("cpu_wait_taken_new_ms", 0.0) == 0.0
    assert "its waiting for a CPU is its own demand" in result.reason


def test_a_stopped_process_is_caught_sooner_than_a_stall_a_disk_wait_is_not() -> None:
    # SIGSTOP at 0.30 s (the benches' hang): its requests are in flight, it neither runs nor
    # waits. 180 ms later the slot has been slow for 180 ms: short of the 250 ms a stall is
    # given, but a process that did not run is not stalled by the machine.
    now = 0.48
    new, base = _answers(now, stall=(0.3, 9.0)), _answers(now, ms=3.0)
    args = {**_DEMO, "responsive_span_seconds": 0.08}
    assert compare_slowness(new, base, **args).result is GateResult.passed  # type: ignore[arg-type]
    stopped = _cpu(_readings(now, held=(0.3, 9.0), held_state="T"), _readings(now))
    result = compare_slowness(new, base, cpu=stopped, **args)  # type: ignore[arg-type]
    assert result.result is GateResult.failed, result.reason
    assert result.evidence["required_latest_span_s"] == 0.08
    assert "its process was stopped meanwhile" in result.reason
    # Held in a disk wait (D), runnable (R) or asleep (S), it may be the machine's: the long
    # span stands.
    for state in ("D", "R", "S"):
        held = _cpu(_readings(now, held=(0.3, 9.0), held_state=state), _readings(now))
        result = compare_slowness(new, base, cpu=held, **args)  # type: ignore[arg-type]
        assert result.result is GateResult.passed, (state, result.reason)
        assert result.evidence["required_latest_span_s"] == 0.25
    # A slot nobody is exposed to (no responsive span) keeps the long span, stopped or not.
    result = compare_slowness(new, base, cpu=stopped, **_DEMO)  # type: ignore[arg-type]
    assert result.result is GateResult.passed, result.reason
