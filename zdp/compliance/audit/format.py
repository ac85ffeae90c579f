"""The audit log's format: canonical JSON, entry and checkpoint models, and line-by-line checks.

An entry's hash is the SHA-256 of its canonical JSON, and it carries the hash of the entry
before it; a checkpoint is the engine's signature over the log's size and head hash. The reader
(`verify_log`) and the writer (`AuditLog`) check each line they read with the same code, here.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator

from zdp.errors import ZdpError
from zdp.signing import decode_base64, fingerprint

GENESIS_HASH = "0" * 64
_HASH = r"^[0-9a-f]{64}$"


class AuditLogError(ZdpError):
    """The audit log cannot be read or extended; the message says what to do."""


class AuditVerificationError(AuditLogError):
    """The log or its checkpoints fail verification; the message names the first bad entry."""

    def __init__(
        self,
        seq: int | None,
        reason: str,
        *,
        subject: str | None = None,
        checkpoint: int | None = None,
    ) -> None:
        self.seq = seq  # the entry (0-based) where the problem is, if it is tied to one
        self.checkpoint = checkpoint  # the checkpoint (0-based line) at fault, if any
        self.reason = reason
        super().__init__(f"{subject or f'entry {seq}'}: {reason}")


# --------------------------------------------------------------------------- canonical form


def format_utc(at: datetime) -> str:
    """ISO-8601 in UTC with microseconds and a `Z`: the one spelling that gets hashed."""
    if at.tzinfo is None:
        raise ValueError("naive datetime: give it a timezone")
    return at.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_utc(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no spaces, UTF-8, datetimes as ISO-8601 UTC: the bytes hashed and signed."""
    text = json.dumps(
        value,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
        default=_json_default,
    )
    return text.encode("utf-8")


def entry_hash(content: Mapping[str, Any]) -> str:
    """Hex SHA-256 of the canonical JSON of an entry's fields other than `hash`."""
    hashed = {key: value for key, value in content.items() if key != "hash"}
    return hashlib.sha256(canonical_json(hashed)).hexdigest()


# --------------------------------------------------------------------------- models


class AuditEvent(BaseModel):
    """One thing that happened in a deployment, as an activity reports it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: str = Field(min_length=1)  # unique within the workflow id: "<run_id>/<index>"
    at: AwareDatetime
    kind: str = Field(min_length=1)
    message: str
    actor: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)

    @field_validator("data")
    @classmethod
    def _plain_json(cls, data: dict[str, Any]) -> dict[str, Any]:
        try:
            plain: dict[str, Any] = json.loads(canonical_json(data))
        except (TypeError, ValueError) as err:
            raise ValueError(f"data must be plain JSON: {err}") from None
        return plain


class AuditEntry(BaseModel):
    """One line of the log: an event, its place in the chain and its hash."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seq: int = Field(ge=0)
    prev_hash: str = Field(pattern=_HASH)
    workflow_id: str = Field(min_length=1)
    event_id: str = Field(min_length=1)
    at: AwareDatetime
    kind: str
    message: str
    actor: str | None
    data: dict[str, Any]
    hash: str = Field(pattern=_HASH)

    @classmethod
    def chained(cls, seq: int, prev_hash: str, workflow_id: str, event: AuditEvent) -> AuditEntry:
        content = {"seq": seq, "prev_hash": prev_hash, "workflow_id": workflow_id}
        content.update(event.model_dump())
        return cls(**content, hash=entry_hash(content))

    def line(self) -> bytes:
        return canonical_json(self.model_dump()) + b"\n"


