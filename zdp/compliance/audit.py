"""The append-only, hash-chained audit log: one JSON entry per line, signed checkpoints beside it.

Each entry carries the hash of the entry before it, so editing, deleting or reordering one breaks
the chain right there. A chain alone can still be cut short or rewritten whole, so the engine
signs checkpoints (size and head hash) into a separate file: truncating the log behind a
checkpoint, or rewriting what it covers, no longer matches a signature.

Writers in several threads and processes share one log: each append holds an exclusive flock,
first reads what others appended since, then writes its lines with one write and one fsync.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import hashlib
import json
import math
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator

from zdp.errors import ZdpError
from zdp.platforms.local_layout import zdp_home
from zdp.signing import decode_base64, fingerprint

GENESIS_HASH = "0" * 64
_HASH = r"^[0-9a-f]{64}$"
_FILE_MODE = 0o640
_REPAIR_HINT = "run `zdp audit verify` and repair the log before appending"


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


class VerifyReport(BaseModel):
    entries: int
    checkpoints: int
    head_hash: str
    last_checkpoint: Checkpoint | None = None


class AuditStore(Protocol):
    """Audit storage as the engine uses it; a backend is one class (this module: JSON lines)."""

    def append(self, workflow_id: str, events: Sequence[AuditEvent]) -> AppendResult:
        """Add the events not yet logged for this workflow; logged ones are skipped."""
        ...

    def checkpoint(self, at: datetime | None = None) -> Checkpoint:
        """Sign the current size and head, unless the last checkpoint already covers them."""
        ...


# --------------------------------------------------------------------------- reading


def default_log_path(home: Path | None = None) -> Path:
    """$ZDP_HOME/audit/audit.jsonl."""
    return (home or zdp_home()) / "audit" / "audit.jsonl"


def checkpoints_path_for(log_path: Path) -> Path:
    """The checkpoint file beside a log: audit.jsonl -> audit.checkpoints.jsonl."""
    return log_path.with_name(f"{log_path.stem}.checkpoints{log_path.suffix or '.jsonl'}")


def lock_path_for(log_path: Path) -> Path:
    """The file writers flock: audit.jsonl -> audit.jsonl.lock."""
    return log_path.with_name(f"{log_path.name}.lock")


def _snapshot_sizes(log_path: Path, checkpoints_path: Path) -> tuple[int | None, int]:
    """Both files' sizes while no writer is mid-append (shared lock, if readable): bytes below
    them are final, so a verifier may read them while the engine goes on appending."""
    with contextlib.ExitStack() as stack:
        with contextlib.suppress(OSError):
            fd = os.open(lock_path_for(log_path), os.O_RDONLY)
            stack.callback(os.close, fd)
            fcntl.flock(fd, fcntl.LOCK_SH)
        sizes: list[int | None] = []
        for path in (log_path, checkpoints_path):
            try:
                sizes.append(path.stat().st_size)
            except FileNotFoundError:
                sizes.append(None)
            except OSError as err:
                raise AuditLogError(f"cannot read {path}: {err.strerror}") from None
    return sizes[0], sizes[1] or 0


def _lines(handle: BinaryIO, limit: int) -> Iterator[bytes]:
    """The lines within the first `limit` bytes (the last one may lack its newline)."""
    offset = 0
    for line in handle:
        if offset >= limit:
            return
        yield line[: limit - offset]
        offset += len(line)


def _first_problem(err: ValueError) -> str:
    if not isinstance(err, ValidationError) or err.errors()[0]["type"] == "json_invalid":
        return "not valid JSON"
    first = err.errors()[0]
    return f"{'.'.join(str(p) for p in first['loc']) or 'line'}: {first['msg']}"


@dataclass
class _Chain:
    """The entries read so far; `read_line` checks one more line against them."""

    size: int = 0
    head_hash: str = GENESIS_HASH
    keys: dict[tuple[str, str], int] = field(default_factory=dict)

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
        self.size += 1
        self.head_hash = entry.hash
        return entry


def _read_checkpoint_line(index: int, line: bytes) -> Checkpoint:
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


def _read_checkpoints(
    path: Path, limit: int, keys: Mapping[str, Ed25519PublicKey]
) -> tuple[list[tuple[int, Checkpoint]], list[tuple[float, AuditVerificationError]]]:
    """The well-signed checkpoints, and each problem with the log position it concerns."""
    good: list[tuple[int, Checkpoint]] = []
    problems: list[tuple[float, AuditVerificationError]] = []  # (entry position, problem)
    try:
        with path.open("rb") as handle:
            lines = list(_lines(handle, limit))
    except FileNotFoundError:
        return good, problems
    except OSError as err:
        raise AuditLogError(f"cannot read {path}: {err.strerror}") from None
    for index, line in enumerate(lines):
        try:
            cp = _read_checkpoint_line(index, line)
        except AuditVerificationError as err:
            problems.append((math.inf, err))
            continue
        subject = f"checkpoint {index} (covers {cp.size} entries)"
        reason = cp.signature_problem(keys)
        if reason is None and good and cp.size <= good[-1][1].size:
            reason = f"does not cover more than checkpoint {good[-1][0]} (reordered?)"
        if reason is not None:
            error = AuditVerificationError(cp.size - 1, reason, subject=subject, checkpoint=index)
            problems.append((cp.size - 1, error))
            continue
        good.append((index, cp))
    return good, problems


def _coverage_problem(
    index: int, cp: Checkpoint, size: int, heads: Mapping[int, AuditEntry]
) -> AuditVerificationError | None:
    """How a log of `size` good entries disagrees with a well-signed checkpoint, if it does."""
    if cp.size > size:
        reason = f"missing: the log ends here, but checkpoint {index} covers {cp.size} entries"
        return AuditVerificationError(size, f"{reason} (truncated?)", checkpoint=index)
    head = heads.get(cp.size)
    if (head.hash if head else GENESIS_HASH) == cp.head_hash:
        return None
    subject = f"entry {head.seq} ({head.workflow_id} {head.event_id})" if head else None
    return AuditVerificationError(
        cp.size - 1,
        f"hash differs from the head signed by checkpoint {index} (rewritten?)",
        subject=subject or f"checkpoint {index}",
        checkpoint=index,
    )


def verify_log(
    path: Path,
    checkpoints_path: Path | None = None,
    *,
    public_keys: Sequence[Ed25519PublicKey],
) -> VerifyReport:
    """Check every entry and checkpoint; raise AuditVerificationError for the first problem in
    log order (an entry's own problem before a checkpoint's at the same entry)."""
    keys = {fingerprint(key): key for key in public_keys}
    checkpoints_path = checkpoints_path or checkpoints_path_for(path)
    log_size, checkpoints_size = _snapshot_sizes(path, checkpoints_path)
    if log_size is None:
        raise AuditLogError(f"audit log not found: {path}")
    checkpoints, problems = _read_checkpoints(checkpoints_path, checkpoints_size, keys)
    wanted = {cp.size for _, cp in checkpoints}
    heads: dict[int, AuditEntry] = {}  # size -> the entry a checkpoint of that size ends on
    chain = _Chain()
    entry_problem: AuditVerificationError | None = None
    try:
        with path.open("rb") as handle:
            for line in _lines(handle, log_size):
                entry = chain.read_line(line)
                if chain.size in wanted:
                    heads[chain.size] = entry
    except FileNotFoundError:
        raise AuditLogError(f"audit log not found: {path}") from None
    except OSError as err:
        raise AuditLogError(f"cannot read {path}: {err.strerror}") from None
    except AuditVerificationError as err:
        entry_problem = err
    ranked = [(position, 1, error) for position, error in problems]
    if entry_problem is not None:
        ranked.append((chain.size, 0, entry_problem))
    for index, cp in checkpoints:
        mismatch = _coverage_problem(index, cp, chain.size, heads)
        if mismatch is not None:
            ranked.append((cp.size - 1 if cp.size <= chain.size else chain.size, 1, mismatch))
    if ranked:
        raise min(ranked, key=lambda item: (item[0], item[1]))[2]
    return VerifyReport(
        entries=chain.size,
        checkpoints=len(checkpoints),
        head_hash=chain.head_hash,
        last_checkpoint=checkpoints[-1][1] if checkpoints else None,
    )


# --------------------------------------------------------------------------- writing


class AuditLog:
    """The JSON-lines audit store: idempotent appends, safe across threads and processes."""

    def __init__(
        self,
        path: Path,
        signer: Ed25519PrivateKey | None = None,
        *,
        checkpoint_every: int = 64,
        checkpoints_path: Path | None = None,
    ) -> None:
        """`checkpoint_every` entries since the last checkpoint make append sign a new one
        (0 turns that off; so does having no signer)."""
        self.path = path
        self.checkpoints_path = checkpoints_path or checkpoints_path_for(path)
        self.lock_path = lock_path_for(path)
        self.checkpoint_every = checkpoint_every
        self._signer = signer
        self._thread_lock = threading.Lock()
        self._chain = _Chain()
        self._offset = 0  # bytes of the log already read into _chain
        self._last_checkpoint: Checkpoint | None = None
        self._checkpoints_read = 0  # lines of the checkpoint file already read
        self._checkpoints_offset = 0

    def append(self, workflow_id: str, events: Sequence[AuditEvent]) -> AppendResult:
        """Log the events not yet logged under (workflow_id, event_id), in order."""
        if not workflow_id:
            raise AuditLogError("cannot log events without a workflow id")
        with self._exclusive():
            self._catch_up()
            seq, prev_hash = self._chain.size, self._chain.head_hash
            batch: set[tuple[str, str]] = set()
            lines: list[bytes] = []
            for event in events:
                key = (workflow_id, event.event_id)
                if key in self._chain.keys or key in batch:
                    continue
                batch.add(key)
                entry = AuditEntry.chained(seq, prev_hash, workflow_id, event)
                lines.append(entry.line())
                seq, prev_hash = seq + 1, entry.hash
            if lines:
                data = b"".join(lines)
                _append_bytes(self.path, data, self._offset)
                for line in lines:
                    self._chain.read_line(line)
                self._offset += len(data)
            last_size = self._last_checkpoint.size if self._last_checkpoint else 0
            if self._signer and 0 < self.checkpoint_every <= self._chain.size - last_size:
                self._checkpoint_locked(self._signer, None)
            return AppendResult(
                appended=len(lines),
                skipped=len(events) - len(lines),
                size=self._chain.size,
                head_hash=self._chain.head_hash,
            )

    def checkpoint(self, at: datetime | None = None) -> Checkpoint:
        """Sign the current size and head hash; returns the last checkpoint if nothing is new."""
        if self._signer is None:
            raise AuditLogError("cannot sign a checkpoint: this audit log has no signing key")
        with self._exclusive():
            self._catch_up()
            return self._checkpoint_locked(self._signer, at)

    def _checkpoint_locked(self, signer: Ed25519PrivateKey, at: datetime | None) -> Checkpoint:
        last = self._last_checkpoint
        if last is not None and last.size == self._chain.size:
            return last
        cp = Checkpoint.sign(
            self._chain.size, self._chain.head_hash, at or datetime.now(UTC), signer
        )
        line = canonical_json(cp.model_dump()) + b"\n"
        _append_bytes(self.checkpoints_path, line, self._checkpoints_offset)
        self._checkpoints_offset += len(line)
        self._checkpoints_read += 1
        self._last_checkpoint = cp
        return cp

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """This process's threads, then other processes: one writer at a time."""
        with self._thread_lock:
            try:
                for folder in {self.path.parent, self.checkpoints_path.parent}:
                    folder.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, _FILE_MODE)
            except OSError as err:
                raise AuditLogError(f"cannot lock {self.lock_path}: {err.strerror}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # releases the flock

    def _catch_up(self) -> None:
        """Read what other writers appended since this process last looked (lock held)."""
        for line in _new_lines(self.path, self._offset):
            try:
                self._chain.read_line(line)
            except AuditVerificationError as err:
                raise AuditLogError(f"audit log {self.path}: {err}; {_REPAIR_HINT}") from None
            self._offset += len(line)
        for line in _new_lines(self.checkpoints_path, self._checkpoints_offset):
            try:
                self._last_checkpoint = _read_checkpoint_line(self._checkpoints_read, line)
            except AuditVerificationError as err:
                raise AuditLogError(f"{self.checkpoints_path}: {err}; {_REPAIR_HINT}") from None
            self._checkpoints_read += 1
            self._checkpoints_offset += len(line)
        if self._last_checkpoint and self._last_checkpoint.size > self._chain.size:
            raise AuditLogError(
                f"audit log {self.path} has {self._chain.size} entries but its last checkpoint "
                f"covers {self._last_checkpoint.size}: it was truncated; {_REPAIR_HINT}"
            )


def _new_lines(path: Path, offset: int) -> Iterator[bytes]:
    """The lines of `path` after byte `offset` (the last one may lack its newline)."""
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        if offset:
            raise AuditLogError(f"{path} disappeared; {_REPAIR_HINT}") from None
        return
    except OSError as err:
        raise AuditLogError(f"cannot read {path}: {err.strerror}") from None
    with handle:
        size = os.fstat(handle.fileno()).st_size
        if size < offset:
            raise AuditLogError(
                f"{path} shrank from {offset} to {size} bytes: it was truncated; {_REPAIR_HINT}"
            )
        handle.seek(offset)
        yield from handle


def _append_bytes(path: Path, data: bytes, expected_size: int) -> None:
    """One write and one fsync; on failure cut the file back so no partial line stays."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, _FILE_MODE)
    except OSError as err:
        raise AuditLogError(f"cannot open {path}: {err.strerror}") from None
    try:
        if os.fstat(fd).st_size != expected_size:
            raise AuditLogError(f"{path} changed without holding its lock; {_REPAIR_HINT}")
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except OSError as err:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, expected_size)
                os.fsync(fd)
            raise AuditLogError(f"cannot append to {path}: {err.strerror}") from None
    finally:
        os.close(fd)
    if expected_size == 0:  # a new file: make its directory entry durable too
        with contextlib.suppress(OSError):
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
