"""The traffic guard: no weight change may route users to a slot where nothing serves.

Every weight change of a deployment, forward or in a rollback, passes through the `set_weights`
activity, which asks this module first. The rules, for a requested split and the split the
router applies now:

1. Every slot that is to hold weight > 0 must run a version with endpoints (`Runtime.deployed`
   and `Runtime.endpoints`). Otherwise the change is refused and nothing is retried: the slot
   is empty, and waiting will not fill it.
2. A slot that newly takes traffic (weight 0 now, > 0 after) must also have an endpoint that
   answers the readiness probe (`HealthProbe`, a few tries). The one exception: when no slot
   serving now answers readiness either, the change makes nothing worse for users, and the
   health gate, which compares the two, judges. A refusal here may be retried: a version can
   become ready.

A rollback does not name a split of its own. It names what served before the deployment (the
split `get_weights` read when the deployment started), and `restore_split` turns that into the
split to apply: the part of it whose slots still run, scaled back to 100. When none of them runs
any more (or nothing served before: a first deployment), there is no previous version to return
to, and traffic stays where a version runs: weight is never moved from a slot that serves to one
that does not. Pure logic here; reading the runtime and probing is `read_slots` and
`probe_where_it_matters`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from zdp.platforms.base import HealthProbe, Runtime

READINESS_ATTEMPTS = 3
READINESS_PAUSE_SECONDS = 0.2


@dataclass(frozen=True)
class SlotState:
    """What runs in one slot, and whether any of its endpoints answers readiness."""

    slot: str
    version: str | None = None  # None: nothing runs there
    endpoints: int = 0
    ready: bool = False
    problem: str = ""  # why it is not ready (the last probe's error), for messages

    @property
    def runs(self) -> bool:
        return self.version is not None and self.endpoints > 0


@dataclass(frozen=True)
class Refusal:
    message: str
    retryable: bool
    kind: str  # "EmptySlot" or "SlotNotReady": the ApplicationError type


async def read_slot(
    runtime: Runtime,
    probe: HealthProbe | None,
    app: str,
    slot: str,
    attempts: int = READINESS_ATTEMPTS,
    pause: float = READINESS_PAUSE_SECONDS,
) -> SlotState:
    """The slot's state; readiness is probed on every endpoint, up to `attempts` rounds."""
    deployed = await runtime.deployed(app, slot)
    if deployed is None:
        return SlotState(slot)
    endpoints = await runtime.endpoints(app, slot)
    if not endpoints:
        return SlotState(slot, deployed.version, 0, False, "it has no endpoints")
    if probe is None:  # nothing to ask: running with endpoints is all that can be known
        return SlotState(slot, deployed.version, len(endpoints), True)
    problem = ""
    for attempt in range(max(1, attempts)):
        if attempt:
            await asyncio.sleep(pause)
        results = await asyncio.gather(*(probe.probe(endpoint) for endpoint in endpoints))
        if any(result.ok for result in results):
            return SlotState(slot, deployed.version, len(endpoints), True)
        problem = next((r.error for r in results if r.error), "") or "not ready"
    return SlotState(slot, deployed.version, len(endpoints), False, problem)


async def read_slots(
    runtime: Runtime, probe: HealthProbe | None, app: str, slots: Iterable[str]
) -> dict[str, SlotState]:
    """Each slot's state; without a probe, `ready` only says that a version runs there."""
    names = list(dict.fromkeys(slots))
    states = await asyncio.gather(*(read_slot(runtime, probe, app, slot) for slot in names))
    return dict(zip(names, states, strict=True))


