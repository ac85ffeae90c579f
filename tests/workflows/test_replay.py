"""Determinism guard: recorded histories must replay against today's workflow code.

The histories in tests/histories/ were recorded from real runs of the workflow tests
(`ZDP_RECORD_HISTORIES=1 pytest tests/workflows`). A change to DeploymentWorkflow that would
break running deployments makes this test fail; such a change goes behind `workflow.patched`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from workflows.deployment import DeploymentWorkflow

HISTORIES = sorted((Path(__file__).parent.parent / "histories").glob("*.json"))


def test_histories_are_recorded() -> None:
    # Without recorded histories the replay test below would pass vacuously.
    assert len(HISTORIES) >= 5, "record histories: ZDP_RECORD_HISTORIES=1 pytest tests/workflows"


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_recorded_history_replays_deterministically(path: Path) -> None:
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    replayer = Replayer(workflows=[DeploymentWorkflow], data_converter=pydantic_data_converter)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None
