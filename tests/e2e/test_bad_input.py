"""The bad-input matrix: every wrong request a user, a script or an attacker can send.

Each case asserts what the sender sees (one line, the documented exit code or HTTP status, no
traceback) and that nothing was applied: no workflow started, no audit entry, no evidence
bundle, no change on the platform (no version provisioned, no route changed). The `zdp`
command runs as a subprocess, exactly as CI runs it, against the session's Temporal server,
with a worker running, so anything that did start would leave a trace.

Exit codes (docs/operators.md): 2 is a request refused before anything started.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from temporalio.service import RPCError

from tests.cli_checks import flip_first, one_clear_line, zdp
from tests.kit import APP, HERE, Harness, part11_prod
from tests.slack.slack_kit import ALICE, BOB, SlackWorld, sign
from zdp import deployments
from zdp.compliance.audit.log import default_log_path, evidence_dir
from zdp.models import (
    DeploymentStatus,
    Outcome,
    Phase,
    ReleaseManifest,
    Strategy,
)
from zdp.release import sign_manifest
from zdp.slack.messages import APPROVE_ACTION

IMAGE = "registry.example.com/shop/webshop@sha256:" + "ab" * 32
# The workflow ids a refused request could have started.
WATCHED = [f"deploy-{APP}-dev", f"deploy-{APP}-prod", "deploy-nosuchapp-dev"]


@dataclass(frozen=True)
class Trace:
    """Everything a request that got through would have changed."""

    runs: dict[str, str | None]  # workflow id -> its latest run id
    audit_lines: int
    bundles: tuple[str, ...]
    ops: tuple[tuple[str, ...], ...]
    weights: dict[str, int]


async def trace(kit: Harness) -> Trace:
    runs: dict[str, str | None] = {}
    for workflow_id in WATCHED:
        try:
            runs[workflow_id] = (
                await kit.client.get_workflow_handle(workflow_id).describe()
            ).run_id
        except RPCError:
            runs[workflow_id] = None
    log = default_log_path(kit.home)
    bundles = evidence_dir(kit.home)
    return Trace(
        runs=runs,
        audit_lines=len(log.read_bytes().splitlines()) if log.exists() else 0,
        bundles=tuple(sorted(str(p) for p in bundles.glob("*/*"))) if bundles.is_dir() else (),
        ops=tuple(tuple(str(part) for part in op) for op in kit.state.ops(APP)),
        weights=dict(kit.state.weights.get(APP, {})),
    )


@pytest.fixture
def bad(cli: Harness, tmp_path: Path) -> Path:
    """Next to the good release.json and release.dsse.json (the `cli` fixture): one file for
    every way a release or a config can be wrong."""
    good = json.loads((tmp_path / "release.json").read_text())

    def envelope(manifest: ReleaseManifest, key: Ed25519PrivateKey, name: str) -> None:
        (tmp_path / name).write_text(sign_manifest(manifest, key).model_dump_json())

    other_app = ReleaseManifest.model_validate({**good, "app": "other-shop"})
    envelope(other_app, cli.signer.key, "other-app.dsse.json")
    envelope(
        ReleaseManifest.model_validate(good), Ed25519PrivateKey.generate(), "stranger.dsse.json"
    )
    tampered = json.loads((tmp_path / "release.dsse.json").read_text())
    tampered["signatures"][0]["sig"] = flip_first(tampered["signatures"][0]["sig"])
    (tmp_path / "tampered.dsse.json").write_text(json.dumps(tampered))
    # An edited manifest beside the envelope of the release it was made from.
    (tmp_path / "edited").mkdir()
    (tmp_path / "edited" / "release.json").write_text(json.dumps({**good, "version": "9.9.9"}))
    (tmp_path / "edited" / "release.dsse.json").write_text(
        (tmp_path / "release.dsse.json").read_text()
    )
    (tmp_path / "unsigned.json").write_text(json.dumps(good))
    (tmp_path / "broken.json").write_text('{"app": "webshop", "version": ')
    (tmp_path / "broken.dsse.json").write_text('{"payloadType": 3}')
    # The test engine config with production allowing canary only, and a broken config.
    config = yaml.safe_load((HERE / "workflows" / "engine.yaml").read_text())
    config["apps"][APP]["environments"]["prod"]["strategies"] = ["canary"]
    config["gate_policies"] = str(HERE / "workflows" / "gate-policies.yaml")
    (tmp_path / "canary-only.yaml").write_text(yaml.safe_dump(config))
    (tmp_path / "broken.yaml").write_text("apps:\n  webshop: [unclosed\n")
    return tmp_path


R = "release.json"
CASES: list[tuple[str, list[str], int, str]] = [
    ("unknown app", ["deploy", "nosuchapp", "--env", "dev", "--release", R], 2,
     "unknown app 'nosuchapp': known apps are webshop"),
    ("unknown environment", ["deploy", APP, "--env", "nowhere", "--release", R], 2,
     "app 'webshop' has no environment 'nowhere'"),
    ("release of another app", ["deploy", APP, "--env", "dev", "--release", "other-app.dsse.json"],
     2, "release is for app 'other-shop', not 'webshop'"),
    ("strategy not allowed", ["deploy", APP, "--env", "prod", "--strategy", "blue-green",
     "--release", R, "--config", "canary-only.yaml"], 2,
     "strategy blue-green is not allowed for webshop in prod; allowed: canary"),
    ("steps not numbers", ["deploy", APP, "--env", "dev", "--release", R, "--steps", "abc"], 2,
     "--steps must be comma-separated percentages"),
    ("steps not rising", ["deploy", APP, "--env", "dev", "--release", R, "--steps", "50,10,100"],
     2, "steps must be strictly increasing"),
    ("negative bake", ["deploy", APP, "--env", "dev", "--release", R, "--bake", "-5"], 2,
     "bake_seconds"),
    ("path-traversal app", ["deploy", "../../etc", "--env", "dev", "--release", R], 2,
     "app must be a DNS-style name"),
    ("path-traversal environment", ["deploy", APP, "--env", "../prod", "--release", R], 2,
     "environment must be a DNS-style name"),
    ("malformed release file", ["deploy", APP, "--env", "dev", "--release", "broken.json"], 2,
     "broken.json is not valid JSON: Expecting value at line 1 column 31"),
    ("malformed envelope", ["deploy", APP, "--env", "dev", "--release", "broken.dsse.json"], 2,
     "malformed envelope"),
    ("manifest edited after signing", ["deploy", APP, "--env", "dev", "--release",
     "edited/release.json"], 2, "differs from the release signed in"),
    ("unsigned release", ["deploy", APP, "--env", "dev", "--release", "unsigned.json"], 2,
     "no signature: "),
    ("tampered signature", ["deploy", APP, "--env", "dev", "--release", "tampered.dsse.json"], 2,
     "bad signature: the signature claiming trusted key"),
    ("unknown signer", ["deploy", APP, "--env", "dev", "--release", "stranger.dsse.json"], 2,
     "unknown key: no trusted key verifies the signature"),
    ("malformed YAML config", ["deploy", APP, "--env", "dev", "--release", R, "--config",
     "broken.yaml"], 2, "broken.yaml:3:1: invalid YAML"),
    ("release of an unknown app", ["release", "create", "nosuchapp", "--version", "1.0.0",
     "--image", IMAGE, "-o", "never.json"], 2, "unknown app 'nosuchapp'"),
    ("usage error", ["deploy", APP, "--env", "dev"], 2, ""),
]  # fmt: skip


@pytest.mark.parametrize(
    ("args", "code", "says"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
async def test_a_refused_command_says_why_in_one_line_and_changes_nothing(
    args: list[str], code: int, says: str, bad: Path, cli: Harness, cli_env: dict[str, str]
) -> None:
    env = {**cli_env, "ZDP_TRUSTED_KEYS": str(cli.signer.trusted_dir)}
    before = await trace(cli)
    run = await zdp(*[a if not (bad / a).exists() else str(bad / a) for a in args], env=env)
    assert run.code == code, run.err
    assert "Traceback" not in run.err
    if says:  # click's own usage errors print a usage block; ours are one line
        assert says in one_clear_line(run), run.err
    await asyncio.sleep(0.2)  # a workflow that had started would have acted by now
    assert await trace(cli) == before
    assert not (bad / "never.json").exists()


# Without the trusted keys, the CLI cannot judge a signature: the worker, the authority on
# signer trust, rejects a tampered release before anything changes (exit 11):
# tests/e2e/test_cli.py::test_tampered_manifest_is_rejected_with_exit_11.


async def test_the_worker_refuses_a_strategy_the_environment_does_not_allow(
    harness: Harness,
) -> None:
    """A client that skips the CLI's pre-flight still cannot deploy blue-green where only
    canary is allowed: the worker applies the same rules."""
    harness.config.apps[APP].environments["dev"].strategies = [Strategy.canary]
    result = await harness.deploy(harness.request("2.0.0", strategy=Strategy.blue_green))
    assert result.outcome is Outcome.rejected
    assert result.cause == (
        "release rejected: strategy blue-green is not allowed for webshop in dev; allowed: canary"
    )
    assert not [op for op in harness.state.ops(APP) if op[0] == "provision"]


# --------------------------------------------------------------------------- Slack


async def _awaiting_in_slack(harness: Harness, slack: SlackWorld) -> tuple[object, object]:
    handle = await harness.start(harness.request("2.0.0", environment="prod"))
    status = await harness.wait_for(handle, lambda s: s.phase is Phase.await_approval)
    return handle, await slack.post_approval(status)


async def _nothing_applied_in_slack(harness: Harness, slack: SlackWorld, handle: object) -> None:
    await asyncio.sleep(0.5)  # a request the bot had taken would have been applied by now
    assert slack.api.of("chat.update") == []
    status: DeploymentStatus = await harness.status(handle)  # type: ignore[arg-type]
    assert status.phase is Phase.await_approval and status.approvals == []


async def test_forged_slack_requests_are_401_and_change_nothing(
    harness: Harness, slack: SlackWorld
) -> None:
    handle, message = await _awaiting_in_slack(harness, slack)
    body = slack.click_body(message, APPROVE_ACTION, ALICE)
    now = int(time.time())
    wrong_secret = await slack.send(body, sign(body, now, secret="not-the-signing-secret"))
    other_body = slack.click_body(message, APPROVE_ACTION, BOB)
    moved = await slack.send(body, sign(other_body, now))  # a valid signature of another body
    unsigned = await slack.send(body, {"Content-Type": "application/x-www-form-urlencoded"})
    assert [r.status_code for r in (wrong_secret, moved, unsigned)] == [401, 401, 401]
    await _nothing_applied_in_slack(harness, slack, handle)


async def test_stale_slack_requests_are_401_even_when_correctly_signed(
    harness: Harness, slack: SlackWorld
) -> None:
    handle, message = await _awaiting_in_slack(harness, slack)
    body = slack.click_body(message, APPROVE_ACTION, ALICE)
    stale = await slack.post_signed(body, timestamp=int(time.time()) - 6 * 60)
    future = await slack.post_signed(body, timestamp=int(time.time()) + 6 * 60)
    assert (stale.status_code, future.status_code) == (401, 401)
    await _nothing_applied_in_slack(harness, slack, handle)


async def test_a_replayed_slack_request_has_no_second_effect(
    harness: Harness, slack: SlackWorld
) -> None:
    handle, message = await _awaiting_in_slack(harness, slack)
    body = slack.click_body(message, APPROVE_ACTION, ALICE)
    headers = sign(body, int(time.time()))
    first = await slack.send(body, headers)
    await slack.update_of(message)
    replay = await slack.send(body, headers)  # byte for byte, inside the 5-minute window
    assert (first.status_code, replay.status_code, replay.text) == (200, 200, "")
    result = await asyncio.wait_for(handle.result(), 60)  # type: ignore[attr-defined]
    await asyncio.sleep(0.5)  # a replay the bot had taken would have edited the message again
    assert len([u for u in slack.api.of("chat.update") if u.params["ts"] == message.ts]) == 1  # type: ignore[attr-defined]
    assert [e.actor for e in result.timeline if e.kind == "decision"] == ["alice"]


# --------------------------------------------------------------------------- e-signatures


async def test_a_reused_e_signature_is_refused_and_recorded(
    harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Part 11 signature made for one run cannot approve the next run of the same release."""
    alice = part11_prod(harness, tmp_path / "approvers", monkeypatch, "alice")["alice"]

    async def awaiting() -> object:
        request = harness.request("2.0.0", environment="prod")
        request.release = harness.signer.validated("2.0.0", "alice", alice)
        handle = await harness.start(request)
        await harness.wait_for(handle, lambda s: s.phase is Phase.await_approval)
        return handle

    first = await awaiting()
    used = await deployments.sign_decision(
        harness.client,
        first.id,
        "alice",
        "approve",
        "approve release",
        alice,  # type: ignore[attr-defined]
    )
    await deployments.approve(harness.client, first.id, "alice", None, used)  # type: ignore[attr-defined]
    assert (await asyncio.wait_for(first.result(), 60)).outcome is Outcome.promoted  # type: ignore[attr-defined]

    second = await awaiting()
    before = await harness.status(second)  # type: ignore[arg-type]
    with pytest.raises(deployments.RequestRefused) as refused:
        await deployments.approve(harness.client, second.id, "alice", None, used, channel="cli")  # type: ignore[attr-defined]
    assert str(refused.value) == (
        "the signature was made for another run of this deployment (run_id differs)"
    )
    after = await harness.status(second)  # type: ignore[arg-type]
    assert after.approvals == before.approvals == [] and after.phase is Phase.await_approval
    timeline = await deployments.timeline(harness.client, second.id)  # type: ignore[attr-defined]
    assert [e.data["reason"] for e in timeline if e.kind == "decision_refused"] == [
        str(refused.value)
    ]