async def probe_where_it_matters(
    runtime: Runtime,
    probe: HealthProbe | None,
    app: str,
    requested: Mapping[str, int],
    current: Mapping[str, int],
    slots: Mapping[str, SlotState],
) -> dict[str, SlotState]:
    """`slots` (read without a probe) with readiness probed where rule 2 needs it: the slots
    newly taking traffic, and, only when one of them is not ready, the slots serving now.

    A slot that keeps or loses weight is never probed, so a rollback away from a failing
    version does not wait on that version's probes."""
    result = dict(slots)
    if probe is None:
        return result
    newly = [s for s, w in requested.items() if w > 0 and current.get(s, 0) <= 0]
    newly = [s for s in newly if _runs(result, s)]
    if not newly:
        return result
    result.update(await read_slots(runtime, probe, app, newly))
    if all(result[s].ready for s in newly):
        return result
    serving = [s for s, w in current.items() if w > 0 and _runs(result, s)]
    result.update(await read_slots(runtime, probe, app, serving))
    return result


def refusal(
    app: str,
    requested: Mapping[str, int],
    current: Mapping[str, int],
    slots: Mapping[str, SlotState],
) -> Refusal | None:
    """Why `requested` must not replace `current`, or None (rules 1 and 2 of the module doc)."""
    now = _text(current)
    for slot, weight in requested.items():
        state = slots.get(slot, SlotState(slot))
        if weight > 0 and not state.runs:
            where = "nothing runs there" if state.version is None else state.problem
            return Refusal(
                f"refusing to route {weight}% of {app} to slot {slot}: {where}; traffic stays "
                f"as it is ({now})",
                retryable=False,
                kind="EmptySlot",
            )
    newly = [s for s, w in requested.items() if w > 0 and current.get(s, 0) <= 0]
    unready = [state for s in newly if not (state := slots.get(s, SlotState(s))).ready]
    if not unready:
        return None
    serving = [s for s, w in current.items() if w > 0]
    if serving and not any(slots.get(s, SlotState(s)).ready for s in serving):
        return None  # nothing that serves now answers readiness: this makes nothing worse
    state = unready[0]
    return Refusal(
        f"refusing to route {requested[state.slot]}% of {app} to slot {state.slot}: "
        f"{state.version} runs there but none of its {state.endpoints} endpoint(s) answers "
        f"readiness ({state.problem}); traffic stays as it is ({now})",
        retryable=True,
        kind="SlotNotReady",
    )


def restore_split(
    before: Mapping[str, int], current: Mapping[str, int], slots: Mapping[str, SlotState]
) -> dict[str, int] | None:
    """The split a rollback applies, every slot of `before` and `current` named; None: no change.

    `before` is what served before the deployment, with the slots the deployment used at 0.
    Its slots that still run get their weights back, scaled to 100. When none runs, there is
    no previous version to return to: the weight of `current` stays on the slots that run (all
    of it, scaled to 100), and when those are all of them, or none, nothing changes.
    """
    named = {slot: 0 for slot in [*before, *current]}
    back = {s: w for s, w in before.items() if w > 0 and _runs(slots, s)}
    if back:
        return {**named, **scaled(back)}
    serving = {s: w for s, w in current.items() if w > 0}
    keep = {s: w for s, w in serving.items() if _runs(slots, s)}
    if not keep or keep == serving:
        return None
    return {**named, **scaled(keep)}


def scaled(weights: Mapping[str, int]) -> dict[str, int]:
    """Positive weights scaled to sum to 100 (largest remainder; ties to the earlier slot)."""
    total = sum(weights.values())
    if total <= 0:
        return {}
    exact = {s: w * 100 / total for s, w in weights.items()}
    result = {s: int(v) for s, v in exact.items()}
    short = 100 - sum(result.values())
    for slot in sorted(exact, key=lambda s: -(exact[s] - result[s]))[:short]:
        result[slot] += 1
    return result


def _runs(slots: Mapping[str, SlotState], slot: str) -> bool:
    state = slots.get(slot)
    return state is not None and state.runs


def _text(weights: Mapping[str, int]) -> str:
    return " ".join(f"{s}={w}%" for s, w in sorted(weights.items()) if w) or "no route"
