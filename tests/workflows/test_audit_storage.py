"""The audit log's disk full: the deployment pauses with an alert instead of going on unaudited.

Each test gives the worker a ZDP_HOME of its own whose audit folder is a small real disk (a
tmpfs, tests/small_disk.py), fills it, and checks: an `alert` event, the phase `paused`,
nothing changed while paused, `resume` (after space is freed) appends again and goes on, and
in the end the log verifies and holds every event of the run exactly once. A disk that fills
during a rollback does not stop the compensations: traffic is restored first, and the final
append waits, paused, for space.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest_asyncio
from temporalio.client import WorkflowHandle

from tests.kit import APP, Harness
from tests.small_disk import SmallDisk, small_disk
from zdp import deployments
from zdp.compliance.audit.log import AuditLog, default_log_path, verify_log
from zdp.compliance.engine_key import engine_key
from zdp.metrics import REGISTRY
from zdp.models import DeploymentResult, DeploymentStatus, Outcome, Phase

WORKFLOW_ID = f"deploy-{APP}-dev"


@dataclass
class FullDisk:
    kit: Harness
    disk: SmallDisk

    @property
    def log_path(self) -> Path:
        return default_log_path(self.kit.home)

    def alerts(self, result: DeploymentResult) -> list[str]:
        return [e.message for e in result.timeline if e.kind == "alert"]

    def check_log(self, result: DeploymentResult) -> None:
        """The log verifies, and holds each event of the run once, in order: all of its
        timeline but the sealing of the evidence, which comes after the last append."""
        verify_log(self.log_path, public_keys=[engine_key(self.kit.home).public_key()])
        run_id = result.status.run_id
        assert run_id is not None
        lines = AuditLog(self.log_path).entries_of(WORKFLOW_ID, f"{run_id}/").splitlines()
        ids = [line.split(b'"event_id":"', 1)[1].split(b'"', 1)[0].decode() for line in lines]
        assert result.timeline[-1].kind == "evidence_sealed"
        assert ids == [f"{run_id}/{i}" for i in range(len(result.timeline) - 1)]


@pytest_asyncio.fixture
async def full(kit: Harness, tmp_path: Path) -> AsyncIterator[FullDisk]:
    """The kit with a home of its own, whose audit folder is a 1 MB disk (not yet full)."""
    kit.home = tmp_path / "home"
    engine_key(kit.home)  # the key is not on the small disk
    with small_disk(default_log_path(kit.home).parent) as disk:
        yield FullDisk(kit, disk)
        await _terminate(kit)  # before the disk goes: a held deployment must not outlive it


async def _terminate(kit: Harness) -> None:
    if await deployments.is_running(kit.client, WORKFLOW_ID):
        await kit.client.get_workflow_handle(WORKFLOW_ID).terminate("test cleanup")


def held(status: DeploymentStatus) -> bool:
    return status.paused and status.phase is Phase.paused


async def alerts_so_far(handle: WorkflowHandle[Any, Any]) -> list[str]:
    timeline = await deployments.timeline(handle._client, handle.id)
    return [e.message for e in timeline if e.kind == "alert"]


def counted(outcome: Outcome) -> float:
    labels = {"app": APP, "environment": "dev", "strategy": "canary", "outcome": outcome.value}
    return REGISTRY.get_sample_value("zdp_deployments_total", labels) or 0.0


def phase_shown(phase: str) -> float:
    labels = {"app": APP, "environment": "dev", "strategy": "canary", "phase": phase}
    return REGISTRY.get_sample_value("zdp_deployment_phase", labels) or 0.0


async def resume(kit: Harness) -> None:
    await deployments.resume(kit.client, WORKFLOW_ID, "oncall", "space freed")


async def test_a_full_audit_disk_pauses_before_anything_changes_until_resumed(
    full: FullDisk,
) -> None:
    kit, disk = full.kit, full.disk
    disk.fill()
    async with kit.worker():
        handle = await kit.start(kit.request("2.0.0"))
        await kit.wait_for(handle, held, timeout=60)
        # Held at the audit before provisioning: nothing was started, no traffic moved.
        assert (APP, "canary") not in kit.state.deployed
        assert kit.state.weights[APP] == {"stable": 100}
        assert [op for op, _ in kit.state.ops(APP)] == []

        await resume(kit)  # too early: still full, so it holds again, with a second alert
        deadline = asyncio.get_running_loop().time() + 60
        while len(await alerts_so_far(handle)) < 2:
            assert asyncio.get_running_loop().time() < deadline, "no second alert"
            await asyncio.sleep(0.05)
        await kit.wait_for(handle, held, timeout=60)

        disk.free()
        await resume(kit)
        result = await asyncio.wait_for(handle.result(), timeout=60)

    assert result.outcome is Outcome.promoted
    alerts = full.alerts(result)
    assert len(alerts) == 2
    assert alerts[0] == (
        f"audit log cannot be written: disk full at {full.log_path} (No space left on device); "
        "paused: free space, then resume"
    )
    kinds = [e.kind for e in result.timeline]
    # alert -> paused -> resumed -> back to the phase it held in, before provisioning
    first = kinds.index("alert")
    assert kinds[first : first + 2] == ["alert", "phase"]
    assert result.timeline[first + 1].message.startswith("paused: ")
    assert kinds.index("resumed") < kinds.index("provisioned")
    full.check_log(result)


async def test_disk_full_during_a_rollback_restores_traffic_then_holds_the_last_append(
    full: FullDisk,
) -> None:
    """Traffic safety first: the compensations run; the final append waits for space."""
    kit, disk = full.kit, full.disk
    kit.state.fail_at_weight[(APP, "2.0.0")] = 25
    before = counted(Outcome.rolled_back)
    async with kit.worker():
        handle = await kit.start(kit.request("2.0.0", bake_seconds=1.0))
        await kit.wait_for(handle, lambda s: s.phase is Phase.shift, timeout=60)
        disk.fill()  # the first append (before provisioning) went through; the next cannot
        status = await kit.wait_for(handle, held, timeout=60)

        # Rolled back before it held: v1 takes all traffic again and the canary is gone.
        assert status.outcome is Outcome.rolled_back
        assert kit.state.weights[APP] == {"canary": 0, "stable": 100}
        assert (APP, "canary") not in kit.state.deployed
        assert await deployments.is_running(kit.client, WORKFLOW_ID)  # not closed unaudited
        assert phase_shown("paused") == 1  # what ZdpDeploymentPaused watches

        disk.free()
        await resume(kit)
        result = await asyncio.wait_for(handle.result(), timeout=60)

    assert result.outcome is Outcome.rolled_back
    assert len(full.alerts(result)) == 1
    kinds = [e.kind for e in result.timeline]
    assert kinds.index("compensated") < kinds.index("alert") < kinds.index("resumed")
    assert result.timeline[-2].phase is Phase.done  # back where it held, then sealed
    # It ended twice (before and after the hold) but counts once, and shows paused no more.
    assert counted(Outcome.rolled_back) == before + 1
    assert phase_shown("paused") == 0
    full.check_log(result)


async def test_abort_while_held_ends_the_deployment_and_its_last_append_waits_too(
    full: FullDisk,
) -> None:
    kit, disk = full.kit, full.disk
    disk.fill()
    async with kit.worker():
        handle = await kit.start(kit.request("2.0.0"))
        await kit.wait_for(handle, held, timeout=60)
        await deployments.abort(kit.client, WORKFLOW_ID, "oncall", "disk full, try later")
        # Nothing had changed, so it ends aborted; its final append holds in turn.
        await kit.wait_for(handle, lambda s: s.outcome is Outcome.aborted and held(s), timeout=60)
        assert (APP, "canary") not in kit.state.deployed

        disk.free()
        await resume(kit)  # after the end, only resume moves it on
        result = await asyncio.wait_for(handle.result(), timeout=60)

    assert result.outcome is Outcome.aborted
    assert len(full.alerts(result)) == 2
    assert [op for op, _ in kit.state.ops(APP)] == []
    full.check_log(result)
