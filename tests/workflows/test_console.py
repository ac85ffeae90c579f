"""The Temporal UI as the operator's console: saved queries, summaries and current details.

Everything here is read through the client API, exactly what the UI shows: the visibility
query an operator saves, the workflow's static summary and details, its current details
(markdown), and the summary of every activity in the history.
"""

from __future__ import annotations

import asyncio

from temporalio.api.enums.v1 import EventType
from temporalio.api.sdk.v1 import WorkflowMetadata

from tests.kit import APP, Harness
from zdp import deployments
from zdp.models import Outcome, Phase


async def _found(harness: Harness, query: str, workflow_id: str) -> bool:
    for _ in range(100):  # visibility is eventually consistent: a few seconds at most
        async for execution in harness.client.list_workflows(query):
            if execution.id == workflow_id:
                return True
        await asyncio.sleep(0.1)
    return False


async def test_operator_finds_summarises_and_follows_a_deployment(harness: Harness) -> None:
    handle = await harness.start(harness.request("2.0.0", environment="prod"))
    await harness.wait_for(handle, lambda s: s.phase is Phase.await_approval)

    query = f'ZdpApp = "{APP}" AND ZdpPhase = "await_approval"'
    assert await _found(harness, query, handle.id)
    desc = await handle.describe()
    assert await desc.static_summary() == f"{APP} 2.0.0 → prod (canary)"
    assert await desc.static_details() == (
        "Started by **ci-bot** · change `CHG-1001`\n\ntest deployment"
    )
    metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    details = metadata.current_details
    assert "**Phase:** await_approval" in details
    assert "**Approvals:** 0 of 1 (none yet); who may approve: alice, bob, carol" in details

    await deployments.approve(harness.client, handle.id, "alice")
    result = await asyncio.wait_for(handle.result(), 60)
    assert result.outcome is Outcome.promoted
    assert await _found(harness, f'ZdpApp = "{APP}" AND ZdpOutcome = "promoted"', handle.id)
    metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    assert "**Outcome:** promoted" in metadata.current_details
    assert "**Last gate verdict:** step 4/4: 100%: pass" in metadata.current_details

    summaries = []
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            payload = event.user_metadata.summary
            summaries.append(harness.client.data_converter.payload_converter.from_payload(payload))
    assert summaries[:2] == [f"verify signed release of {APP}", "score risk and apply policy"]
    assert "shift traffic to canary=25% stable=75%" in summaries
    assert any(s.startswith("gate step 3/4: 25%: ") and s.endswith(" s bake") for s in summaries)
    assert "start 2.0.0 in slot canary" in summaries
    assert summaries[-1] == "seal the evidence bundle"
