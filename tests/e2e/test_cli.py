"""The `zdp` command as CI and people use it: real processes against a real Temporal server.

The worker runs in the test process on the in-memory platform, so faults can be injected;
the CLI runs as a subprocess exactly as a pipeline would run it.
"""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cli_checks import ZDP, flip_first, one_clear_line, zdp
from tests.kit import APP, Harness, enrol, part11_prod
from zdp import deployments
from zdp.compliance.audit.log import default_log_path, evidence_dir
from zdp.compliance.engine_key import engine_public_key_path
from zdp.config import EnvironmentConfig
from zdp.models import Outcome, Phase
from zdp.signing import generate_key_pair, load_public_key


def test_help_lists_every_command() -> None:
    import subprocess

    out = subprocess.run([ZDP, "--help"], capture_output=True, text=True, check=True).stdout
    for command in (
        "deploy",
        "approve",
        "reject",
        "pause",
        "resume",
        "abort",
        "status",
        "timeline",
        "worker",
        "keys",
        "release",
    ):
        assert f" {command} " in out, command


async def test_unreachable_server_is_one_clear_line(cli_env: dict[str, str]) -> None:
    run = await zdp("status", "deploy-x-dev", env={**cli_env, "TEMPORAL_ADDRESS": "127.0.0.1:9"})
    assert run.code == 1
    assert one_clear_line(run).startswith("error: cannot reach Temporal at 127.0.0.1:9")


async def test_unknown_deployment_is_one_clear_line(cli: Harness, cli_env: dict[str, str]) -> None:
    run = await zdp("status", "deploy-nope-dev", env=cli_env)
    assert run.code == 1
    assert (
        one_clear_line(run) == "error: no deployment deploy-nope-dev (check the id and namespace)"
    )


async def test_deploy_wait_json_exits_zero_when_promoted(
    cli: Harness, cli_env: dict[str, str], tmp_path: Path
) -> None:
    run = await zdp(
        "deploy", APP, "--env", "dev", "--release", str(tmp_path / "release.json"),
        "--wait", "--json", env=cli_env,
    )  # fmt: skip
    assert run.code == 0, run.err
    result = json.loads(run.out)
    assert result["outcome"] == "promoted"
    assert result["status"]["version"] == "2.0.0"
    # Progress went to stderr, one line per event: phases, weights and verdicts.
    assert "traffic canary=5% stable=95%" in run.err
    assert "gate_verdict" in run.err and "outcome: promoted" in run.err


async def test_approving_a_finished_deployment_says_it_has_finished(
    cli: Harness, cli_env: dict[str, str], tmp_path: Path
) -> None:
    release = str(tmp_path / "release.json")
    done = await zdp("deploy", APP, "--env", "dev", "--release", release, "--wait", env=cli_env)
    assert done.code == 0, done.err
    run = await zdp("approve", f"deploy-{APP}-dev", "--as", "bob", env=cli_env)
    assert run.code == 1
    assert one_clear_line(run) == (
        f"error: deployment deploy-{APP}-dev has finished (promoted); there is nothing to approve"
    )


async def test_a_downgrade_needs_allow_downgrade_from_an_operator(
    cli: Harness, cli_env: dict[str, str], tmp_path: Path
) -> None:
    """1.0.0 runs: 0.9.0 is blocked (exit 15) with the reason, and goes ahead when an operator
    of the environment starts it with --allow-downgrade."""
    older = tmp_path / "older.dsse.json"
    older.write_text(cli.signer.release("0.9.0").model_dump_json())
    base = ("deploy", APP, "--env", "dev", "--release", str(older), "--wait")
    refused = await zdp(*base, env=cli_env)
    assert refused.code == 15, refused.err
    assert "downgrade refused: 0.9.0 is older than the running 1.0.0" in refused.err
    allowed = await zdp(*base, "--allow-downgrade", "--initiator", "oncall", env=cli_env)
    assert allowed.code == 0, allowed.err
    assert "downgrade allowed" in allowed.err


