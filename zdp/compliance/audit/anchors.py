"""Anchors: signed heads of the audit log kept outside its files, and the check against them.

A hash chain with signed checkpoints shows an edited or reordered entry, but whoever can
write the log's files can cut its tail together with the checkpoint lines that cover it, or
delete the checkpoint file. Each deployment therefore keeps the checkpoint it took (at its
approval and at its end) where the log's files cannot reach it: in its Temporal history and
result, and in its sealed evidence bundle. Like a Certificate Transparency client that holds
a signed tree head, `zdp audit verify` checks that the log still reaches every anchor, that
the entry each anchor ends on has the signed hash, and that the checkpoint file still holds
each anchored checkpoint. The first problem, in log order, names the first missing entry.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from zdp.compliance.audit.format import (
    AuditEntry,
    AuditLogError,
    AuditVerificationError,
    Checkpoint,
    checkpoints_path_for,
)
from zdp.models import AuditAnchor, DeploymentResult
from zdp.signing import fingerprint

BUNDLES = "evidence bundles"
HISTORIES = "Temporal histories"


@dataclass(frozen=True)
class Anchor:
    """One anchor and where it was found (for the message that names it)."""

    anchor: AuditAnchor
    source: str  # "the Temporal history of deploy-x (run 1a2b3c4d)", "evidence bundle <path>"
    kind: str  # "Temporal histories", "evidence bundles"

    @property
    def checkpoint(self) -> Checkpoint:
        return Checkpoint(**self.anchor.model_dump(exclude={"first_hash"}))


@dataclass
class AnchorReport:
    checked: int = 0  # anchors of this log that agree with it
    foreign: int = 0  # anchors signed by another engine (another $ZDP_HOME, same Temporal)
    other_logs: int = 0  # this engine's anchors of a log with another first entry
    sources: dict[str, int] = field(default_factory=dict)  # kind of source -> anchors found


@dataclass(frozen=True)
class _Entry:
    hash: str
    label: str


def anchors_from_bundles(evidence_dir: Path) -> tuple[list[Anchor], dict[int, str]]:
    """The anchor in each bundle's result.json, and the entries the bundles hold (by seq), so
    a missing entry can be named. Bundles sealed before anchors existed have none."""
    anchors: list[Anchor] = []
    entries: dict[int, str] = {}
    if not evidence_dir.is_dir():
        return anchors, entries
    for result_path in sorted(evidence_dir.glob("*/*/result.json")):
        bundle = result_path.parent
        try:
            result = DeploymentResult.model_validate_json(result_path.read_bytes())
        except (OSError, ValueError) as err:
            raise AuditLogError(
                f"evidence bundle {bundle}: unreadable result.json ({err})"
            ) from None
        if result.status.audit_anchor is not None:
            anchors.append(Anchor(result.status.audit_anchor, f"evidence bundle {bundle}", BUNDLES))
        try:
            lines = (bundle / "audit-entries.jsonl").read_bytes().splitlines()
        except OSError:
            continue
        for line in lines:
            try:
                entry = AuditEntry.model_validate_json(line)
            except ValueError:
                continue  # `zdp evidence verify` judges the bundle; here it only names entries
            entries[entry.seq] = _label(entry)
    return anchors, entries


def _label(entry: AuditEntry) -> str:
    return f"{entry.workflow_id} {entry.event_id}, {entry.kind}"


def _read_entries(path: Path, count: int) -> list[_Entry]:
    """The first `count` entries' hashes and labels (verify_log has already checked them)."""
    found: list[_Entry] = []
    with path.open("rb") as handle:
        for line in handle:
            if len(found) >= count:
                break
            entry = AuditEntry.model_validate_json(line)
            found.append(_Entry(entry.hash, _label(entry)))
    return found


def _read_checkpoints(path: Path) -> set[tuple[int, str, str]]:
    held: set[tuple[int, str, str]] = set()
    try:
        lines = path.read_bytes().splitlines()
    except FileNotFoundError:
        return held
    for line in lines:
        try:
            cp = Checkpoint.model_validate_json(line)
        except ValueError:
            continue  # verify_log reports malformed checkpoint lines
        held.add((cp.size, cp.head_hash, cp.signature))
    return held


