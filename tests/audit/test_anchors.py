"""The audit log cannot be cut short quietly, and refused decisions are on the record.

Each deployment keeps the signed head of the log it took at its approval and at its end in its
Temporal history and result and in its evidence bundle. A copy of the log that lost its tail
together with the checkpoint lines covering it, or that lost its checkpoint file, fails
`check_anchors` naming the first missing entry; the untouched log passes.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.kit import Harness
from zdp import deployments
from zdp.compliance.audit.anchors import (
    HISTORIES,
    Anchor,
    anchors_from_bundles,
    check_anchors,
)
from zdp.compliance.audit.log import (
    AuditVerificationError,
    checkpoints_path_for,
    default_log_path,
    evidence_dir,
    verify_log,
)
from zdp.compliance.engine_key import engine_key
from zdp.models import DeploymentResult, Outcome, Phase


async def _all_anchors(harness: Harness) -> tuple[list[Anchor], dict[int, str]]:
    bundles, known = anchors_from_bundles(evidence_dir(harness.home))
    found = await deployments.audit_anchors(harness.client)
    return bundles + [Anchor(a, source, HISTORIES) for source, a in found], known


def _entries(log: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in log.read_text().splitlines()]


async def _approved_deployment(harness: Harness) -> DeploymentResult:
    """A prod deployment: the initiator tries to approve it (refused), then others do."""
    handle = await harness.start(harness.request("2.0.0", environment="prod"))
    await harness.wait_for(handle, lambda s: s.phase is Phase.await_approval)
    with pytest.raises(deployments.RequestRefused, match="someone else must approve"):
        await deployments.approve(harness.client, handle.id, "ci-bot", channel="cli")
    # The refusal is in the timeline and already in the audit log (it was logged before the
    # update answered), and the deployment still waits, with nothing approved.
    status = await harness.status(handle)
    assert status.phase is Phase.await_approval and status.approvals == []
    timeline = await deployments.timeline(harness.client, handle.id)
    refused = [e for e in timeline if e.kind == "decision_refused"]
    assert len(refused) == 1
    assert refused[0].actor == "ci-bot"
    assert refused[0].data == {
        "decision": "approve",
        "channel": "cli",
        "reason": "ci-bot started this deployment, so someone else must approve it",
    }
    log = default_log_path(harness.home)
    logged = [e for e in _entries(log) if e["kind"] == "decision_refused"]
    assert logged and logged[-1]["actor"] == "ci-bot"
    assert logged[-1]["data"]["channel"] == "cli"  # type: ignore[index]
    verify_log(log, public_keys=[engine_key(harness.home).public_key()])

    for approver in ("alice", "bob", "carol")[: status.approvals_required]:
        await deployments.approve(harness.client, handle.id, approver, "reviewed")
    # The approval took a checkpoint whose signed head is kept in the workflow's state.
    status = await harness.wait_for(handle, lambda s: s.phase is not Phase.await_approval)
    assert status.audit_anchor is not None
    return await handle.result()


async def test_refusals_are_recorded_and_every_deployment_anchors_the_log(
    harness: Harness, tmp_path: Path
) -> None:
    result = await _approved_deployment(harness)
    assert result.outcome is Outcome.promoted
    public = engine_key(harness.home).public_key()
    log = default_log_path(harness.home)
    report = verify_log(log, public_keys=[public])

    # The end's anchor covers the deployment's last logged event and is a checkpoint in the file.
    anchor = result.status.audit_anchor
    assert anchor is not None
    assert report.last_checkpoint is not None and anchor.size <= report.entries
    sealed = result.timeline[-1]
    bundled = DeploymentResult.model_validate_json(
        (Path(sealed.data["path"]) / "result.json").read_bytes()
    )
    assert bundled.status.audit_anchor == anchor

    anchors, known = await _all_anchors(harness)
    ours = check_anchors(log, report.entries, anchors, [public], known_entries=known)
    assert ours.checked >= 2  # this run's approval and end, at least
    assert ours.sources[HISTORIES] >= 2

    # A copy without the last deployment's entries and the checkpoint lines covering them.
    entries = _entries(log)
    workflow_id = str(entries[-1]["workflow_id"])
    run = str(entries[-1]["event_id"]).split("/")[0]
    first = next(
        i
        for i, e in enumerate(entries)
        if e["workflow_id"] == workflow_id and str(e["event_id"]).startswith(f"{run}/")
    )
    copy = tmp_path / "audit.jsonl"
    copy.write_text("".join(line + "\n" for line in log.read_text().splitlines()[:first]))
    kept = [
        line
        for line in checkpoints_path_for(log).read_text().splitlines()
        if json.loads(line)["size"] <= first
    ]
    checkpoints = checkpoints_path_for(copy)
    checkpoints.write_text("".join(line + "\n" for line in kept))
    cut = verify_log(copy, public_keys=[public])  # the file alone cannot tell
    assert cut.entries == first
    with pytest.raises(AuditVerificationError) as missing:
        check_anchors(copy, cut.entries, anchors, [public], known_entries=known)
    message = str(missing.value)
    assert missing.value.seq == first
    assert f"the log ends after {first} entries" in message
    assert f"first missing entry: entry {first} ({workflow_id} {run}/0, started)" in message

    # The full log with its checkpoint file removed: the log itself says a deployment ended
    # unsigned, and the anchors name the checkpoint that is gone.
    shutil.copy(log, copy)
    checkpoints.unlink()
    with pytest.raises(AuditVerificationError, match=r"ends a deployment.*no checkpoint"):
        verify_log(copy, public_keys=[public])
    with pytest.raises(AuditVerificationError, match=r"does not \(checkpoint lines removed\?\)"):
        check_anchors(copy, report.entries, anchors, [public])


async def test_a_replaced_log_is_caught_by_the_anchors(harness: Harness, tmp_path: Path) -> None:
    """A fresh log written in place of the real one: the engine's anchors sign another first
    entry. Anchors in Temporal signed by another engine (another $ZDP_HOME sharing the server)
    are counted, not failed, as long as some anchor belongs to the log verified."""
    await harness.deploy(harness.request("2.0.0"))
    anchors, _ = await _all_anchors(harness)
    public = engine_key(harness.home).public_key()
    entries = _entries(default_log_path(harness.home))
    forged = tmp_path / "audit.jsonl"
    forged.write_text(json.dumps(dict(entries[0], hash="0" * 64)) + "\n")
    with pytest.raises(AuditVerificationError, match=r"entry 0 .*the log was replaced"):
        check_anchors(forged, 1, anchors, [public], checkpoints_path=tmp_path / "none")

    # Verified with a key that is not the engine's: the bundles' anchors (this engine's own
    # evidence folder) fail; anchors in Temporal alone are another engine's, counted, and
    # a log that none of them belongs to fails too.
    stranger = Ed25519PrivateKey.generate().public_key()
    with pytest.raises(AuditVerificationError, match="not a trusted engine key"):
        check_anchors(forged, 1, anchors, [stranger], checkpoints_path=tmp_path / "none")
    histories = [a for a in anchors if a.kind == HISTORIES]
    with pytest.raises(AuditVerificationError, match=r"none of the .* anchors found belongs"):
        check_anchors(forged, 1, histories, [stranger], checkpoints_path=tmp_path / "none")
    genuine = default_log_path(harness.home)
    size = verify_log(genuine, public_keys=[public]).entries
    other = check_anchors(genuine, size, histories, [public, stranger])
    assert other.checked > 0  # with the engine's key among those given, its anchors check out


async def test_the_limit_cutting_every_copy_is_not_detected(
    harness: Harness, tmp_path: Path
) -> None:
    """The threat model's limit, as tested: someone who can write the log's files, the evidence
    folder and Temporal's database can cut the log back to a checkpoint and remove every later
    anchor, and nothing the verifier can reach remembers the cut entries."""
    await harness.deploy(harness.request("2.0.0"))
    log = default_log_path(harness.home)
    public = engine_key(harness.home).public_key()
    anchors, _ = await _all_anchors(harness)
    cps = [json.loads(line) for line in checkpoints_path_for(log).read_text().splitlines()]
    keep = cps[-2]["size"]  # back to the checkpoint before the last one
    copy = tmp_path / "audit.jsonl"
    copy.write_text("".join(line + "\n" for line in log.read_text().splitlines()[:keep]))
    checkpoints_path_for(copy).write_text(
        "".join(json.dumps(cp) + "\n" for cp in cps if cp["size"] <= keep)
    )
    report = verify_log(copy, public_keys=[public])
    surviving = [a for a in anchors if a.anchor.size <= keep]
    cut = check_anchors(copy, report.entries, surviving, [public])
    # (This session's engine also logged to PostgreSQL in another test: those are other logs;
    # tests with a home of their own on the same server anchor with another engine's key.)
    assert cut.checked > 0
    assert cut.checked + cut.other_logs + cut.foreign == len(surviving)
    with pytest.raises(AuditVerificationError, match="first missing entry"):
        check_anchors(copy, report.entries, anchors, [public])


async def test_cutting_a_running_deployments_approval_shows(
    harness: Harness, tmp_path: Path
) -> None:
    """While a deployment still runs, its approval is already anchored in its history: cutting
    the `approved` entry and its checkpoint line from the log shows."""
    handle = await harness.start(harness.request("2.0.0", environment="prod"))
    status = await harness.wait_for(handle, lambda s: s.phase is Phase.await_approval)
    await deployments.pause(harness.client, handle.id, "carol", "hold after the first step")
    for approver in ("alice", "bob", "carol")[: status.approvals_required]:
        await deployments.approve(harness.client, handle.id, approver, "reviewed")
    await harness.wait_for(handle, lambda s: s.audit_anchor is not None)
    assert await deployments.is_running(harness.client, handle.id)

    log = default_log_path(harness.home)
    public = engine_key(harness.home).public_key()
    entries = _entries(log)
    mine = [i for i, e in enumerate(entries) if e["workflow_id"] == handle.id]
    approved = max(i for i in mine if entries[i]["kind"] == "approved")
    # A careful cut: back to the checkpoint before the approval's append, with the checkpoint
    # lines after it, so that no entry is left uncovered (which the files alone would show).
    lines = checkpoints_path_for(log).read_text().splitlines()
    cut = max(size for size in (json.loads(line)["size"] for line in lines) if size <= approved)
    copy = tmp_path / "audit.jsonl"
    copy.write_text("".join(line + "\n" for line in log.read_text().splitlines()[:cut]))
    checkpoints_path_for(copy).write_text(
        "".join(line + "\n" for line in lines if json.loads(line)["size"] <= cut)
    )
    report = verify_log(copy, public_keys=[public])  # the files alone cannot tell
    found = await deployments.audit_anchors(harness.client)
    running = [Anchor(a, source, HISTORIES) for source, a in found if handle.id in source]
    with pytest.raises(AuditVerificationError, match=f"first missing entry: entry {cut};"):
        check_anchors(copy, report.entries, running, [public])
    await deployments.abort(harness.client, handle.id, "carol", "done")
