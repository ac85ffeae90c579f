"""The traffic guard: no weight change routes users to a slot where nothing serves.

The set_weights activity is run as Temporal runs it (ActivityEnvironment), over the in-memory
platform, so what is refused here is refused for every caller, forward or in a rollback.
"""

from __future__ import annotations

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.traffic import TrafficActivities
from zdp.models import Deployed, ProbeResult, WeightsInput
from zdp.platforms.memory.platform import MemoryProbe, MemoryRouter, MemoryRuntime, MemoryState
from zdp.platforms.traffic_guard import SlotState, refusal, restore_split, scaled

APP = "shop"


def _platform(running: dict[str, str], weights: dict[str, int]) -> MemoryState:
    state = MemoryState()
    for slot, version in running.items():
        state.deployed[(APP, slot)] = Deployed(
            app=APP, slot=slot, version=version, endpoints=[f"memory://{APP}/{slot}/{version}/0"]
        )
    state.weights[APP] = dict(weights)
    return state


async def _set(state: MemoryState, weights: dict[str, int], restore: bool = False) -> object:
    traffic = TrafficActivities(MemoryRouter(state), MemoryRuntime(state), MemoryProbe(state))
    return await ActivityEnvironment().run(
        traffic.set_weights, WeightsInput(app=APP, weights=weights, restore=restore)
    )


async def test_set_weights_to_a_slot_with_nothing_running_is_refused() -> None:
    state = _platform({"blue": "1.0.0"}, {"blue": 100, "green": 0})

    with pytest.raises(ApplicationError) as refused:
        await _set(state, {"green": 100, "blue": 0})

    assert refused.value.non_retryable
    assert refused.value.type == "EmptySlot"
    assert "refusing to route 100% of shop to slot green: nothing runs there" in str(refused.value)
    assert state.weights[APP] == {"blue": 100, "green": 0}  # nothing was applied
    assert not [op for op, _ in state.ops(APP) if op == "weights"]


async def test_even_a_small_share_for_an_empty_slot_is_refused() -> None:
    state = _platform({"stable": "1.0.0"}, {"stable": 100})
    with pytest.raises(ApplicationError) as refused:
        await _set(state, {"stable": 99, "canary": 1})
    assert refused.value.non_retryable and "slot canary" in str(refused.value)


async def test_a_slot_newly_taking_traffic_must_answer_readiness() -> None:
    state = _platform({"blue": "1.0.0", "green": "2.0.0"}, {"blue": 100, "green": 0})
    state.unhealthy_versions.add((APP, "2.0.0"))

    with pytest.raises(ApplicationError) as refused:
        await _set(state, {"green": 100, "blue": 0})

    assert refused.value.type == "SlotNotReady"
    assert not refused.value.non_retryable  # a version can become ready: worth retrying
    assert "2.0.0 runs there but none of its 1 endpoint(s) answers readiness" in str(refused.value)
    assert state.weights[APP] == {"blue": 100, "green": 0}


async def test_unready_slot_may_take_traffic_when_nothing_serving_answers_either() -> None:
    # Everything is sick (a shared dependency is down): the change makes nothing worse, and
    # the health gate, which compares the two, judges whether the release is the cause.
    state = _platform({"stable": "1.0.0", "canary": "2.0.0"}, {"stable": 100})
    state.unhealthy_versions.update({(APP, "1.0.0"), (APP, "2.0.0")})
    assert await _set(state, {"stable": 99, "canary": 1}) == {"canary": 1, "stable": 99}


async def test_weight_taken_from_an_unready_slot_that_runs_is_allowed() -> None:
    state = _platform({"stable": "1.0.0", "canary": "2.0.0"}, {"stable": 99, "canary": 1})
    state.unhealthy_versions.add((APP, "2.0.0"))
    assert await _set(state, {"stable": 100, "canary": 0}) == {"canary": 0, "stable": 100}