def check_anchors(
    log_path: Path,
    entries: int,
    anchors: Sequence[Anchor],
    public_keys: Sequence[Ed25519PublicKey],
    *,
    checkpoints_path: Path | None = None,
    known_entries: Mapping[int, str] | None = None,
) -> AnchorReport:
    """Check the first `entries` entries of a verified log against every anchor; raise
    AuditVerificationError for the first problem in log order."""
    keys = {fingerprint(key): key for key in public_keys}
    log = _read_entries(log_path, entries)
    held = _read_checkpoints(checkpoints_path or checkpoints_path_for(log_path))
    cp_file = (checkpoints_path or checkpoints_path_for(log_path)).name
    report = AnchorReport()
    problems: list[AuditVerificationError] = []

    def problem(at: int, reason: str, subject: str) -> None:
        problems.append(AuditVerificationError(at, reason, subject=subject))

    for found in anchors:
        a, source = found.anchor, found.source
        report.sources[found.kind] = report.sources.get(found.kind, 0) + 1
        last = max(a.size - 1, 0)  # the entry the anchor ends on
        # Another engine's anchor (another $ZDP_HOME sharing the Temporal server): not
        # evidence about this log, counted, not failed.
        if a.key_fingerprint not in keys:
            if found.kind == BUNDLES:  # this engine's own evidence folder: never another's
                problem(
                    last,
                    f"its anchor is signed by {a.key_fingerprint}, which is not a trusted "
                    "engine key (--key)",
                    source,
                )
            else:
                report.foreign += 1
            continue
        bad_signature = found.checkpoint.signature_problem(keys)
        if bad_signature is not None:
            problem(last, f"anchor {bad_signature}", source)
        elif log and a.first_hash is not None and a.first_hash != log[0].hash:
            # Signed by this engine for a log that began with another entry: another log of
            # the same engine (a PostgreSQL log beside a file), or this log replaced. Decided
            # below: a log none of the engine's anchors belongs to was replaced.
            report.other_logs += 1
        elif a.size > len(log):
            first = len(log)
            named = (known_entries or {}).get(first)
            what = f"entry {first}" + (f" ({named})" if named else "")
            problem(
                first,
                f"first missing entry: {what}; the log ends after {len(log)} entries, but "
                f"{source} holds the engine's signed head over {a.size} entries (signed "
                f"{a.at:%Y-%m-%d %H:%M:%S}) (truncated?)",
                "audit log",
            )
        elif a.size and log[last].hash != a.head_hash:
            problem(
                last,
                f"hash differs from the head {source} signed (rewritten?)",
                f"entry {last} ({log[last].label})",
            )
        elif (a.size, a.head_hash, a.signature) not in held:
            problem(
                last,
                f"missing: {source} holds a checkpoint over {a.size} entries (signed "
                f"{a.at:%Y-%m-%d %H:%M:%S}) that {cp_file} does not (checkpoint lines removed?)",
                f"checkpoint over {a.size} entries",
            )
        else:
            report.checked += 1
    unmatched = report.other_logs + report.foreign
    if log and unmatched and not report.checked and not problems:
        problem(
            0,
            f"none of the {unmatched} anchors found belongs to this log ({report.other_logs} "
            f"of this engine's logs that begin with another entry, {report.foreign} signed by "
            "keys not given with --key): the log was replaced, or --key is not this engine's",
            f"entry 0 ({log[0].label})",
        )
    if problems:
        raise min(problems, key=lambda error: error.seq or 0)
    return report


def summary(report: AnchorReport) -> str:
    """`cross-checked against 7 anchors (3 in Temporal histories, 4 in evidence bundles)`."""
    if not report.sources:
        return "no anchors found outside the log"
    where = ", ".join(f"{count} in {kind}" for kind, count in sorted(report.sources.items()))
    text = f"cross-checked against {report.checked} anchors ({where})"
    if report.other_logs:
        text += f"; {report.other_logs} of this engine's other logs (another first entry)"
    if report.foreign:
        text += f"; {report.foreign} signed by another engine's key (another log)"
    return text