async def test_malformed_steps_are_a_usage_error(
    cli: Harness, cli_env: dict[str, str], tmp_path: Path
) -> None:
    release = str(tmp_path / "release.json")
    run = await zdp(
        "deploy", APP, "--env", "dev", "--release", release, "--steps", "abc", env=cli_env
    )
    assert run.code == 2
    assert "--steps must be comma-separated percentages" in one_clear_line(run)


async def test_deploy_wait_exits_10_when_rolled_back(
    cli: Harness, cli_env: dict[str, str], tmp_path: Path
) -> None:
    cli.state.fail_at_weight[(APP, "2.0.0")] = 25
    run = await zdp(
        "deploy", APP, "--env", "dev", "--release", str(tmp_path / "release.json"), "--wait",
        env=cli_env,
    )  # fmt: skip
    assert run.code == 10, run.err
    assert "outcome: rolled_back — health gate fail" in run.err
    timeline = await zdp("timeline", f"deploy-{APP}-dev", "--json", env=cli_env)
    record = json.loads(timeline.out)
    assert record["outcome"] == "rolled_back"
    kinds = [e["kind"] for e in record["timeline"]]
    assert kinds[-5:] == ["phase", "compensated", "compensated", "phase", "evidence_sealed"]

    # The forensic report of the closed deployment: one self-contained page.
    page = tmp_path / "report.html"
    written = await zdp(
        "timeline", f"deploy-{APP}-dev", "--format", "html", "-o", str(page), env=cli_env
    )
    assert written.code == 0, written.err
    html = page.read_text()
    assert "<svg" in html and "rolled_back" in html.replace("rolled back", "rolled_back")
    assert "<script" not in html and "<link" not in html and 'src="http' not in html
    markdown = await zdp("timeline", f"deploy-{APP}-dev", "--format", "md", env=cli_env)
    assert markdown.code == 0 and "health gate fail" in markdown.out
    # --json is short for --format json: one document, the one the reports are built from.
    as_format = await zdp("timeline", f"deploy-{APP}-dev", "--format", "json", env=cli_env)
    assert as_format.out == timeline.out

    # The audit log the worker wrote verifies; the sealed bundle too.
    keys = cli.home / "keys" / "engine.pub"
    log = cli.home / "audit" / "audit.jsonl"
    audit = await zdp("audit", "verify", "--log", str(log), "--key", str(keys), env=cli_env)
    assert audit.code == 0, audit.err
    assert audit.out.startswith("audit log OK:")
    bundle = record["timeline"][-1]["data"]["path"]
    evidence = await zdp("evidence", "verify", bundle, "--key", str(keys), env=cli_env)
    assert evidence.code == 0, evidence.err
    bad_format = await zdp("timeline", f"deploy-{APP}-dev", "--format", "docx", env=cli_env)
    assert bad_format.code == 2 and "--format must be one of" in one_clear_line(bad_format)
    no_file = await zdp("timeline", f"deploy-{APP}-dev", "--format", "pdf", env=cli_env)
    assert no_file.code == 2 and "give -o report.pdf" in one_clear_line(no_file)


async def test_tampered_manifest_is_rejected_with_exit_11(
    cli: Harness, cli_env: dict[str, str], tmp_path: Path
) -> None:
    envelope = json.loads((tmp_path / "release.dsse.json").read_text())
    envelope["signatures"][0]["sig"] = flip_first(envelope["signatures"][0]["sig"])
    (tmp_path / "release.dsse.json").write_text(json.dumps(envelope))
    run = await zdp(
        "deploy", APP, "--env", "dev", "--release", str(tmp_path / "release.json"), "--wait",
        env=cli_env,
    )  # fmt: skip
    assert run.code == 11, run.err
    assert "release rejected:" in run.err
    assert not [op for op in cli.state.ops(APP) if op[0] == "provision"]