async def test_restore_returns_to_what_served_before_when_it_still_runs() -> None:
    state = _platform({"stable": "1.0.0", "blue": "2.0.0"}, {"blue": 100, "stable": 0})
    applied = await _set(state, {"stable": 100, "blue": 0}, restore=True)
    assert applied == {"blue": 0, "stable": 100}
    assert state.weights[APP] == {"blue": 0, "stable": 100}


async def test_restore_with_nothing_served_before_leaves_traffic_where_a_version_runs() -> None:
    state = _platform({"blue": "2.0.0"}, {"blue": 100, "green": 0})
    applied = await _set(state, {"blue": 0, "green": 0}, restore=True)
    assert applied == {"blue": 100, "green": 0}
    assert state.weights[APP] == {"blue": 100, "green": 0}
    assert not [op for op, _ in state.ops(APP) if op == "weights"]  # the router was not touched


async def test_restore_when_the_previous_version_is_gone_keeps_traffic_off_the_empty_slot() -> None:
    # Stable served before, then it died mid-deployment: its share moves to what still runs.
    state = _platform({"canary": "2.0.0"}, {"stable": 75, "canary": 25})
    applied = await _set(state, {"stable": 100, "canary": 0}, restore=True)
    assert applied == {"canary": 100, "stable": 0}


def test_restore_split_scales_what_still_runs_back_to_100() -> None:
    slots = {
        "stable": SlotState("stable", "1.0.0", 1, True),
        "blue": SlotState("blue"),
        "canary": SlotState("canary", "2.0.0", 1, True),
    }
    before = {"stable": 60, "blue": 40, "canary": 0}
    assert restore_split(before, {"canary": 100}, slots) == {
        "stable": 100,
        "blue": 0,
        "canary": 0,
    }
    assert restore_split({"blue": 100, "canary": 0}, {"canary": 100}, slots) is None


def test_refusal_names_the_slot_and_what_stays() -> None:
    slots = {"blue": SlotState("blue", "1.0.0", 1, True), "green": SlotState("green")}
    found = refusal("shop", {"green": 100, "blue": 0}, {"blue": 100}, slots)
    assert found is not None and not found.retryable
    assert found.message == (
        "refusing to route 100% of shop to slot green: nothing runs there; traffic stays as it "
        "is (blue=100%)"
    )
    assert refusal("shop", {"blue": 100, "green": 0}, {"blue": 100}, slots) is None


def test_scaled_sums_to_100() -> None:
    assert scaled({"a": 1, "b": 1, "c": 1}) == {"a": 34, "b": 33, "c": 33}
    assert scaled({"a": 90}) == {"a": 100}
    assert scaled({}) == {}


def test_a_rollback_split_may_name_nothing_but_a_forward_one_must_sum_to_100() -> None:
    assert WeightsInput(app=APP, weights={"blue": 0, "green": 0}, restore=True).restore
    with pytest.raises(ValueError, match="sum to 100"):
        WeightsInput(app=APP, weights={"blue": 0, "green": 0})
    with pytest.raises(ValueError, match="non-negative"):
        WeightsInput(app=APP, weights={"blue": -1}, restore=True)


async def test_a_rollback_away_from_a_failing_version_does_not_wait_on_its_probes() -> None:
    state = _platform({"stable": "1.0.0", "canary": "2.0.0"}, {"stable": 75, "canary": 25})
    state.unhealthy_versions.add((APP, "2.0.0"))
    probed: list[str] = []

    class CountingProbe(MemoryProbe):
        async def probe(self, endpoint: str) -> ProbeResult:
            probed.append(endpoint)
            return await super().probe(endpoint)

    traffic = TrafficActivities(MemoryRouter(state), MemoryRuntime(state), CountingProbe(state))
    applied = await ActivityEnvironment().run(
        traffic.set_weights,
        WeightsInput(app=APP, weights={"stable": 100, "canary": 0}, restore=True),
    )
    assert applied == {"canary": 0, "stable": 100}
    assert probed == []  # stable already served; the canary only loses weight