class Checkpoint(BaseModel):
    """The engine's signature over the log's size and head hash at one moment."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    size: int = Field(ge=0)  # entries covered: seq 0 .. size-1
    head_hash: str = Field(pattern=_HASH)  # hash of entry size-1 (GENESIS_HASH when size is 0)
    at: AwareDatetime
    key_fingerprint: str
    signature: str  # base64 Ed25519 over signed_bytes()

    def signed_bytes(self) -> bytes:
        return _checkpoint_payload(self.size, self.head_hash, self.at, self.key_fingerprint)

    @classmethod
    def sign(cls, size: int, head_hash: str, at: datetime, signer: Ed25519PrivateKey) -> Checkpoint:
        key_fp = fingerprint(signer.public_key())
        signature = signer.sign(_checkpoint_payload(size, head_hash, at, key_fp))
        return cls(
            size=size,
            head_hash=head_hash,
            at=at,
            key_fingerprint=key_fp,
            signature=base64.b64encode(signature).decode("ascii"),
        )

    def signature_problem(self, keys: Mapping[str, Ed25519PublicKey]) -> str | None:
        """Why the signature is not good with these keys (by fingerprint), or None."""
        key = keys.get(self.key_fingerprint)
        if key is None:
            return f"signed by unknown key {self.key_fingerprint}"
        try:
            key.verify(decode_base64(self.signature), self.signed_bytes())
        except (InvalidSignature, binascii.Error, ValueError):
            return "signature does not verify (forged or edited?)"
        return None


def _checkpoint_payload(size: int, head_hash: str, at: datetime, key_fp: str) -> bytes:
    return canonical_json(
        {"size": size, "head_hash": head_hash, "at": at, "key_fingerprint": key_fp}
    )


class AppendResult(BaseModel):
    appended: int
    skipped: int  # events already in the log (a retried activity)
    size: int
    head_hash: str
    # With append(checkpoint=True): the checkpoint signed under the same lock, so it covers
    # exactly these entries and nothing can slip between; and the hash of entry 0, which names
    # the log an anchor belongs to.
    checkpoint: Checkpoint | None = None
    first_hash: str | None = None


class VerifyReport(BaseModel):
    entries: int
    checkpoints: int
    head_hash: str
    last_checkpoint: Checkpoint | None = None


# --------------------------------------------------------------------------- files and lines


def checkpoints_path_for(log_path: Path) -> Path:
    """The checkpoint file beside a log: audit.jsonl -> audit.checkpoints.jsonl."""
    return log_path.with_name(f"{log_path.stem}.checkpoints{log_path.suffix or '.jsonl'}")


def lock_path_for(log_path: Path) -> Path:
    """The file writers flock: audit.jsonl -> audit.jsonl.lock."""
    return log_path.with_name(f"{log_path.name}.lock")


def _first_problem(err: ValueError) -> str:
    if not isinstance(err, ValidationError) or err.errors()[0]["type"] == "json_invalid":
        return "not valid JSON"
    first = err.errors()[0]
    return f"{'.'.join(str(p) for p in first['loc']) or 'line'}: {first['msg']}"


@dataclass
class EntryChain:
    """The entries read so far; `read_line` checks one more line against them."""

    size: int = 0
    head_hash: str = GENESIS_HASH
    keys: dict[tuple[str, str], int] = field(default_factory=dict)
    first_hash: str | None = None  # entry 0's hash: which log this is

    def read_line(self, line: bytes) -> AuditEntry:
        seq = self.size
        if not line.endswith(b"\n"):
            raise AuditVerificationError(
                seq,
                "the last line is incomplete: a write was interrupted (that event was never "
                "acknowledged: remove the line, and the retried activity logs it again)",
            )
        try:
            entry = AuditEntry.model_validate_json(line, strict=True)
        except ValueError as err:
            raise AuditVerificationError(
                seq, f"malformed line {seq + 1} ({_first_problem(err)})"
            ) from None
        label = f"entry {seq} ({entry.workflow_id} {entry.event_id})"
        if entry_hash(json.loads(line)) != entry.hash:
            raise AuditVerificationError(
                seq, "hash does not match its content (edited?)", subject=label
            )
        if entry.seq != seq:
            found = f"line {seq + 1} holds entry {entry.seq} ({entry.workflow_id} {entry.event_id})"
            raise AuditVerificationError(
                seq,
                f"missing: {found} instead (deleted or reordered?)"
                if entry.seq > seq
                else f"out of order: {found} (reordered or duplicated?)",
            )
        if entry.prev_hash != self.head_hash:
            raise AuditVerificationError(
                seq,
                f"prev_hash does not match the hash of entry {seq - 1} (replaced or reordered?)",
                subject=label,
            )
        key = (entry.workflow_id, entry.event_id)
        if key in self.keys:
            raise AuditVerificationError(
                seq, f"repeats the event of entry {self.keys[key]}", subject=label
            )
        self.keys[key] = seq
        if seq == 0:
            self.first_hash = entry.hash
        self.size += 1
        self.head_hash = entry.hash
        return entry


def read_checkpoint_line(index: int, line: bytes) -> Checkpoint:
    if not line.endswith(b"\n"):
        raise AuditVerificationError(
            None,
            "the last line is incomplete: a write was interrupted (remove it)",
            subject=f"checkpoint {index}",
            checkpoint=index,
        )
    try:
        return Checkpoint.model_validate_json(line, strict=True)
    except ValueError as err:
        raise AuditVerificationError(
            None,
            f"malformed line {index + 1} ({_first_problem(err)})",
            subject=f"checkpoint {index}",
            checkpoint=index,
        ) from None


def foreign_tail(
    tail: Sequence[AuditEntry], workflow_id: str, events: Sequence[AuditEvent]
) -> list[AuditEntry]:
    """The unsigned entries at the end of a log that are not this append's own events,
    exactly as it would write them. An append that was interrupted between its entries and
    its checkpoint leaves its own events there, and its retry may sign them; anything else
    was added by something other than the engine, and must never be signed over."""
    ours = {event.event_id: event.model_dump() for event in events}
    return [
        entry
        for entry in tail
        if entry.workflow_id != workflow_id
        or ours.get(entry.event_id)
        != entry.model_dump(include={"event_id", "at", "kind", "message", "actor", "data"})
    ]
