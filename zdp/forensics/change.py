"""The change a deployment made, as its record tells it and as the report's summary says it:
who started it, for which ticket and why, which version served before, which compliance
profiles applied, and the release's change record (PCI DSS 6.5.1: description, security
impact, test evidence, back-out procedure). A field the record holds is shown; one it holds
as empty is "not given", with the profile that requires it; one the record predates is "not
recorded".

Each comes from the result alone, from the first source that holds it:

- initiator, change ticket, reason: the `started` event's data (`initiator`, `change_ref`,
  `reason`) where the engine records them; else its message, whose wording has not changed
  since the first histories ("deployment of APP to ENV (STRATEGY) started by WHO, change REF:
  REASON"). How the initiator is known: the `initiator` event's proof.
- previous version: the `risk_assessed` event's `running_version` (None: nothing served).
- compliance profiles: the `compliance` domain check verify records ("evidence complete for
  sox, pci-dss") whenever the environment has profiles; none when verify recorded its checks
  without it.
- change record: the `release_verified` event's `change` (the signed release's
  ChangeMetadata) where recorded. Older records do not hold it: the report says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from zdp.compliance.profiles import PROFILES
from zdp.models import ChangeMetadata, DeploymentResult, TimelineEvent

_COMPLIANCE_CHECK = "evidence complete for "


@dataclass(frozen=True)
class Change:
    initiator: str | None  # None: the record does not say
    identity: str  # how the initiator is known ("signed via cli, key …"); "" if not recorded
    change_ref: str | None
    reason: str | None
    started: bool  # the start was read: a None ticket or reason above means "not given"
    previous_version: str | None
    previous_recorded: bool  # False: an older record, which does not say what served before
    profiles: list[str] | None  # None: not recorded
    metadata: ChangeMetadata | None  # None: the release's change record is not in the record

    @property
    def ticket(self) -> str | None:
        """The change ticket: the one the deployment was started with, else the release's."""
        return self.change_ref or (self.metadata.ticket if self.metadata else None)


def read_change(result: DeploymentResult) -> Change:
    events = result.timeline
    started = next((e for e in events if e.kind == "started"), None)
    verified = next((e for e in events if e.kind == "release_verified"), None)
    risk = next((e for e in events if e.kind == "risk_assessed"), None)
    initiator_event = next((e for e in events if e.kind == "initiator"), None)
    known = (
        (initiator_event.actor if initiator_event else None)
        or (result.status.initiator.user if result.status.initiator else None)
        or (started.actor if started else None)
    )
    initiator, change_ref, reason, read = _start(result, started, known)
    return Change(
        initiator=initiator,
        identity=identity_text(initiator_event.data) if initiator_event else "",
        change_ref=change_ref,
        reason=reason,
        started=read,
        previous_version=_optional(risk.data.get("running_version")) if risk else None,
        previous_recorded=risk is not None and "running_version" in risk.data,
        profiles=_profiles(events, verified),
        metadata=_metadata(verified.data.get("change")) if verified else None,
    )


def _start(
    result: DeploymentResult, started: TimelineEvent | None, known: str | None
) -> tuple[str | None, str | None, str | None, bool]:
    """(initiator, change ref, reason, whether the start was read) from the start event: its
    data, else its message."""
    if started is None:
        return known, None, None, False
    data = started.data
    if "change_ref" in data or "reason" in data:
        who = _optional(data.get("initiator")) or known
        return who, _optional(data.get("change_ref")), _optional(data.get("reason")), True
    s = result.status
    prefix = f"deployment of {s.app} to {s.environment} ({s.strategy.value}) started by "
    if not started.message.startswith(prefix):
        return known, None, None, False
    rest = started.message[len(prefix) :]
    if known and rest.startswith(known):
        who, rest = known, rest[len(known) :]
    else:
        cut = min((i for i in (rest.find(", change "), rest.find(": ")) if i >= 0), default=-1)
        who, rest = (rest, "") if cut < 0 else (rest[:cut], rest[cut:])
    change_ref = None
    if rest.startswith(", change "):
        ref, colon, tail = rest[len(", change ") :].partition(": ")
        change_ref, rest = ref, colon + tail
    reason = rest[2:] if rest.startswith(": ") else None
    return who or known, change_ref or None, reason or None, True


def _profiles(events: list[TimelineEvent], verified: TimelineEvent | None) -> list[str] | None:
    if verified is None:
        return None
    checks = [e.data for e in events if e.kind == "domain_check" and e.phase.value == "verify"]
    for check in checks:
        detail = _text(check.get("detail"))
        if check.get("name") == "compliance" and detail.startswith(_COMPLIANCE_CHECK):
            names = [p.strip() for p in detail[len(_COMPLIANCE_CHECK) :].split(",")]
            return [p for p in names if p in PROFILES]
    # Verify records its domain checks, and the compliance one whenever a profile applies.
    return [] if checks else None


