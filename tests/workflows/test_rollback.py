"""Failed gate, abort, failing router: traffic is restored first, then the version retired.

A rollback returns traffic to what served before the deployment and never routes users to a
slot where nothing runs, also when there is no previous version to return to.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.kit import APP, Harness
from zdp import deployments
from zdp.models import Outcome, Strategy


def _rollback_kinds(result_timeline: list) -> list[str]:  # type: ignore[type-arg]
    return [
        e.kind if e.kind != "compensated" else f"compensated:{e.data['kind']}"
        for e in result_timeline
        if e.kind in ("gate_verdict", "compensated")
    ]


@pytest.mark.parametrize("bad_from_weight", [1, 5, 25, 100])
async def test_gate_failure_at_each_step_rolls_back_traffic_first(
    harness: Harness, bad_from_weight: int
) -> None:
    harness.state.fail_at_weight[(APP, "2.0.0")] = bad_from_weight
    result = await harness.deploy(harness.request("2.0.0"))

    assert result.outcome is Outcome.rolled_back
    assert result.cause and result.cause.startswith("health gate fail")
    kinds = _rollback_kinds(result.timeline)
    # gate verdict (failed) -> traffic restored -> version retired, in that order, and last.
    assert kinds[-3:] == ["gate_verdict", "compensated:traffic", "compensated:retire"]
    failed = [e for e in result.timeline if e.kind == "gate_verdict"][-1]
    assert failed.data["result"] == "fail"
    assert failed.data["evidence"]["error_ratio"] > failed.data["thresholds"]["max_error_ratio"]
    # The world is as it was: v1 takes all traffic, the canary is gone.
    assert harness.state.weights[APP] == {"canary": 0, "stable": 100}
    assert harness.state.deployed[(APP, "stable")].version == "1.0.0"
    assert (APP, "canary") not in harness.state.deployed
    ops = harness.state.ops(APP)
    assert ops[-2:] == [("weights", "canary=0,stable=100"), ("retire", "canary=2.0.0")]
    # It never went past the failing step.
    canary_weights = [int(d.split(",")[0].split("=")[1]) for op, d in ops if op == "weights"]
    assert max(canary_weights) == bad_from_weight
    # The rollback acted on the deployment's own environment, as every forward step did.
    assert harness.state.scopes[-2:] == [("weights", "dev"), ("retire", "dev")]
    assert {scope for _, scope in harness.state.scopes} == {"dev"}


async def test_blue_green_post_switch_failure_switches_back(harness: Harness) -> None:
    harness.state.weights[APP] = {"blue": 100, "green": 0}
    harness.state.fail_at_weight[(APP, "2.0.0")] = 100
    result = await harness.deploy(harness.request("2.0.0", strategy=Strategy.blue_green))

    assert result.outcome is Outcome.rolled_back
    assert harness.state.weights[APP] == {"blue": 100, "green": 0}
    assert (APP, "green") not in harness.state.deployed
    assert harness.state.deployed[(APP, "blue")].version == "1.0.0"


async def test_router_failing_transiently_is_retried_through_during_compensation(
    harness: Harness,
) -> None:
    harness.state.fail_at_weight[(APP, "2.0.0")] = 5
    harness.state.fail_weights["canary=0,stable=100"] = 3
    result = await harness.deploy(harness.request("2.0.0"))

    assert result.outcome is Outcome.rolled_back
    ops = harness.state.ops(APP)
    errors = [i for i, (op, _) in enumerate(ops) if op == "router_error"]
    restored = ops.index(("weights", "canary=0,stable=100"))
    assert len(errors) == 3 and max(errors) < restored
    assert harness.state.weights[APP] == {"canary": 0, "stable": 100}
    assert ops[-1] == ("retire", "canary=2.0.0")


async def test_abort_in_the_middle_of_a_step_rolls_back_without_waiting_out_the_bake(
    harness: Harness,
) -> None:
    handle = await harness.start(harness.request("2.0.0", bake_seconds=30))
    await harness.wait_for(handle, lambda s: s.weights.get("canary") == 1)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await deployments.abort(harness.client, handle.id, "oncall-sre", "elevated error budget burn")
    result = await asyncio.wait_for(handle.result(), timeout=20)

    assert loop.time() - started < 10  # far less than the 30 s bake
    assert result.outcome is Outcome.rolled_back
    assert result.cause == "aborted by oncall-sre: elevated error budget burn"
    assert harness.state.weights[APP] == {"canary": 0, "stable": 100}
    assert (APP, "canary") not in harness.state.deployed
    kinds = [e.kind for e in result.timeline]
    assert kinds.index("abort_requested") < kinds.index("compensated")


async def test_activity_that_exhausts_its_retries_rolls_back_with_the_cause(
    harness: Harness,
) -> None:
    harness.state.fail_weights["canary=5,stable=95"] = 1000  # the router never takes step 2
    result = await harness.deploy(harness.request("2.0.0"))

    assert result.outcome is Outcome.rolled_back
    assert result.cause and "router unavailable setting canary=5,stable=95" in result.cause
    failures = [d for op, d in harness.state.ops(APP) if op == "router_error"]
    assert len(failures) == 5  # FORWARD_RETRY.maximum_attempts
    assert harness.state.weights[APP] == {"canary": 0, "stable": 100}
    assert (APP, "canary") not in harness.state.deployed


async def test_dead_canary_endpoint_opens_its_breaker_and_the_timeline_says_which(
    harness: Harness,
) -> None:
    dead = f"memory://{APP}/canary/2.0.0/1"
    harness.state.dead_endpoints.add(dead)
    result = await harness.deploy(harness.request("2.0.0"))

    assert result.outcome is Outcome.rolled_back
    kinds = [e.kind for e in result.timeline]
    breaker = [e for e in result.timeline if e.kind == "breaker"]
    assert breaker, kinds
    assert f"breaker {dead}: closed -> open (3 consecutive failures" in breaker[0].message
    # Recorded with the verdict it belongs to, before the traffic is taken back.
    assert kinds.index("breaker") > kinds.index("gate_verdict")
    assert kinds.index("breaker") < kinds.index("compensated")
    verdict = [e for e in result.timeline if e.kind == "gate_verdict"][-1]
    assert verdict.data["breaker_transitions"] == [breaker[0].message.split("breaker ", 1)[1]]


def _routed_to_nothing(harness: Harness) -> dict[str, int]:
    """Slots that hold weight while nothing runs in them (must always be empty)."""
    weights = harness.state.weights.get(APP, {})
    return {s: w for s, w in weights.items() if w > 0 and (APP, s) not in harness.state.deployed}


async def test_rollback_never_routes_to_an_empty_slot(harness: Harness) -> None:
    # Nothing runs and nothing is routed: webshop has never been deployed.
    harness.state.deployed.clear()
    harness.state.weights.clear()

    # 1. The first deployment fails its pre-switch gate: no traffic was ever moved.
    harness.state.unhealthy_versions.add((APP, "1.0.0"))
    first = await harness.deploy(harness.request("1.0.0", strategy=Strategy.blue_green))

    assert first.outcome is Outcome.rolled_back
    assert first.cause and "no previous version to return to" in first.cause
    assert _routed_to_nothing(harness) == {}
    assert (APP, "blue") not in harness.state.deployed  # the failed version is retired
    (event,) = [e for e in first.timeline if e.kind == "no_previous_version"]
    assert event.message.startswith(
        "no previous version to return to: nothing served before this deployment"
    )
    assert "nothing serves the app, as before" in event.message

    # 2. The next one fails after the switch. Before, the rollback sent 100% to green, where
    # nothing ran; now traffic stays on blue, where a version runs, and it is not retired.
    harness.state.fail_at_weight[(APP, "2.0.0")] = 100
    second = await harness.deploy(harness.request("2.0.0", strategy=Strategy.blue_green))

    assert second.outcome is Outcome.rolled_back
    assert _routed_to_nothing(harness) == {}
    assert harness.state.weights[APP] == {"blue": 100, "green": 0}
    assert harness.state.deployed[(APP, "blue")].version == "2.0.0"
    assert second.cause and second.cause.startswith("health gate fail")
    assert (
        "no previous version to return to: nothing served before this deployment; traffic "
        "left on blue (100%, this release 2.0.0)"
    ) in second.cause
    kinds = [e.kind for e in second.timeline]
    assert kinds.index("no_previous_version") < kinds.index("not_retired")
    assert "compensated" not in kinds  # nothing was moved or retired
    kept = next(e for e in second.timeline if e.kind == "not_retired")
    assert kept.message.startswith("version 2.0.0 not retired from slot blue")
    # Every weight change named only slots where a version ran.
    assert [d for op, d in harness.state.ops(APP) if op == "weights"] == ["blue=100,green=0"]


async def test_failed_first_canary_keeps_traffic_on_the_only_running_version(
    harness: Harness,
) -> None:
    harness.state.deployed.clear()
    harness.state.weights.clear()
    harness.state.fail_at_weight[(APP, "1.0.0")] = 100  # passes the pre-traffic gate only
    result = await harness.deploy(harness.request("1.0.0"))

    assert result.outcome is Outcome.rolled_back
    assert _routed_to_nothing(harness) == {}
    assert harness.state.weights[APP] == {"canary": 100, "stable": 0}
    assert harness.state.deployed[(APP, "canary")].version == "1.0.0"
    assert result.cause and "no previous version to return to" in result.cause


async def test_blue_green_failure_of_an_app_serving_from_stable_returns_traffic_to_stable(
    harness: Harness,
) -> None:
    # Deployed by canary so far: 1.0.0 serves from stable, nothing runs in blue or green.
    del harness.state.deployed[(APP, "blue")]
    harness.state.fail_at_weight[(APP, "2.0.0")] = 100
    result = await harness.deploy(harness.request("2.0.0", strategy=Strategy.blue_green))

    assert result.outcome is Outcome.rolled_back
    assert result.cause and "no previous version" not in result.cause
    assert {s: w for s, w in harness.state.weights[APP].items() if w} == {"stable": 100}
    assert _routed_to_nothing(harness) == {}
    assert harness.state.deployed[(APP, "stable")].version == "1.0.0"
    assert (APP, "blue") not in harness.state.deployed
    restored = [e for e in result.timeline if e.kind == "compensated" and "weights" in e.data]
    assert restored and restored[0].message == "traffic restored: blue=0% stable=100%"
    # The gates compared blue with stable, the version that served.
    history = await harness.started[-1].fetch_history()
    gates = [
        json.loads(e.activity_task_scheduled_event_attributes.input.payloads[0].data)
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
        and e.activity_task_scheduled_event_attributes.activity_type.name == "run_health_gate"
    ]
    assert [g["baseline_slot"] for g in gates] == ["stable", "stable"]


async def test_blue_green_promotion_of_an_app_serving_from_stable_retires_stable(
    harness: Harness,
) -> None:
    del harness.state.deployed[(APP, "blue")]
    result = await harness.deploy(harness.request("2.0.0", strategy=Strategy.blue_green))

    assert result.outcome is Outcome.promoted, result.cause
    assert harness.state.weights[APP] == {"blue": 100, "stable": 0}
    assert harness.state.deployed[(APP, "blue")].version == "2.0.0"
    assert (APP, "stable") not in harness.state.deployed


async def test_canary_failure_of_an_app_serving_from_a_colour_returns_traffic_to_it(
    harness: Harness,
) -> None:
    # Deployed by blue-green so far: 1.0.0 serves from blue, nothing runs in stable.
    del harness.state.deployed[(APP, "stable")]
    harness.state.weights[APP] = {"blue": 100, "green": 0}
    harness.state.fail_at_weight[(APP, "2.0.0")] = 100
    result = await harness.deploy(harness.request("2.0.0"))

    assert result.outcome is Outcome.rolled_back
    assert {s: w for s, w in harness.state.weights[APP].items() if w} == {"blue": 100}
    assert _routed_to_nothing(harness) == {}
    assert harness.state.deployed[(APP, "blue")].version == "1.0.0"
    assert (APP, "canary") not in harness.state.deployed


async def test_canary_promotion_of_an_app_serving_from_a_colour_retires_the_colour(
    harness: Harness,
) -> None:
    del harness.state.deployed[(APP, "stable")]
    harness.state.weights[APP] = {"blue": 100, "green": 0}
    result = await harness.deploy(harness.request("2.0.0"))

    assert result.outcome is Outcome.promoted, result.cause
    assert harness.state.weights[APP] == {"canary": 0, "stable": 100}
    assert harness.state.deployed[(APP, "stable")].version == "2.0.0"
    assert (APP, "blue") not in harness.state.deployed
    assert (APP, "canary") not in harness.state.deployed
