"""The append-only, hash-chained audit log: one JSON entry per line, signed checkpoints beside it.

Each entry carries the hash of the entry before it, so editing, deleting or reordering one breaks
the chain right there. A chain alone can still be cut short or rewritten whole, so the engine
signs checkpoints (size and head hash) into a separate file: truncating the log behind a
checkpoint, or rewriting what it covers, no longer matches a signature.

This module is the entry point: the storage protocol, where the log lives, and `verify_log`.
The format and models are in format.py; the JSON-lines file backend, `AuditLog`, is in
jsonl.py. Both are re-exported here. The PostgreSQL backend, `PostgresAuditLog`, is in
postgres.py (not imported here: it loads the driver); ZDP_AUDIT_DATABASE_URL selects it.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from zdp.compliance.audit.format import (
    GENESIS_HASH,
    AppendResult,
    AuditEntry,
    AuditEvent,
    AuditLogError,
    AuditVerificationError,
    Checkpoint,
    EntryChain,
    VerifyReport,
    canonical_json,
    checkpoints_path_for,
    entry_hash,
    format_utc,
    lock_path_for,
    read_checkpoint_line,
)
from zdp.compliance.audit.jsonl import AuditLog
from zdp.settings import settings, zdp_home
from zdp.signing import fingerprint

__all__ = [
    "AUDIT_DATABASE_URL_ENV",
    "GENESIS_HASH",
    "AppendResult",
    "AuditEntry",
    "AuditEvent",
    "AuditLog",
    "AuditLogError",
    "AuditStore",
    "AuditVerificationError",
    "Checkpoint",
    "VerifyReport",
    "canonical_json",
    "checkpoints_path_for",
    "coverage_problem",
    "default_log_path",
    "entry_hash",
    "evidence_dir",
    "format_utc",
    "lock_path_for",
    "open_store",
    "verify_log",
]

AUDIT_DATABASE_URL_ENV = "ZDP_AUDIT_DATABASE_URL"  # set: the engine logs to PostgreSQL


class AuditStore(Protocol):
    """Audit storage as the engine uses it; a backend is one class (jsonl: JSON lines,
    postgres: PostgreSQL)."""

    def append(
        self, workflow_id: str, events: Sequence[AuditEvent], *, checkpoint: bool = False
    ) -> AppendResult:
        """Add the events not yet logged for this workflow; logged ones are skipped. With
        `checkpoint`, sign the resulting head atomically with the append."""
        ...

    def checkpoint(self, at: datetime | None = None) -> Checkpoint:
        """Sign the current size and head, unless the last checkpoint already covers them."""
        ...

    def entries_of(self, workflow_id: str, run_prefix: str) -> bytes:
        """This workflow's lines whose event id starts with `run_prefix`, exactly as stored."""
        ...


def open_store(home: Path | None = None) -> AuditStore:
    """The engine's audit store: PostgreSQL when ZDP_AUDIT_DATABASE_URL is set, else the
    JSON-lines file in $ZDP_HOME/audit; checkpoints signed with the engine key."""
    from zdp.compliance.engine_key import engine_key

    url = settings().AUDIT_DATABASE_URL
    if url:
        from zdp.compliance.audit.postgres import PostgresAuditLog

        return PostgresAuditLog(url, engine_key(home))
    return AuditLog(default_log_path(home), engine_key(home))


# --------------------------------------------------------------------------- reading


def default_log_path(home: Path | None = None) -> Path:
    """$ZDP_HOME/audit/audit.jsonl."""
    return (home or zdp_home()) / "audit" / "audit.jsonl"


def evidence_dir(home: Path | None = None) -> Path:
    """$ZDP_HOME/evidence: one folder per deployment, one sealed bundle per run."""
    return (home or zdp_home()) / "evidence"


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
            cp = read_checkpoint_line(index, line)
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


def coverage_problem(
    index: int, cp: Checkpoint, size: int, heads: Mapping[int, AuditEntry]
) -> AuditVerificationError | None:
    """How a log of `size` good entries disagrees with a well-signed checkpoint, if it does.
    The database verifier (postgres_verify.py) uses it too, so both judge a checkpoint alike."""
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
    chain = EntryChain()
    entry_problem: AuditVerificationError | None = None
    last_end: AuditEntry | None = None  # the latest entry logged at a deployment's end
    try:
        with path.open("rb") as handle:
            for line in _lines(handle, log_size):
                entry = chain.read_line(line)
                if chain.size in wanted:
                    heads[chain.size] = entry
                if entry.data.get("phase") == "done":
                    last_end = entry
    except FileNotFoundError:
        raise AuditLogError(f"audit log not found: {path}") from None
    except OSError as err:
        raise AuditLogError(f"cannot read {path}: {err.strerror}") from None
    except AuditVerificationError as err:
        entry_problem = err
    unsigned_end = _end_without_checkpoint(last_end, checkpoints)
    if unsigned_end is not None:
        problems.append((unsigned_end.seq or 0, unsigned_end))
    return report_or_first_problem(chain, problems, entry_problem, chain.size, checkpoints, heads)


def _end_without_checkpoint(
    last_end: AuditEntry | None, checkpoints: list[tuple[int, Checkpoint]]
) -> AuditVerificationError | None:
    """A log without any good checkpoint that holds a deployment's end: the engine signs every
    append it makes, so its checkpoints were removed. (Once a checkpoint exists, entries it
    does not cover are refused in report_or_first_problem, ends or not.)"""
    if last_end is None or checkpoints:
        return None
    return AuditVerificationError(
        last_end.seq,
        "ends a deployment, and the engine signs a checkpoint with every deployment's end, "
        "but no checkpoint covers it: checkpoint lines or the checkpoint file were removed",
        subject=f"entry {last_end.seq} ({last_end.workflow_id} {last_end.event_id})",
    )


def report_or_first_problem(
    chain: EntryChain,
    problems: list[tuple[float, AuditVerificationError]],
    entry_problem: AuditVerificationError | None,
    entry_position: float,
    checkpoints: list[tuple[int, Checkpoint]],
    heads: dict[int, AuditEntry],
) -> VerifyReport:
    """Raise the first problem in log order (an entry before a checkpoint at the same place);
    the report when there is none. Shared by the file and the PostgreSQL verifiers."""
    ranked = [(position, 1, error) for position, error in problems]
    if entry_problem is not None:
        ranked.append((entry_position, 0, entry_problem))
    for index, cp in checkpoints:
        mismatch = coverage_problem(index, cp, chain.size, heads)
        if mismatch is not None:
            ranked.append((cp.size - 1 if cp.size <= chain.size else chain.size, 1, mismatch))
    if not ranked and checkpoints and chain.size > checkpoints[-1][1].size:
        # The engine signs every append it makes under the same lock: once it has signed,
        # entries that no checkpoint covers were added by something else. (Said only when
        # nothing else is wrong: a bad checkpoint or entry explains an uncovered tail first.)
        first = checkpoints[-1][1].size
        ranked.append(
            (
                first,
                1,
                AuditVerificationError(
                    first,
                    f"no checkpoint covers entries {first}-{chain.size - 1}: the engine signs "
                    "every append it makes, so they were added by something else, or an append "
                    "was interrupted before it was signed (its retry signs them)",
                ),
            )
        )
    if ranked:
        raise min(ranked, key=lambda item: (item[0], item[1]))[2]
    return VerifyReport(
        entries=chain.size,
        checkpoints=len(checkpoints),
        head_hash=chain.head_hash,
        last_checkpoint=checkpoints[-1][1] if checkpoints else None,
    )
