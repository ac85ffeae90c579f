"""The JSON-lines audit store, `AuditLog`: idempotent appends, safe across threads and processes.

Writers in several threads and processes share one log: each append holds an exclusive flock,
first reads what others appended since, then writes its lines with one write and one fsync.
A disk that is full (ENOSPC) or a quota that is used up (EDQUOT) is `AuditStorageFull`, its own
error: the deployment pauses for an operator to free space instead of retrying unseen.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from zdp.compliance.audit.format import (
    AppendResult,
    AuditEntry,
    AuditEvent,
    AuditLogError,
    AuditVerificationError,
    Checkpoint,
    EntryChain,
    canonical_json,
    checkpoints_path_for,
    foreign_tail,
    lock_path_for,
    read_checkpoint_line,
)

_FILE_MODE = 0o640
_REPAIR_HINT = "run `zdp audit verify` and repair the log before appending"
_FULL = (errno.ENOSPC, errno.EDQUOT)


class AuditStorageFull(AuditLogError):
    """The audit storage has no room for the append (disk full, quota used up). Nothing partial
    stays behind; the same append goes through once there is room. The message names where."""


def _storage_error(what: str, path: Path, err: OSError) -> AuditLogError:
    """`cannot <what> <path>: <reason>`, or AuditStorageFull when the disk or quota is full."""
    if err.errno in _FULL:
        return AuditStorageFull(f"disk full at {path} ({err.strerror})")
    return AuditLogError(f"cannot {what} {path}: {err.strerror}")


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
        self._chain = EntryChain()
        self._offset = 0  # bytes of the log already read into _chain
        self._last_checkpoint: Checkpoint | None = None
        self._checkpoints_read = 0  # lines of the checkpoint file already read
        self._checkpoints_offset = 0

    def append(
        self, workflow_id: str, events: Sequence[AuditEvent], *, checkpoint: bool = False
    ) -> AppendResult:
        """Log the events not yet logged under (workflow_id, event_id), in order; with
        `checkpoint`, sign the new head under the same lock (the anchor a deployment keeps)."""
        if not workflow_id:
            raise AuditLogError("cannot log events without a workflow id")
        with self._exclusive():
            self._catch_up()
            if checkpoint:
                self._refuse_foreign_tail(workflow_id, events)
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
            signed = None
            if checkpoint:
                if self._signer is None:
                    raise AuditLogError("cannot sign a checkpoint: this audit log has no key")
                signed = self._checkpoint_locked(self._signer, None)
            elif self._signer and 0 < self.checkpoint_every <= self._chain.size - last_size:
                self._checkpoint_locked(self._signer, None)
            return AppendResult(
                appended=len(lines),
                skipped=len(events) - len(lines),
                size=self._chain.size,
                head_hash=self._chain.head_hash,
                checkpoint=signed,
                first_hash=self._chain.first_hash,
            )

    def entries_of(self, workflow_id: str, run_prefix: str) -> bytes:
        """The lines of this workflow's events whose id starts with `run_prefix`, in log order,
        exactly as stored (each verifiable alone)."""
        lines = []
        with self.path.open("rb") as log:
            for line in log:
                entry = json.loads(line)
                event_id = str(entry.get("event_id", ""))
                if entry.get("workflow_id") == workflow_id and event_id.startswith(run_prefix):
                    lines.append(line)
        return b"".join(lines)

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
                raise _storage_error("lock", self.lock_path, err) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # releases the flock

    def _refuse_foreign_tail(self, workflow_id: str, events: Sequence[AuditEvent]) -> None:
        """Before signing: entries after the last checkpoint must be this append's own."""
        signed = self._last_checkpoint.size if self._last_checkpoint else 0
        if self._last_checkpoint is None or self._chain.size == signed:
            return
        with self.path.open("rb") as log:
            tail = [AuditEntry.model_validate_json(line) for line in list(log)[signed:]]
        foreign = foreign_tail(tail, workflow_id, events)
        if foreign:
            first = foreign[0]
            raise AuditLogError(
                f"audit log {self.path}: entry {first.seq} ({first.workflow_id} "
                f"{first.event_id}) and {len(foreign) - 1} more after the last checkpoint were "
                f"not written by the engine; it will not sign over them; {_REPAIR_HINT}"
            )

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
                self._last_checkpoint = read_checkpoint_line(self._checkpoints_read, line)
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
        raise _storage_error("open", path, err) from None
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
            raise _storage_error("append to", path, err) from None
    finally:
        os.close(fd)
    if expected_size == 0:  # a new file: make its directory entry durable too
        with contextlib.suppress(OSError):
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
