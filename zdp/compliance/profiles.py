"""Compliance profiles: the evidence a deployment must carry before it is verified.

An environment lists its profiles in apps.yaml (`compliance_profiles`). At verify, every
profile's required evidence is checked against the signed release and the deployment request;
if anything is missing the release is refused with the full list, so the person fixing it does
it once. Which clause each check meets and which test shows it: docs/compliance.md.

- sox: a change ticket; separation of duties and approval evidence (at least one approval, by
  someone other than the initiator: the approval policy enforces both).
- pci-dss: the PCI DSS 6.5.1 change record (reason, description, security impact, test
  evidence, back-out procedure) and a documented approval.
- part11: approvals are Part 11 electronic signatures; the audit trail; a validation reference
  (checked by zdp.domain.validation_check, with its status and qualifications).
- gdpr: a release that changes personal-data processing references its DPIA (Art. 35).
"""

from __future__ import annotations

from dataclasses import dataclass

from zdp.models import ReleaseManifest

PROFILES = ("sox", "pci-dss", "part11", "gdpr")
# Profiles whose deployments need at least one human approval, whatever the risk score.
APPROVAL_PROFILES = frozenset({"sox", "pci-dss", "part11"})
# Profiles whose approvals must be electronic signatures (21 CFR 11.50, 11.70, 11.200).
SIGNATURE_PROFILES = frozenset({"part11"})


@dataclass(frozen=True)
class Evidence:
    """What the deployment request says beside the signed release."""

    change_ref: str | None
    reason: str | None


def missing_evidence(
    profiles: list[str], manifest: ReleaseManifest, evidence: Evidence
) -> list[str]:
    """Every missing piece of evidence, each as "<what> (<clause>)"; empty when none."""
    change = manifest.change
    missing: list[str] = []

    def need(value: str | None, what: str, clause: str) -> None:
        if value is None or not value.strip():
            missing.append(f"{what} ({clause})")

    if "sox" in profiles:
        need(evidence.change_ref or change.ticket, "change ticket (--change-ref)", "sox")
    if "pci-dss" in profiles:
        need(evidence.reason, "reason for the change (--reason)", "pci-dss 6.5.1")
        need(change.description, "change description", "pci-dss 6.5.1")
        need(change.security_impact, "security impact", "pci-dss 6.5.1")
        need(change.test_evidence, "test evidence", "pci-dss 6.5.1")
        need(change.backout_procedure, "back-out procedure", "pci-dss 6.5.1")
    # part11's validation reference is zdp.domain.validation_check: it also checks its status.
    if "gdpr" in profiles and change.personal_data_change:
        need(change.dpia_ref, "DPIA reference for a personal-data change", "gdpr Art. 35")
    return missing