async def test_refused_approval_and_second_deployment_are_one_line_each(
    cli: Harness, cli_env: dict[str, str], tmp_path: Path
) -> None:
    release = str(tmp_path / "release.json")
    started = await zdp("deploy", APP, "--env", "prod", "--release", release, env=cli_env)
    assert started.code == 0, started.err
    await cli.wait_for(
        cli.client.get_workflow_handle(f"deploy-{APP}-prod"),
        lambda s: s.phase.value == "await_approval",
    )
    own = await zdp("approve", f"deploy-{APP}-prod", "--as", "ci-bot", env=cli_env)
    assert own.code == 1
    assert one_clear_line(own) == (
        "error: ci-bot started this deployment, so someone else must approve it"
    )
    # The refused attempt is on the record: the timeline, and the audit log, which verifies
    # (also against the anchors in Temporal and in the evidence bundles).
    timeline = await zdp("timeline", f"deploy-{APP}-prod", "--json", env=cli_env)
    live = json.loads(timeline.out)  # still running: no outcome yet, the live status
    assert live["outcome"] is None and live["status"]["phase"] == "await_approval"
    refused = [e for e in live["timeline"] if e["kind"] == "decision_refused"]
    assert [(e["actor"], e["data"]["channel"]) for e in refused] == [("ci-bot", "cli")]
    log = default_log_path(cli.home)
    assert any(
        json.loads(line)["kind"] == "decision_refused"
        and json.loads(line)["workflow_id"] == f"deploy-{APP}-prod"
        for line in log.read_text().splitlines()
    )
    verified = await zdp(
        "audit", "verify", "--log", str(log), "--key", str(engine_public_key_path(cli.home)),
        "--evidence", str(evidence_dir(cli.home)), env=cli_env,
    )  # fmt: skip
    assert verified.code == 0, verified.err
    assert verified.out.startswith("audit log OK:") and "anchors" in verified.out
    again = await zdp("deploy", APP, "--env", "prod", "--release", release, env=cli_env)
    assert again.code == 1
    assert "deployment already in progress: deploy-webshop-prod" in one_clear_line(again)

    ok = await zdp("approve", f"deploy-{APP}-prod", "--as", "bob", env=cli_env)
    assert ok.code == 0 and "approved by bob" in ok.out
    status = await zdp("status", f"deploy-{APP}-prod", "--json", env=cli_env)
    assert json.loads(status.out)["approvals"][0]["approver"] == "bob"


