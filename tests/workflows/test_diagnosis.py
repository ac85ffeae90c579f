"""When stable is as sick as the canary, the release is not the cause: pause and alert."""

from __future__ import annotations

import asyncio

from tests.kit import APP, Harness
from zdp import deployments
from zdp.models import AbortInput, Outcome, Phase


async def _paused_on_alert(harness: Harness):  # type: ignore[no-untyped-def]
    harness.state.unhealthy_versions.update({(APP, "2.0.0"), (APP, "1.0.0")})
    handle = await harness.start(harness.request("2.0.0"))
    status = await harness.wait_for(handle, lambda s: s.phase is Phase.paused)
    assert status.paused and status.outcome is None
    return handle


async def test_stable_failing_as_much_as_canary_pauses_instead_of_rolling_back(
    harness: Harness,
) -> None:
    handle = await _paused_on_alert(harness)
    timeline = await deployments.timeline(harness.client, handle.id)
    alert = next(e for e in timeline if e.kind == "alert")
    assert "the release is not the cause" in alert.message
    assert "resume to gate this step again, or abort to roll back" in alert.message
    # Nothing was rolled back: the canary still runs and holds its weight.
    assert harness.state.deployed[(APP, "canary")].version == "2.0.0"
    assert harness.state.weights[APP]["canary"] == 1
    assert not [e for e in timeline if e.kind == "compensated"]

    harness.state.unhealthy_versions.clear()  # the outage elsewhere is over
    await deployments.send_signal(harness.client, handle.id, "resume", AbortInput(actor="oncall"))
    result = await asyncio.wait_for(handle.result(), 60)
    assert result.outcome is Outcome.promoted
    kinds = [e.kind for e in result.timeline]
    assert kinds.index("alert") < kinds.index("resumed")


async def test_abort_while_paused_on_alert_rolls_back(harness: Harness) -> None:
    handle = await _paused_on_alert(harness)
    await deployments.abort(harness.client, handle.id, "oncall", "not worth the risk today")
    result = await asyncio.wait_for(handle.result(), 60)
    assert result.outcome is Outcome.rolled_back
    assert harness.state.weights[APP] == {"canary": 0, "stable": 100}
    assert (APP, "canary") not in harness.state.deployed
