"""Every deployment leaves an audit trail that verifies and a sealed evidence bundle."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.kit import APP, Harness
from zdp.compliance.audit.log import AuditVerificationError, default_log_path, verify_log
from zdp.compliance.engine_key import engine_key
from zdp.compliance.evidence import EvidenceVerificationError, verify_bundle
from zdp.models import Outcome


async def test_rolled_back_deployment_is_audited_and_sealed(
    harness: Harness, tmp_path: Path
) -> None:
    harness.state.fail_at_weight[(APP, "2.0.0")] = 5
    result = await harness.deploy(harness.request("2.0.0"))
    assert result.outcome is Outcome.rolled_back

    public = engine_key(harness.home).public_key()
    log = default_log_path(harness.home)
    report = verify_log(log, public_keys=[public])
    # Every event of the run is in the log, in order, once; a checkpoint covers all of them.
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    sealed = result.timeline[-1]
    assert sealed.kind == "evidence_sealed"
    mine = [e for e in lines if e["workflow_id"] == f"deploy-{APP}-dev"]
    run_id = mine[-1]["event_id"].split("/")[0]
    kinds = [e["kind"] for e in mine if e["event_id"].startswith(f"{run_id}/")]
    assert kinds == [e.kind for e in result.timeline[:-1]]
    assert report.last_checkpoint is not None and report.last_checkpoint.size >= len(kinds)

    bundle = Path(sealed.data["path"])
    checked = verify_bundle(bundle, [public])
    assert checked.trusted_key
    assert checked.files == 6 and checked.metadata["outcome"] == "rolled_back"
    for name in ("history.json", "result.json", "report.html", "audit-entries.jsonl"):
        assert (bundle / name).stat().st_size > 0
    entries = (bundle / "audit-entries.jsonl").read_text().splitlines()
    assert len(entries) == len(kinds)

    # A copy of the log with one changed entry fails, naming that entry.
    copy = tmp_path / "audit.jsonl"
    shutil.copy(log, copy)
    shutil.copy(log.with_name("audit.checkpoints.jsonl"), tmp_path / "audit.checkpoints.jsonl")
    edited = copy.read_text().splitlines()
    target = json.loads(edited[-2])
    target["message"] = "nothing to see here"
    edited[-2] = json.dumps(target, sort_keys=True, separators=(",", ":"))
    copy.write_text("\n".join(edited) + "\n")
    with pytest.raises(AuditVerificationError, match=f"entry {target['seq']} "):
        verify_log(copy, public_keys=[public])

    # A modified bundle fails.
    tampered = tmp_path / "bundle"
    shutil.copytree(bundle, tampered)
    (tampered / "report.md").write_text("# all good\n")
    with pytest.raises(EvidenceVerificationError, match=r"report\.md"):
        verify_bundle(tampered, [public])