async def test_in_sox_the_cli_signs_with_the_users_key_and_unsigned_is_refused(
    cli: Harness,
    cli_env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """prod under sox: `zdp deploy` without the initiator's key is refused before starting;
    with it (found at the default location) the start is signed; `zdp approve --as bob`
    without bob's key is refused, with it accepted and shown as proven."""
    registry = tmp_path / "approvers"
    monkeypatch.setenv("ZDP_APPROVER_REGISTRY", str(registry))  # the worker's registry
    env = {**cli_env, "ZDP_APPROVER_REGISTRY": str(registry)}  # and the CLI's
    cli.config.apps[APP].environments["prod"] = EnvironmentConfig(
        criticality="low", approvers=["alice", "bob"], min_approvals=1,
        compliance_profiles=["sox"],
    )  # fmt: skip
    sox = tmp_path / "sox.yaml"
    sox.write_text(yaml.safe_dump(cli.config.model_dump(mode="json", exclude_none=True)))
    release = str(tmp_path / "release.json")
    keys = tmp_path / "keys"  # $ZDP_KEY_DIR in cli_env
    for who in ("ci-bot", "bob"):
        made = generate_key_pair(keys, who)
        enrol(registry, who, f"{who} (test)", load_public_key(made.public_key), "person")

    unsigned = await zdp(
        "deploy", APP, "--env", "prod", "--release", release, "--config", str(sox),
        "--change-ref", "CHG-7", env={**env, "ZDP_KEY_DIR": str(tmp_path / "nowhere")},
    )  # fmt: skip
    assert unsigned.code == 2
    assert one_clear_line(unsigned).startswith(
        "error: refused before starting: unsigned start by ci-bot refused: identities must be "
        "proven here (prod is under sox)"
    )
    try:
        running = await deployments.is_running(cli.client, f"deploy-{APP}-prod")
    except deployments.DeploymentNotFound:
        running = False
    assert not running  # nothing started

    who = await zdp("whoami", env=env)
    assert who.code == 0, who.out + who.err
    assert "registry: ci-bot is ci-bot (test) (person)" in who.out

    started = await zdp(
        "deploy", APP, "--env", "prod", "--release", release, "--config", str(sox),
        "--change-ref", "CHG-7", env=env,
    )  # fmt: skip
    assert started.code == 0, started.err
    handle = cli.client.get_workflow_handle(f"deploy-{APP}-prod")
    await cli.wait_for(handle, lambda s: s.phase.value == "await_approval")
    status = json.loads((await zdp("status", handle.id, "--json", env=env)).out)
    assert status["initiator"]["user"] == "ci-bot" and status["initiator"]["proven"] is True

    typed = await zdp(
        "approve", handle.id, "--as", "bob", env={**env, "ZDP_KEY_DIR": str(tmp_path / "none")}
    )
    assert typed.code == 1
    assert one_clear_line(typed).startswith("error: unsigned approve by bob refused")
    ok = await zdp("approve", handle.id, "--as", "bob", env=env)
    assert ok.code == 0, ok.err
    assert ok.out.startswith("approved by bob via cli (signed with key sha256:")


async def test_worker_drains_and_exits_on_sigterm(cli_env: dict[str, str]) -> None:
    # Its metrics endpoints off: other workers of a parallel run may hold the default ports.
    env = {**cli_env, "ZDP_METRICS_ADDRESS": "off", "ZDP_TEMPORAL_METRICS_ADDRESS": "off"}
    proc = await asyncio.create_subprocess_exec(
        ZDP, "worker", env=env, stderr=asyncio.subprocess.PIPE
    )
    assert proc.stderr is not None
    try:
        # A warning may come first; the ready line within a busy machine's start-up time.
        lines: list[bytes] = []
        while not lines or b"worker ready" not in lines[-1]:
            line = await asyncio.wait_for(proc.stderr.readline(), 120)
            assert line, b"".join(lines)
            lines.append(line)
        assert b"worker ready: task queue zdp-deployments" in lines[-1]
        # uvloop, an engine dependency: the gate's probe sweeps meet their p99 on it.
        assert lines[-1].rstrip().endswith(b"event loop uvloop"), lines[-1]
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 60)
        assert code == 0
    finally:
        if proc.returncode is None:  # never leave a worker polling the task queue
            proc.kill()
            await proc.wait()


async def _runs(
    env: dict[str, str], app: str, environment: str, *run_ids: str
) -> list[dict[str, Any]]:
    """`zdp history --json` once it lists these runs closed, with their outcomes (Temporal's
    visibility catches up with a closed run shortly after it closes; bounded by the clock)."""
    deadline = asyncio.get_running_loop().time() + 60
    while True:
        run = await zdp("history", app, "--env", environment, "--json", env=env)
        assert run.code == 0, run.err
        listed = json.loads(run.out)
        done = {r["run_id"] for r in listed if r["outcome"] and r["closed_at"]}
        if done >= set(run_ids):
            return list(listed)
        assert asyncio.get_running_loop().time() < deadline, listed
        await asyncio.sleep(0.2)


