"""Check or export the PostgreSQL audit log whole: `verify_database` and `export_database`.

Both read the two tables from one read-only snapshot.
`verify_database` runs the checks `verify_log` runs on a file; `export_database` writes the rows
as the JSON-lines pair, which `verify_log` then checks offline with the same result.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import BaseModel

from zdp.compliance.audit.format import (
    AuditEntry,
    AuditLogError,
    AuditVerificationError,
    Checkpoint,
    EntryChain,
    VerifyReport,
    checkpoints_path_for,
    read_checkpoint_line,
)

# The file verifier's own coverage check, so both verifiers judge a checkpoint alike.
from zdp.compliance.audit.log import report_or_first_problem
from zdp.compliance.audit.postgres import Connection, connect, database_label, one_line, stream_rows
from zdp.signing import fingerprint

_FILE_MODE = 0o640


class AuditExport(BaseModel):
    """What `export_database` wrote: the JSON-lines log and its checkpoint file."""

    entries: int
    checkpoints: int
    path: Path
    checkpoints_path: Path


def verify_database(url: str, *, public_keys: Sequence[Ed25519PublicKey]) -> VerifyReport:
    """Check every entry and checkpoint in the database, as `verify_log` does a file's, from
    one snapshot; raise AuditVerificationError for the first problem in log order. A "line"
    in a message is a row, counted in seq order."""
    keys = {fingerprint(key): key for key in public_keys}
    with _snapshot(url) as conn:
        checkpoints, problems = _read_checkpoints(conn, keys)
        wanted = {cp.size for _, cp in checkpoints}
        heads: dict[int, AuditEntry] = {}
        chain = EntryChain()
        entry_problem: AuditVerificationError | None = None
        query = "SELECT seq, workflow_id, event_id, line FROM zdp_audit_entries ORDER BY seq"
        try:
            with stream_rows(conn, query) as rows:
                for _, workflow_id, event_id, line in rows:
                    entry = chain.read_line(line.encode() + b"\n")
                    if (workflow_id, event_id) != (entry.workflow_id, entry.event_id):
                        raise AuditVerificationError(
                            entry.seq,
                            f"its row says ({workflow_id} {event_id}), not what its line holds "
                            "(edited?)",
                            subject=f"entry {entry.seq} ({entry.workflow_id} {entry.event_id})",
                        )
                    if chain.size in wanted:
                        heads[chain.size] = entry
        except AuditVerificationError as err:
            entry_problem = err
    position = chain.size
    if entry_problem is not None and entry_problem.seq is not None:
        position = entry_problem.seq
    return report_or_first_problem(chain, problems, entry_problem, position, checkpoints, heads)


def export_database(url: str, path: Path, checkpoints_path: Path | None = None) -> AuditExport:
    """Write the log and its checkpoints as the JSON-lines pair, from one snapshot.

    Refuses to overwrite: an export never replaces a log that is already there.
    """
    checkpoints_path = checkpoints_path or checkpoints_path_for(path)
    for target in (path, checkpoints_path):
        if target.exists():
            raise AuditLogError(f"{target} already exists: export into an empty folder")
    with _snapshot(url) as conn, contextlib.ExitStack() as cleanup:
        with stream_rows(conn, "SELECT line FROM zdp_audit_entries ORDER BY seq") as rows:
            entries = _write_lines(path, rows, cleanup)
        query = "SELECT line FROM zdp_audit_checkpoints ORDER BY position"
        with stream_rows(conn, query) as rows:
            checkpoints = _write_lines(checkpoints_path, rows, cleanup)
        cleanup.pop_all()  # both files are in place: keep them
    return AuditExport(
        entries=entries, checkpoints=checkpoints, path=path, checkpoints_path=checkpoints_path
    )


# --------------------------------------------------------------------------- helpers


def _read_checkpoints(
    conn: Connection, keys: Mapping[str, Ed25519PublicKey]
) -> tuple[list[tuple[int, Checkpoint]], list[tuple[float, AuditVerificationError]]]:
    """The well-signed checkpoints, and each problem with the log position it concerns."""
    good: list[tuple[int, Checkpoint]] = []
    problems: list[tuple[float, AuditVerificationError]] = []
    rows = conn.execute("SELECT position, size, line FROM zdp_audit_checkpoints ORDER BY position")
    expected = 0
    for position, size, line in rows:
        if position != expected:
            gap = f"missing: the next row is checkpoint {position} (deleted?)"
            error = AuditVerificationError(
                None, gap, subject=f"checkpoint {expected}", checkpoint=expected
            )
            problems.append((math.inf, error))
        expected = position + 1
        try:
            cp = read_checkpoint_line(position, line.encode() + b"\n")
        except AuditVerificationError as err:
            problems.append((math.inf, err))
            continue
        subject = f"checkpoint {position} (covers {cp.size} entries)"
        reason = cp.signature_problem(keys)
        if reason is None and size != cp.size:
            reason = f"its row says it covers {size} entries (edited?)"
        if reason is None and good and cp.size <= good[-1][1].size:
            reason = f"does not cover more than checkpoint {good[-1][0]} (reordered?)"
        if reason is not None:
            error = AuditVerificationError(
                cp.size - 1, reason, subject=subject, checkpoint=position
            )
            problems.append((cp.size - 1, error))
            continue
        good.append((position, cp))
    return good, problems


@contextlib.contextmanager
def _snapshot(url: str) -> Iterator[Connection]:
    """A read-only REPEATABLE READ transaction: both tables as of one moment."""
    where = database_label(url)
    try:
        with connect(url) as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            found = conn.execute(
                "SELECT to_regclass('zdp_audit_entries') IS NOT NULL "
                "AND to_regclass('zdp_audit_checkpoints') IS NOT NULL"
            ).fetchone()
            if not (found and found[0]):
                raise AuditLogError(f"{where} holds no audit log (its tables do not exist)")
            yield conn
    except psycopg.OperationalError as err:
        raise AuditLogError(f"{where} unavailable: {one_line(err)}") from None
    except psycopg.Error as err:
        raise AuditLogError(f"{where}: {one_line(err)}") from None


def _write_lines(path: Path, rows: Iterator[Any], cleanup: contextlib.ExitStack) -> int:
    """Stream rows' lines into `path` (a new file; fsynced); `cleanup` removes it on error."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    count = 0
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), _FILE_MODE)
            for (line,) in rows:
                handle.write(line.encode() + b"\n")
                count += 1
            handle.flush()
            os.fsync(handle.fileno())
        os.link(tmp, path)  # fails, rather than replacing, if the file appeared meanwhile
    except FileExistsError:
        raise AuditLogError(f"{path} already exists: export into an empty folder") from None
    except OSError as err:
        raise AuditLogError(f"cannot write {path}: {err.strerror}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    cleanup.callback(lambda: path.unlink(missing_ok=True))
    return count
