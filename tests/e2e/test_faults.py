"""The fault matrix's CI subset (issue 18): bench/faults.py's cases, run as tests on one stack.

One embedded stack for the module (Temporal dev server, Envoy, a worker on the local runtime,
finance-trading's real processes) in its own home and ports ("faults" in tests/ports.py). Each
test deploys the next version of finance-trading by canary under a steady load through its
Envoy listener (an independent load generator process) while one thing breaks, exactly as the
bench does (the same case functions), and asserts what someone relies on: the outcome, no
failed idempotent request through the listener, and an audit log that verifies with the
deployment's timeline in it once, nothing missing. Every wait is bounded by a generous clock
and polls; nothing is timed.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from bench.faults import (
    APP,
    BAD,
    Harness,
    kill_envoy,
    kill_worker_at,
    slot_signal,
    temporal_restart_mid_bake,
)
from tests.ports import free_port, port_base
from zdp.cli.demo import DEMO_CONFIG, Demo
from zdp.models import Strategy
from zdp.platforms.envoy.router import EnvoyRouter
from zdp.stack import Stack
from zdp.temporal import connect

# Its 0-failed-requests goal is judged under its own load: on a machine also running the other
# modules side by side, the apps' CPU starvation times requests out (a fresh-clone run lost 28 of
# them to a fault that is not on the request path). `make test` runs it after them, by itself.
pytestmark = pytest.mark.alone


@pytest.fixture(scope="module")
def faults_demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """The module's stack, up, and the demo's keys, identities and wheels (prepared once: the
    wheels are built here, not again for each test); `zdp down` after."""
    home = tmp_path_factory.mktemp("zdp-faults")
    env = {
        "ZDP_HOME": str(home),
        "ZDP_PORT_BASE": str(port_base("faults")),
        "ZDP_TEMPORAL_PORT": str(free_port()),
        # The stack's workers hand a workflow task to any worker after 3 s on their own queue
        # (10 s by default): a killed worker's next task then waits 3 s, not 10, before a new
        # worker takes it (and replays the history; what is asserted is unchanged).
        "ZDP_WORKER_STICKY_TIMEOUT": "3",
    }
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        for key in [k for k in os.environ if k.startswith("TEMPORAL_")]:
            patch.delenv(key)
        stack = Stack(home=home, config=DEMO_CONFIG)
        try:
            demo = Demo(home, quiet=True)
            demo.prepare()
            yield demo
        finally:
            stack.down()


RATE = 100.0
# Versions only go up (an older one is blocked as a downgrade): one counter for the module.
VERSIONS = {"next": 0}


@pytest.fixture
async def h(faults_demo: Demo) -> AsyncIterator[Harness]:
    demo = faults_demo
    faults_home = demo.home
    # Whatever the last test left down comes up again (each case already ends with `zdp up`).
    stack = Stack(home=faults_home, config=DEMO_CONFIG)
    await asyncio.to_thread(stack.up)
    client = await connect(target_host=stack.temporal_address)
    router = EnvoyRouter(faults_home)
    # 100 requests a second: enough to see any failure, light enough that the load itself does
    # not starve the app processes on two cores while other test modules run beside this one.
    harness = Harness(faults_home, stack, demo, client, router, rate=RATE)
    harness.version_counter = VERSIONS["next"]
    if harness.version_counter == 0:
        await demo.deploy(client, APP, "1.0.0", Strategy.canary, load=False)
    try:
        yield harness
    finally:
        VERSIONS["next"] = harness.version_counter
        await router.aclose()


def _held(row: dict[str, Any]) -> None:
    """What every case must keep: no failed request, and the evidence intact."""
    assert row["requests_failed"] == 0, json.dumps(row)
    assert row["audit_ok"], row["audit"]
    assert row["requests_sent"] > 1000, json.dumps(row)  # load flowed for the whole deployment


async def test_worker_killed_mid_bake_a_new_worker_finishes_the_deployment(h: Harness) -> None:
    row = await h.deploy(kill_worker_at("run_health_gate", 2, delay=1.0))
    assert row["outcome"] == "promoted", json.dumps(row)
    assert row["kill_landed_in_activity"], row["note"]  # the gate ran again on the new worker
    _held(row)


async def test_worker_killed_during_the_compensations_the_rollback_completes(
    h: Harness,
) -> None:
    row = await h.deploy(
        kill_worker_at("retire_version", 1, delay=0.05, label="in the rollback, "),
        expected="rolled_back",
        overrides=BAD,
    )
    assert row["outcome"] == "rolled_back", json.dumps(row)
    assert not (h.home / "runtime" / APP / "canary.json").exists()  # the canary was retired
    _held(row)


async def test_temporal_restarted_mid_bake_the_deployment_goes_on(h: Harness) -> None:
    row = await temporal_restart_mid_bake(h)
    assert row["outcome"] == "promoted", json.dumps(row)
    _held(row)


async def test_envoy_killed_mid_canary_comes_back_with_the_current_weights(h: Harness) -> None:
    row = await h.deploy(kill_envoy(whole_session=False))
    assert row["outcome"] == "promoted", json.dumps(row)
    assert row["weights_kept"], row["note"]
    assert row["audit_ok"], row["audit"]
    # One Envoy serves the listener: requests sent while it is down fail (connection refused
    # or reset), and only those: at most the outage's worth at the load's rate, with slack.
    outage = row["envoy_back_s"] + 2.0
    assert row["requests_failed"] <= RATE * outage, json.dumps(row)
    assert set(row["failure_kinds"]) <= {
        "ConnectionRefusedError", "ConnectionResetError", "IncompleteReadError",
        "BrokenPipeError", "OSError",
    }, json.dumps(row)  # fmt: skip


async def test_hung_canary_is_rolled_back_and_users_never_see_it(h: Harness) -> None:
    row = await h.deploy(slot_signal("canary", signal.SIGSTOP), expected="rolled_back")
    assert row["outcome"] == "rolled_back", json.dumps(row)
    assert row["cause"] and "slow" in row["cause"], row["cause"]
    _held(row)
