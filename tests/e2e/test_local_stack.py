"""The embedded stack end to end: Temporal dev server, Envoy, app processes, steady load.

One stack for the module (its own ZDP_HOME and ports). `zdp demo --json` runs the main job
through it; then a worker is killed in the middle of a bake and a new one finishes the
deployment while traffic keeps flowing; finally `zdp down` must leave no process behind.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from zdp import deployments
from zdp.demo import DEMO_CONFIG, Demo
from zdp.models import DeploymentRequest, Outcome, Phase, Strategy
from zdp.platforms.local_layout import LOCAL_APPS
from zdp.stack import Stack, pid_alive
from zdp.temporal import connect

ZDP = str(Path(sys.executable).parent / "zdp")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def stack_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    home = tmp_path_factory.mktemp("zdp-home")
    env = {
        "ZDP_HOME": str(home),
        "ZDP_PORT_BASE": str(31000 + (os.getpid() % 50) * 300),
        "ZDP_TEMPORAL_PORT": str(_free_port()),
        "COLUMNS": "200",
    }
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        for key in [k for k in os.environ if k.startswith("TEMPORAL_")]:
            patch.delenv(key)
        yield {**os.environ}
        stopped = subprocess.run(
            [ZDP, "down"], env={**os.environ}, capture_output=True, text=True, timeout=120
        )
        assert stopped.returncode == 0, stopped.stderr


@pytest.fixture(scope="module")
def demo_result(stack_env: dict[str, str]) -> dict[str, Any]:
    run = subprocess.run(
        [ZDP, "demo", "--json"], env=stack_env, capture_output=True, text=True, timeout=600
    )
    assert "Traceback" not in run.stderr, run.stderr
    assert run.returncode == 0, run.stdout + run.stderr
    return dict(json.loads(run.stdout))


def test_demo_promotes_v2_rolls_back_v3_and_switches_pharma_with_no_failed_request(
    demo_result: dict[str, Any],
) -> None:
    rows = {(d["app"], d["version"]): d for d in demo_result["deployments"]}
    assert rows[("finance-trading", "2.0.0")]["outcome"] == "promoted"
    assert rows[("finance-trading", "3.0.0")]["outcome"] == "rolled_back"
    assert rows[("pharma-manufacturing", "2.0.0")]["outcome"] == "promoted"
    assert rows[("pharma-manufacturing", "2.0.0")]["strategy"] == "blue-green"
    for row in demo_result["deployments"]:
        assert set(row) >= {
            "app", "version", "strategy", "outcome",
            "requests_sent", "requests_failed", "containment_ms",
        }  # fmt: skip
        assert row["requests_failed"] == 0, row
    # Load flowed through both canaries. The bad one is rolled back within a second or two,
    # so it sees far fewer requests than the good one's full bake (one second of load is 200).
    assert rows[("finance-trading", "2.0.0")]["requests_sent"] > 500
    assert rows[("finance-trading", "3.0.0")]["requests_sent"] > 100
    bad = rows[("finance-trading", "3.0.0")]
    assert bad["containment_ms"] is not None and bad["containment_ms"] < 5000
    assert demo_result["ok"] is True


async def test_worker_killed_mid_bake_is_replaced_and_traffic_stays_intact(
    demo_result: dict[str, Any], stack_env: dict[str, str]
) -> None:
    home = Path(stack_env["ZDP_HOME"])
    stack = Stack(home=home, config=DEMO_CONFIG)
    demo = Demo(home, quiet=True)
    await asyncio.to_thread(demo.prepare)  # idempotent: the stack is already up
    client = await connect(target_host=stack.temporal_address)

    async def kill_worker_mid_bake() -> None:
        workflow_id = "deploy-finance-trading-staging"
        for _ in range(600):
            try:
                status = await client.get_workflow_handle(workflow_id).query("status")
            except Exception:
                await asyncio.sleep(0.05)
                continue
            if status.get("phase") == Phase.shift.value and status.get("weights", {}).get("canary"):
                break
            await asyncio.sleep(0.05)
        pid = stack.record()["worker"]["pid"]
        os.kill(pid, signal.SIGKILL)  # a crash, not a drain
        await asyncio.sleep(1.0)
        assert not pid_alive(pid, "zdp worker")
        await asyncio.to_thread(stack.up)  # a new worker
        assert stack.record()["worker"]["pid"] != pid

    killer = asyncio.create_task(kill_worker_mid_bake())
    summary = await demo.deploy(client, "finance-trading", "4.0.0", Strategy.canary, True)
    await killer
    assert summary.outcome == Outcome.promoted.value, summary.cause
    assert summary.requests_failed == 0
    assert summary.requests_sent > 500


async def _demo_client(stack_env: dict[str, str]) -> tuple[Demo, Any]:
    home = Path(stack_env["ZDP_HOME"])
    demo = Demo(home, quiet=True)
    await asyncio.to_thread(demo.prepare)  # idempotent: the stack is already up
    client = await connect(target_host=Stack(home=home, config=DEMO_CONFIG).temporal_address)
    return demo, client


async def test_latency_only_fault_is_caught_and_rolled_back(
    demo_result: dict[str, Any], stack_env: dict[str, str]
) -> None:
    demo, client = await _demo_client(stack_env)
    summary = await asyncio.wait_for(
        demo.deploy(
            client, "finance-trading", "5.0.0", Strategy.canary, True, FAULT_LATENCY_MS="200"
        ),
        180,
    )
    assert summary.outcome == Outcome.rolled_back.value, summary.cause
    assert summary.cause and "slower than stable" in summary.cause
    assert summary.requests_failed == 0


async def test_stable_failing_too_pauses_instead_of_rolling_back(
    demo_result: dict[str, Any], stack_env: dict[str, str]
) -> None:
    demo, client = await _demo_client(stack_env)
    app = "finance-trading"
    first = await asyncio.wait_for(
        demo.deploy(client, app, "6.0.0", Strategy.canary, False, DRILL_ENDPOINT="1"), 180
    )
    assert first.outcome == Outcome.promoted.value, first.cause
    stable_url = f"http://127.0.0.1:{LOCAL_APPS[app].slot_port('stable')}/drill/faults"
    workflow_id = f"deploy-{app}-staging"
    request = DeploymentRequest(
        app=app,
        environment="staging",
        release=demo.release(app, "7.0.0", FAULT_ERROR_RATE="1.0"),
        initiator="ci-bot",
    )
    handle = await deployments.start_deployment(client, request)
    await demo.approve_when_asked(client, handle.id, ("bob", "carol", "alice"))
    async with httpx.AsyncClient(trust_env=False) as http:
        for _ in range(400):  # the outage elsewhere: stable starts failing once the canary runs
            status = await deployments.status(client, workflow_id)
            if status.weights.get("canary"):
                break
            await asyncio.sleep(0.05)
        assert (await http.post(stable_url, json={"error_rate": 1.0})).status_code == 200
        try:
            for _ in range(600):
                status = await deployments.status(client, workflow_id)
                if status.phase is Phase.paused or status.outcome is not None:
                    break
                await asyncio.sleep(0.05)
            assert status.phase is Phase.paused, status
            events = await deployments.timeline(client, workflow_id)
            assert any(e.kind == "alert" and "not the cause" in e.message for e in events)
            assert not any(e.kind == "compensated" for e in events)
        finally:
            await http.post(stable_url, json={"error_rate": 0.0})
            await deployments.abort(client, workflow_id, "test", "cleanup")
    result = await deployments.wait_result(client, workflow_id)
    assert result.outcome is Outcome.rolled_back


def test_up_again_is_safe_and_status_shows_what_runs(
    demo_result: dict[str, Any], stack_env: dict[str, str]
) -> None:
    before = Stack(home=Path(stack_env["ZDP_HOME"])).record()
    again = subprocess.run([ZDP, "up"], env=stack_env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    after = Stack(home=Path(stack_env["ZDP_HOME"])).record()
    for part in ("temporal", "envoy", "worker"):
        assert after[part]["pid"] == before[part]["pid"], part  # nothing restarted
    status = subprocess.run(
        [ZDP, "up", "--status"], env=stack_env, capture_output=True, text=True, timeout=60
    )
    lines = {line.split()[0]: line for line in status.stdout.splitlines() if line.strip()}
    for part in ("temporal", "envoy", "worker"):
        assert "running" in lines[part], status.stdout
    assert "finance-trading/stable" in status.stdout


def test_down_leaves_no_process_of_ours(stack_env: dict[str, str]) -> None:
    home = Path(stack_env["ZDP_HOME"])
    record = Stack(home=home).record()
    pids = [record["temporal"]["pid"], record["worker"]["pid"], record["envoy"]["pid"]]
    apps = [json.loads(p.read_text())["pid"] for p in (home / "runtime").rglob("*.json")]
    assert apps, "the demo left app versions running for `zdp down` to stop"
    run = subprocess.run([ZDP, "down"], env=stack_env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    for pid in pids + apps:
        assert not Path(f"/proc/{pid}").exists() or _is_zombie(pid), pid


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True
