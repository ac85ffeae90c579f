"""Waiting for a CPU: what the scheduler says a slot's process did while its answers were slow.

On a busy machine the process that serves a slot can be ready to run and still wait on a run
queue; every request it holds is late by that much, and that is the machine's doing, not the
release's. A runtime that can read the scheduler's counters of its processes
(`zdp.platforms.base.ProcessStats`: the local runtime, from /proc) lets the gate read both
slots' processes every tick; here the readings answer three questions:

- `CpuTrack.waited(start, end)`: how long the slot's serving thread waited for a CPU in an
  interval. The kernel adds a wait to the counter only when it ends, so a wait still in progress
  is counted from the readings: runnable at two readings, and neither run nor a finished wait
  since the first, it waited all along.
- with it, `zdp.health.analysis.net_of_cpu_wait` takes from each of the new slot's answers the
  time its process waited for a CPU *beyond* the baseline's process over the same interval, as
  if both had been given a CPU alike. Only waiting is taken out, never time on a CPU: a release
  that burns CPU itself (a busy loop per request) keeps every millisecond of its own work and
  of the queue behind it.
- `stopped(readings, start, end)`: the process was stopped (SIGSTOP, a debugger: state T) and
  neither ran nor waited for a CPU: hung, not kept waiting by the machine. Only a stopped
  process is told apart so: one asleep with its requests pending may be a deadlock of its own,
  or an app whose handlers run in worker threads that are themselves waiting for a CPU or for a
  disk, and only the main thread is read (reading every thread every tick costs the judge).

`heavier_on_cpu` is the guard on the discount: a slot that used clearly more CPU than its
baseline did for as many requests waits on the run queue because of its own demand (another
thread of its own burning CPU competes with the serving one), so its waiting is not taken out.

Nothing here does I/O.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

# Counters that grew less than this over an interval did not move (a ms of CPU or of waiting).
STILL_MS = 1.0
# A stopped process (SIGSTOP, job control: T; a debugger: t) runs no thread at all.
_STOPPED = frozenset({"T", "t"})


@dataclass(frozen=True)
class CpuSample:
    """One reading of a slot's process: when (the gate's monotonic clock, as `Timing.at`), and
    its counters since it started."""

    at: float
    waiting_ms: float  # the serving thread's time runnable but waiting for a CPU
    running_ms: float  # the serving thread's time on a CPU
    process_cpu_ms: float  # every thread's CPU time
    state: str  # the serving thread's state letter when read (R, S, D, T, ...)


class CpuTrack:
    """A slot's readings (in time order) as a curve of how long its serving thread has waited
    for a CPU."""

    def __init__(self, readings: Sequence[CpuSample]) -> None:
        self._times: list[float] = []
        self._waits: list[float] = []
        pending, most, previous = 0.0, 0.0, None
        for s in readings:
            if (
                previous is not None
                and previous.state == "R"
                and s.state == "R"
                and s.running_ms - previous.running_ms < 1e-6
                and s.waiting_ms - previous.waiting_ms < 1e-6
            ):
                pending += (s.at - previous.at) * 1000
            else:
                pending = 0.0
            # The counter catches up with the estimate when the wait ends: never count twice.
            most = max(most, s.waiting_ms + pending)
            self._times.append(s.at)
            self._waits.append(most)
            previous = s

    def __bool__(self) -> bool:
        return len(self._times) >= 2

    @property
    def start(self) -> float:
        return self._times[0]

    @property
    def end(self) -> float:
        return self._times[-1]

    def _at(self, moment: float) -> float:
        """How long it had waited by `moment`, linear between readings."""
        i = bisect.bisect_right(self._times, moment)
        if i == 0:
            return self._waits[0]
        if i == len(self._times):
            return self._waits[-1]
        t0, t1 = self._times[i - 1], self._times[i]
        w0, w1 = self._waits[i - 1], self._waits[i]
        return w0 + (w1 - w0) * (moment - t0) / (t1 - t0) if t1 > t0 else w1

    def waited(self, start: float, end: float) -> float:
        """How long the serving thread waited for a CPU from `start` to `end` (ms), counting
        only what the readings cover."""
        if not self or end <= start:
            return 0.0
        return max(0.0, self._at(end) - self._at(start))


def stopped(readings: Sequence[CpuSample], start: float, end: float) -> bool:
    """Whether the process was stopped from `start` to `end`: at least two readings covering at
    least half of it, every one stopped, and its serving thread's counters still."""
    inside = [s for s in readings if start <= s.at <= end]
    if len(inside) < 2 or inside[-1].at - inside[0].at < 0.5 * (end - start):
        return False
    if any(s.state not in _STOPPED for s in inside):
        return False
    first, last = inside[0], inside[-1]
    moved = (last.running_ms - first.running_ms) + (last.waiting_ms - first.waiting_ms)
    return moved < STILL_MS


@dataclass(frozen=True)
class CpuEvidence:
    """Both slots' readings over the window (in time order), for `compare_slowness`. The wait
    curves are built only when a comparison needs them: the judge runs every 10 ms."""

    new: Sequence[CpuSample]
    baseline: Sequence[CpuSample]
    # Why the new slot's waiting is its own and is not taken out (see `heavier_on_cpu`).
    own_demand: str | None = None
    # The numbers behind it, for the verdict (CPU ms and requests handled per slot).
    evidence: dict[str, float] = field(default_factory=dict)

    @cached_property
    def new_track(self) -> CpuTrack:
        return CpuTrack(self.new)

    @cached_property
    def baseline_track(self) -> CpuTrack:
        return CpuTrack(self.baseline)


def heavier_on_cpu(
    new: tuple[float, int],
    baseline: tuple[float, int],
    *,
    ratio: float,
    slack_ms: float,
) -> str | None:
    """A sentence when the new slot's process used more CPU than `ratio` times what the
    baseline's used for as many requests, plus `slack_ms`; None when it did not. Both are
    (CPU ms, requests handled) over the same time.

    The baseline's own CPU is the floor of the comparison, however few requests the new slot
    handled: a process costs CPU that does not scale with requests (an idle new colour before
    a blue-green switch, measured here, used 4 ms per request where the live one used 1 ms,
    for the same CPU in all). So a new slot serving no more than its baseline is heavier only
    when it used clearly more CPU than the baseline did in all."""
    (new_ms, new_n), (base_ms, base_n) = new, baseline
    if base_n <= 0:
        return None
    allowed = ratio * base_ms * max(1.0, new_n / base_n) + slack_ms
    if new_ms <= allowed:
        return None
    return (
        f"its process used {new_ms:.0f} ms of CPU for {new_n} requests, the baseline's "
        f"{base_ms:.0f} ms for {base_n} (more than {ratio:g}x as much for as many, + "
        f"{slack_ms:g} ms): its waiting for a CPU is its own demand"
    )