async def test_history_lists_the_runs_and_run_reads_the_one_a_rollback_went_back_to(
    cli: Harness, cli_env: dict[str, str], tmp_path: Path
) -> None:
    """2.0.0 promoted, then 2.1.0 rolled back: `zdp history` lists both (newest first), and
    `--run` reads the promoted run that serves again, which the latest-run views cannot."""
    first = await zdp(
        "deploy", APP, "--env", "dev", "--release", str(tmp_path / "release.json"), "--wait",
        "--json", env=cli_env,
    )  # fmt: skip
    assert first.code == 0, first.err
    promoted = json.loads(first.out)["status"]["run_id"]
    newer = tmp_path / "newer.dsse.json"
    newer.write_text(cli.signer.release("2.1.0").model_dump_json())
    cli.state.fail_at_weight[(APP, "2.1.0")] = 25
    second = await zdp(
        "deploy", APP, "--env", "dev", "--release", str(newer), "--wait", "--json", env=cli_env
    )
    assert second.code == 10, second.err
    rolled_back = json.loads(second.out)["status"]["run_id"]

    listed = await _runs(cli_env, APP, "dev", promoted, rolled_back)
    # Newest first (earlier tests' runs of the same id follow).
    assert [(r["run_id"], r["version"], r["outcome"]) for r in listed[:2]] == [
        (rolled_back, "2.1.0", "rolled_back"),
        (promoted, "2.0.0", "promoted"),
    ]
    table = await zdp("history", APP, "--env", "dev", env=cli_env)
    lines = table.out.splitlines()
    assert lines[0] == f"runs of deploy-{APP}-dev, newest first:"
    assert lines[1].split() == ["RUN", "ID", "STARTED", "(UTC)", "CLOSED", "(UTC)", "VERSION",
                                "OUTCOME"]  # fmt: skip
    (shown,) = [line for line in lines if line.startswith(promoted)]
    assert "2.0.0" in shown and shown.endswith("promoted  (last promoted)")

    latest = await zdp("status", f"deploy-{APP}-dev", env=cli_env)
    assert latest.code == 0 and "rolled_back" in latest.out and "2.1.0" in latest.out
    back = json.loads(
        (await zdp("status", f"deploy-{APP}-dev", "--run", "promoted", "--json", env=cli_env)).out
    )
    assert (back["version"], back["outcome"], back["run_id"]) == ("2.0.0", "promoted", promoted)
    # A unique part of the run id will do (run ids begin with the time: their end is random).
    by_part = await zdp("status", f"deploy-{APP}-dev", "--run", promoted[-12:], env=cli_env)
    assert by_part.code == 0, by_part.err
    assert f"run         {promoted}" in by_part.out and "outcome     promoted" in by_part.out
    record = await zdp("timeline", f"deploy-{APP}-dev", "--run", promoted, "--json", env=cli_env)
    assert json.loads(record.out)["outcome"] == "promoted"
    report = await zdp(
        "timeline", f"deploy-{APP}-dev", "--run", "promoted", "--format", "md", env=cli_env
    )
    assert report.code == 0 and "2.0.0" in report.out and "2.1.0" not in report.out
    unknown = await zdp("status", f"deploy-{APP}-dev", "--run", "zzzz", env=cli_env)
    assert unknown.code == 1
    assert one_clear_line(unknown) == (
        f"error: no run zzzz of deployment deploy-{APP}-dev (`zdp history` lists its runs)"
    )
    none = await zdp("history", APP, "--env", "nowhere", env=cli_env)
    assert none.code == 1
    assert one_clear_line(none) == (
        f"error: no deployment deploy-{APP}-nowhere (check the id and namespace)"
    )


async def test_plain_status_shows_part11_manifestations_and_no_health_noise(
    cli: Harness, cli_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """§11.50 in `zdp status` without --json: the printed name, the meaning, the date and
    time of each signed approval; no line about a health cache nobody configured."""
    alice = part11_prod(cli, tmp_path / "approvers", monkeypatch, "alice")["alice"]
    request = cli.request("2.0.0", environment="prod")
    request.release = cli.signer.validated("2.0.0", "alice", alice)
    handle = await cli.start(request)
    await cli.wait_for(handle, lambda s: s.phase is Phase.await_approval)
    signature = await deployments.sign_decision(
        cli.client, handle.id, "alice", "approve", "approve release to production", alice
    )
    await deployments.approve(cli.client, handle.id, "alice", "looks good", signature)
    result = await asyncio.wait_for(handle.result(), 60)
    assert result.outcome is Outcome.promoted
    manifestation = result.status.approvals[0].signature
    assert manifestation is not None

    env = {k: v for k, v in cli_env.items() if k != "ZDP_REDIS_URL"}
    shown = await zdp("status", handle.id, env=env)
    assert shown.code == 0, shown.err
    assert "approvals   1 of 1 needed, each signed (Part 11)" in shown.out
    assert "approve by alice at " in shown.out and ": looks good" in shown.out
    assert f"  {manifestation.line()}" in shown.out
    assert "signed by Alice A. Example — approve release to production — " in shown.out
    assert "health" not in shown.out and "ZDP_REDIS_URL" not in shown.out + shown.err