def _metadata(raw: object) -> ChangeMetadata | None:
    if not isinstance(raw, Mapping):
        return None
    try:
        fields = ChangeMetadata.model_fields
        return ChangeMetadata.model_validate({k: v for k, v in raw.items() if k in fields})
    except ValidationError:
        return None


# ----------------------------------------------------------------------- as the report says it

_UNKNOWN = "not recorded"
# What each profile requires of the start and of the release's change record (profiles.py).
_CLAUSES = {"sox": "sox", "pci-dss": "pci-dss 6.5.1", "gdpr": "gdpr Art. 35"}
PCI_FIELDS = (
    ("Change description", "description"),
    ("Security impact", "security_impact"),
    ("Test evidence", "test_evidence"),
    ("Back-out procedure", "backout_procedure"),
)


def _previous(c: Change) -> str:
    if c.previous_version:
        return c.previous_version
    return "none: nothing served before this deployment" if c.previous_recorded else _UNKNOWN


def _profiles_text(c: Change) -> str:
    if c.profiles is None:
        return _UNKNOWN
    return ", ".join(c.profiles) or "none"


def _ticket(c: Change) -> str:
    """The ticket given at the start, else the release's; sox needs one of them."""
    if c.ticket:
        return c.ticket
    if c.started and c.metadata is None:
        return "not given when started (the release's own ticket is not in the record)"
    return _absent(c, c.started, "sox")


def _absent(c: Change, recorded: bool, profile: str) -> str:
    """An empty field: "not given" (or "not recorded", where the record does not say), and
    which profile of the environment requires it."""
    required = c.profiles is not None and profile in c.profiles
    clause = f" (required by {_CLAUSES[profile]})" if required else ""
    return ("not given" if recorded else _UNKNOWN) + clause


def change_summary_rows(c: Change) -> list[tuple[str, str]]:
    """What the summary says of the change: what served before, who started it, for which
    ticket and why, under which compliance profiles."""
    return [
        ("Previous version", _previous(c)),
        ("Initiator", (c.initiator or _UNKNOWN) + (f" ({c.identity})" if c.identity else "")),
        ("Change ticket", _ticket(c)),
        ("Reason", c.reason or _absent(c, c.started, "pci-dss")),
        ("Compliance profiles", _profiles_text(c)),
    ]


def change_record_rows(c: Change) -> list[tuple[str, str]]:
    """The release's change record: what it gives, and each field the environment's profiles
    require that it does not ("not given"; "not recorded" where the record predates it)."""
    meta = c.metadata
    pci = c.profiles is not None and "pci-dss" in c.profiles
    rows: list[tuple[str, str]] = []
    for label, name in (("Commit", "commit"), ("Author", "author"), *PCI_FIELDS):
        value = getattr(meta, name) if meta else None
        if value:
            rows.append((label, _text(value)))
        elif pci and (label, name) in PCI_FIELDS:
            rows.append((label, _absent(c, meta is not None, "pci-dss")))
    gdpr = c.profiles is not None and "gdpr" in c.profiles
    if meta and (meta.dpia_ref or (meta.personal_data_change and gdpr)):
        rows.append(("DPIA reference", meta.dpia_ref or _absent(c, True, "gdpr")))
    return rows


def change_record_note(c: Change) -> str:
    """What to say when the change record has no row to show."""
    if change_record_rows(c):
        return ""
    if c.metadata is None:
        return (
            "The release's change record (description, security impact, test evidence, "
            "back-out procedure) is not in this deployment's record."
        )
    return (
        "The release gives no change description, security impact, test evidence or back-out "
        "procedure; no compliance profile of this environment requires them."
    )


def identity_text(data: Mapping[str, Any]) -> str:
    """How the actor of a request was known, from its proof (zdp.compliance.identity)."""
    proof = data.get("proof")
    if not isinstance(proof, Mapping):
        return ""
    channel = _text(proof.get("channel")) or "?"
    if not proof.get("proven"):
        return f"typed via {channel}, not proven"
    raw = proof.get("via")
    via: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    if proof.get("attested_by"):
        how = ", ".join(f"{k} {_text(via[k])}" for k in ("workspace", "user") if k in via)
        where = "Slack" if channel == "slack" else channel
        return (
            f"via {where}"
            + (f" ({how})" if how else "")
            + (f", attested by {_text(proof.get('attested_by'))}")
        )
    return f"signed via {channel}, key {_text(proof.get('key_fingerprint'))}"


def _optional(value: object) -> str | None:
    text = _text(value).strip()
    return text or None


def _text(value: object) -> str:
    return "" if value is None else str(value)
