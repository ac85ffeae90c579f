"""Part 11 electronic signatures: re-authenticate the signer, bind the signature to its record.

A signature row stores the SHA-256 of the signed record's canonical content and an HMAC-SHA256
(server-side key) over: which record (type, batch, key, revision), that content digest, the
signer (user id, printed name), the meaning and the UTC time. Verifying recomputes both:

- bound: the HMAC matches the record the row sits on, and the record's current content is
  the content that was signed;
- superseded: the HMAC matches, and it signed an earlier revision of the record (a correction
  since, whose earlier values the audit trail keeps); it no longer counts as a signature;
- not_bound: the HMAC does not match (the row was copied onto another record, or edited), or
  the record changed after signing without a correction (its revision did not move).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from pharma_manufacturing.services.credentials import User, UserDirectory
from pharma_manufacturing.services.errors import (
    AuthenticationError,
    PermissionDeniedError,
    SignerNotAuthenticatedError,
)

Meaning = Literal["performed", "verified", "approved"]
SignatureStatus = Literal["bound", "superseded", "not_bound"]

MEANINGS_BY_ROLE: Mapping[str, frozenset[str]] = {
    "operator": frozenset({"performed"}),
    "supervisor": frozenset({"performed", "verified"}),
    "qa": frozenset({"verified", "approved"}),
}


def canonical(value: Any) -> bytes:
    """The one serialization that is hashed: sorted keys, no spaces, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def step_content(row: Mapping[Any, Any]) -> dict[str, Any]:
    """What a signature on a step covers. A column added later joins only when it is set, so
    signatures made before that column existed keep verifying."""
    content: dict[str, Any] = {
        "type": "step",
        "batch_id": row["batch_id"],
        "sequence": row["sequence"],
        "revision": row["revision"],
        "step": row["step"],
        "operator": row["operator"],
        "parameters": json.loads(row["parameters"]),
        "recorded_at": utc_text(row["recorded_at"]),
    }
    if row.get("equipment_id") is not None:
        content["equipment_id"] = row["equipment_id"]
    return content


def batch_content(row: Mapping[Any, Any]) -> dict[str, Any]:
    """What a signature on a batch (its release approval) covers."""
    released_at = row["released_at"]
    return {
        "type": "batch",
        "batch_id": row["batch_id"],
        "product": row["product"],
        "status": row["status"],
        "started_at": utc_text(row["started_at"]),
        "created_by": row["created_by"],
        "released_at": utc_text(released_at) if released_at else None,
    }


@dataclass(frozen=True)
class RecordRef:
    """Which record, at which revision: a signature is sealed to exactly this."""

    record_type: Literal["step", "batch"]
    batch_id: str
    record_key: str
    revision: int


@dataclass(frozen=True)
class SignatureCheck:
    status: SignatureStatus
    problem: str | None = None


class SignatureSeal:
    """Makes and checks the HMAC that binds a signature to its record."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def sign(
        self, ref: RecordRef, content: Mapping[str, Any], signer: User, meaning: str, at: datetime
    ) -> dict[str, Any]:
        """The values of a new `signatures` row."""
        digest = hashlib.sha256(canonical(content)).hexdigest()
        row = {
            "batch_id": ref.batch_id,
            "record_type": ref.record_type,
            "record_key": ref.record_key,
            "record_revision": ref.revision,
            "user_id": signer.user_id,
            "printed_name": signer.printed_name,
            "meaning": meaning,
            "signed_at": at,
            "content_sha256": digest,
        }
        row["hmac_sha256"] = self._mac(row)
        return row

    def check(self, row: Mapping[Any, Any], current: Mapping[str, Any]) -> SignatureCheck:
        """Verify a stored signature row against the current content of the record it is on."""
        if not hmac.compare_digest(self._mac(row).encode(), str(row["hmac_sha256"]).encode()):
            return SignatureCheck(
                "not_bound",
                f"the seal does not match this {row['record_type']}: the signature was "
                "copied from another record or changed after signing",
            )
        revision = current["revision"] if current["type"] == "step" else 1
        if row["record_revision"] < revision:
            return SignatureCheck("superseded")
        digest = hashlib.sha256(canonical(current)).hexdigest()
        if row["record_revision"] > revision or digest != row["content_sha256"]:
            return SignatureCheck(
                "not_bound",
                f"the {row['record_type']} was altered after it was signed (its content no "
                "longer matches the signed content, and no correction was recorded)",
            )
        return SignatureCheck("bound")

    def _mac(self, row: Mapping[Any, Any]) -> str:
        sealed = {
            "record": {
                "type": row["record_type"],
                "batch_id": row["batch_id"],
                "key": row["record_key"],
                "revision": row["record_revision"],
            },
            "content_sha256": row["content_sha256"],
            "signer": {"user_id": row["user_id"], "printed_name": row["printed_name"]},
            "meaning": row["meaning"],
            "signed_at": utc_text(row["signed_at"]),
        }
        return hmac.new(self._key, canonical(sealed), "sha256").hexdigest()


def authenticate_signer(users: UserDirectory, user_id: str, password: str, meaning: str) -> User:
    """Re-authenticate at signing (both components, every time) and check the meaning is the
    signer's to give."""
    try:
        signer = users.authenticate(user_id, password)
    except AuthenticationError:
        raise SignerNotAuthenticatedError(
            f"signature refused: wrong user id or password for '{user_id}'; "
            "a signature needs the signer's own password, entered at signing"
        ) from None
    allowed = frozenset().union(*(MEANINGS_BY_ROLE.get(role, ()) for role in signer.roles))
    if meaning not in allowed:
        raise PermissionDeniedError(
            f"{signer.user_id} may not sign as '{meaning}': their roles "
            f"({', '.join(sorted(signer.roles))}) allow {', '.join(sorted(allowed)) or 'nothing'}"
        )
    return signer


def manifestation(printed_name: str, user_id: str, signed_at: datetime, meaning: str) -> str:
    """The signature as a person reads it on the record (Part 11 section 11.50)."""
    moment = signed_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    return f"{printed_name} ({user_id}), {moment} UTC, {meaning}"
