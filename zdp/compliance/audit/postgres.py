"""The PostgreSQL audit store, `PostgresAuditLog`: the JSON-lines log, one entry per table row.

Each row holds an entry's canonical JSON line exactly as the file backend writes it (same seq,
prev_hash and hash), and each checkpoint row the file's checkpoint line. So the rows export as a
JSON-lines pair that `verify_log` checks offline, and `verify_database` runs the same checks on
the rows (both in audit/postgres_verify.py). Writers in any number of processes serialize on a
transaction-level advisory lock: each one reads the head and inserts after it while holding it,
so the chain stays contiguous.

Triggers refuse UPDATE, DELETE and TRUNCATE on both tables, whoever sends them. The tables'
owner or a superuser can still disable a trigger; the hash chain and the signed checkpoints are
what catch an edit made that way. For that separation, create the tables with another role and
grant the engine's role only SELECT and INSERT: the engine then runs no DDL.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Generator, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from zdp.compliance.audit.format import (
    AppendResult,
    AuditEntry,
    AuditEvent,
    AuditLogError,
    AuditVerificationError,
    Checkpoint,
    EntryChain,
    canonical_json,
    foreign_tail,
    read_checkpoint_line,
)
from zdp.compliance.audit.jsonl import AuditStorageFull
from zdp.settings import settings

_LOCK_KEY = int.from_bytes(b"zdpaudit", "big")  # the advisory lock every writer takes
_CONNECT_TIMEOUT_S = 10
_LOCK_TIMEOUT = "30s"  # a writer waiting longer fails, and the activity retries it
_STREAM_CHUNK = 1000 if psycopg.pq.version() >= 170000 else 1  # rows per fetch (libpq 17+)
_REPAIR_HINT = "run `zdp audit verify --database` and repair the log before appending"

_TABLES = """
CREATE TABLE IF NOT EXISTS zdp_audit_entries (
    seq bigint PRIMARY KEY CHECK (seq >= 0),
    workflow_id text NOT NULL,
    event_id text NOT NULL,
    line text NOT NULL,
    UNIQUE (workflow_id, event_id)
);
CREATE TABLE IF NOT EXISTS zdp_audit_checkpoints (
    position bigint PRIMARY KEY CHECK (position >= 0),
    size bigint NOT NULL CHECK (size >= 0),
    line text NOT NULL
);
CREATE OR REPLACE FUNCTION zdp_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: rows are never changed or removed', TG_TABLE_NAME;
END $$;
"""
_TRIGGERS = {
    f"{table}_{name}": (
        f"CREATE TRIGGER {table}_{name} BEFORE {action} ON {table} "
        f"FOR EACH {scope} EXECUTE FUNCTION zdp_audit_append_only()"
    )
    for table in ("zdp_audit_entries", "zdp_audit_checkpoints")
    for name, action, scope in (
        ("no_change", "UPDATE OR DELETE", "ROW"),
        ("no_truncate", "TRUNCATE", "STATEMENT"),
    )
}

T = TypeVar("T")
Connection = psycopg.Connection[tuple[Any, ...]]


class PostgresAuditLog:
    """The PostgreSQL audit store: idempotent appends, one chain across processes."""

    def __init__(
        self, url: str, signer: Ed25519PrivateKey | None = None, *, checkpoint_every: int = 64
    ) -> None:
        """`checkpoint_every` entries since the last checkpoint make append sign a new one
        (0 turns that off; so does having no signer). Nothing connects until first use."""
        self.url = url
        self.checkpoint_every = checkpoint_every
        self._signer = signer
        self._thread_lock = threading.Lock()  # one connection, used by one thread at a time
        self._connection: Connection | None = None
        self._chain = EntryChain()  # the rows read so far: the head and the logged keys
        self._schema_ready = False

    def append(
        self, workflow_id: str, events: Sequence[AuditEvent], *, checkpoint: bool = False
    ) -> AppendResult:
        """Log the events not yet logged under (workflow_id, event_id), in order; with
        `checkpoint`, sign the new head in the same transaction."""
        if not workflow_id:
            raise AuditLogError("cannot log events without a workflow id")
        if checkpoint and self._signer is None:
            raise AuditLogError("cannot sign a checkpoint: this audit log has no signing key")
        result, _ = self._run(
            lambda conn: self._append_locked(conn, workflow_id, events, checkpoint),
            locked=True,
            committed=self._extend_chain,
        )
        return result

    def checkpoint(self, at: datetime | None = None) -> Checkpoint:
        """Sign the current size and head hash; returns the last checkpoint if nothing is new."""
        signer = self._signer
        if signer is None:
            raise AuditLogError("cannot sign a checkpoint: this audit log has no signing key")

        def sign(conn: Connection) -> Checkpoint:
            self._catch_up(conn)
            last = self._last_checkpoint(conn)
            if last is not None and last[1].size == self._chain.size:
                return last[1]
            return self._insert_checkpoint(
                conn, last, self._chain.size, self._chain.head_hash, signer, at
            )

        return self._run(sign, locked=True)

    def entries_of(self, workflow_id: str, run_prefix: str) -> bytes:
        """The lines of this workflow's events whose id starts with `run_prefix`, in log order,
        exactly as stored (each verifiable alone)."""

        def read(conn: Connection) -> bytes:
            rows = conn.execute(
                "SELECT line FROM zdp_audit_entries "
                "WHERE workflow_id = %s AND starts_with(event_id, %s) ORDER BY seq",
                [workflow_id, run_prefix],
            )
            return b"".join(line.encode() + b"\n" for (line,) in rows)

        return self._run(read, locked=False)

    def close(self) -> None:
        """Close the connection; the next call opens a new one."""
        with self._thread_lock:
            self._close()

    # ----------------------------------------------------------------------- under the lock

    def _extend_chain(self, appended: tuple[AppendResult, list[bytes]]) -> None:
        """Once committed, the appended lines are part of the chain this process knows."""
        for line in appended[1]:
            self._chain.read_line(line)

    def _append_locked(
        self,
        conn: Connection,
        workflow_id: str,
        events: Sequence[AuditEvent],
        checkpoint: bool = False,
    ) -> tuple[AppendResult, list[bytes]]:
        self._catch_up(conn)
        last = self._last_checkpoint(conn)
        covered = last[1].size if last else 0
        if checkpoint and last is not None and self._chain.size > covered:
            rows_after = conn.execute(
                "SELECT line FROM zdp_audit_entries WHERE seq >= %s ORDER BY seq", [covered]
            )
            tail = [AuditEntry.model_validate_json(line) for (line,) in rows_after]
            foreign = foreign_tail(tail, workflow_id, events)
            if foreign:
                raise AuditLogError(
                    f"{database_label(self.url)}: entry {foreign[0].seq} and "
                    f"{len(foreign) - 1} more after the last checkpoint were not written by the "
                    f"engine; it will not sign over them; {_REPAIR_HINT}"
                )
        seq, prev_hash = self._chain.size, self._chain.head_hash
        batch: set[tuple[str, str]] = set()
        lines: list[bytes] = []
        rows: list[tuple[int, str, str, str]] = []
        for event in events:
            key = (workflow_id, event.event_id)
            if key in self._chain.keys or key in batch:
                continue
            batch.add(key)
            entry = AuditEntry.chained(seq, prev_hash, workflow_id, event)
            lines.append(entry.line())
            rows.append((seq, workflow_id, event.event_id, entry.line()[:-1].decode()))
            seq, prev_hash = seq + 1, entry.hash
        if rows:
            with conn.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO zdp_audit_entries (seq, workflow_id, event_id, line) "
                    "VALUES (%s, %s, %s, %s)",
                    rows,
                )
        last_size = last[1].size if last else 0
        signed = None
        if checkpoint and self._signer is not None:
            signed = (
                last[1]
                if last is not None and last[1].size == seq
                else self._insert_checkpoint(conn, last, seq, prev_hash, self._signer, None)
            )
        elif self._signer and 0 < self.checkpoint_every <= seq - last_size:
            self._insert_checkpoint(conn, last, seq, prev_hash, self._signer, None)
        first_hash = self._chain.first_hash
        if first_hash is None and rows:
            first_hash = AuditEntry.model_validate_json(lines[0]).hash
        result = AppendResult(
            appended=len(rows),
            skipped=len(events) - len(rows),
            size=seq,
            head_hash=prev_hash,
            checkpoint=signed,
            first_hash=first_hash,
        )
        return result, lines

    def _catch_up(self, conn: Connection) -> None:
        """Read the rows other writers added since this process last looked (lock held)."""
        known = self._chain.size
        query = "SELECT line FROM zdp_audit_entries WHERE seq >= %s ORDER BY seq"
        with stream_rows(conn, query, [known]) as rows:
            for (line,) in rows:
                try:
                    self._chain.read_line(line.encode() + b"\n")
                except AuditVerificationError as err:
                    where = database_label(self.url)
                    raise AuditLogError(f"{where}: {err}; {_REPAIR_HINT}") from None
        if self._chain.size == known and known > 0:
            row = conn.execute("SELECT max(seq) FROM zdp_audit_entries").fetchone()
            held = row[0] + 1 if row and row[0] is not None else 0
            if held < known:
                raise AuditLogError(
                    f"{database_label(self.url)} holds {held} entries, but this process saw "
                    f"{known}: rows were removed; {_REPAIR_HINT}"
                )

    def _last_checkpoint(self, conn: Connection) -> tuple[int, Checkpoint] | None:
        row = conn.execute(
            "SELECT position, line FROM zdp_audit_checkpoints ORDER BY position DESC LIMIT 1"
        ).fetchone()
        if row is None:
            return None
        try:
            last = read_checkpoint_line(row[0], row[1].encode() + b"\n")
        except AuditVerificationError as err:
            where = database_label(self.url)
            raise AuditLogError(f"{where}: {err}; {_REPAIR_HINT}") from None
        if last.size > self._chain.size:
            raise AuditLogError(
                f"{database_label(self.url)} has {self._chain.size} entries but its last "
                f"checkpoint covers {last.size}: it was truncated; {_REPAIR_HINT}"
            )
        return row[0], last

    def _insert_checkpoint(
        self,
        conn: Connection,
        last: tuple[int, Checkpoint] | None,
        size: int,
        head_hash: str,
        signer: Ed25519PrivateKey,
        at: datetime | None,
    ) -> Checkpoint:
        cp = Checkpoint.sign(size, head_hash, at or datetime.now(UTC), signer)
        conn.execute(
            "INSERT INTO zdp_audit_checkpoints (position, size, line) VALUES (%s, %s, %s)",
            [last[0] + 1 if last else 0, size, canonical_json(cp.model_dump()).decode()],
        )
        return cp

    # ----------------------------------------------------------------------- connection

    def _run(
        self,
        work: Callable[[Connection], T],
        *,
        locked: bool,
        committed: Callable[[T], None] | None = None,
    ) -> T:
        """`work` in one transaction (holding the advisory lock if `locked`); once it commits,
        `committed(result)`, still under this process's thread lock.

        A connection that broke while idle is replaced once: every write here is idempotent,
        so running it again cannot log anything twice.
        """
        with self._thread_lock:
            for attempt in range(2):
                reused = self._connection is not None
                try:
                    conn = self._connect()
                    with conn.transaction():
                        if locked:
                            conn.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK_KEY])
                        result = work(conn)
                except psycopg.errors.DiskFull as err:  # the server could not extend a file
                    where = database_label(self.url)
                    raise AuditStorageFull(f"disk full at {where} ({one_line(err)})") from None
                except psycopg.Error as err:
                    broken = self._connection is None or self._connection.broken
                    if broken:
                        self._close()
                        if reused and attempt == 0:
                            continue
                        raise AuditLogError(
                            f"{database_label(self.url)} unavailable: {one_line(err)}"
                        ) from None
                    raise AuditLogError(f"{database_label(self.url)}: {one_line(err)}") from None
                if committed is not None:
                    committed(result)
                return result
            raise AssertionError("unreachable")

    def _connect(self) -> Connection:
        if self._connection is None or self._connection.closed:
            self._connection = connect(self.url)
            self._connection.execute(f"SET lock_timeout = '{_LOCK_TIMEOUT}'")
        if not self._schema_ready:
            _ensure_schema(self._connection)
            self._schema_ready = True
        return self._connection

    def _close(self) -> None:
        if self._connection is not None:
            with contextlib.suppress(psycopg.Error):
                self._connection.close()
            self._connection = None


# --------------------------------------------------------------------------- helpers
# connect, stream_rows, database_label and one_line serve postgres_verify.py too.


AUDIT_DATABASE_CA_ENV = "ZDP_AUDIT_DATABASE_CA"


def connect(url: str) -> Connection:
    """An autocommit connection: each unit of work opens its own transaction block."""
    conninfo = make_conninfo(_libpq_url(url), **tls_options(url))
    return psycopg.connect(conninfo, autocommit=True, connect_timeout=_CONNECT_TIMEOUT_S)


def tls_options(url: str) -> dict[str, str]:
    """With a CA configured (ZDP_AUDIT_DATABASE_CA, a PEM file), the server's certificate and
    host name are verified (sslmode=verify-full) unless the URL names its own sslmode; without
    one, libpq's defaults (the URL's sslmode, else prefer) apply."""
    ca_file = settings().AUDIT_DATABASE_CA
    if ca_file is None:
        return {}
    ca = str(ca_file)
    options = {"sslrootcert": ca}
    if "sslmode" not in conninfo_to_dict(_libpq_url(url)):
        options["sslmode"] = "verify-full"
    return options


def _libpq_url(url: str) -> str:
    """Accept SQLAlchemy's spelling too: postgresql+psycopg://... is postgresql://..."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme.split('+')[0]}{sep}{rest}" if sep else url


@contextlib.contextmanager
def stream_rows(
    conn: Connection, query: str, params: Sequence[Any] = ()
) -> Iterator[Iterator[Any]]:
    """The rows as they arrive: a large log is never held in memory at once."""
    with conn.cursor() as cursor:
        rows = cursor.stream(query, params, size=_STREAM_CHUNK)
        try:
            yield rows
        finally:
            if isinstance(rows, Generator):
                rows.close()  # a loop left early still ends the query


def _ensure_schema(conn: Connection) -> None:
    """Create the tables and triggers that are missing, one process at a time; run no DDL
    when all are there (the engine's role may have no right to)."""
    check = (
        "SELECT to_regclass('zdp_audit_entries') IS NOT NULL "
        "AND to_regclass('zdp_audit_checkpoints') IS NOT NULL, "
        "ARRAY(SELECT tgname::text FROM pg_trigger WHERE tgname = ANY(%s))"
    )
    row = conn.execute(check, [list(_TRIGGERS)]).fetchone()
    if row and row[0] and set(row[1]) == set(_TRIGGERS):
        return
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK_KEY])
        encoding = conn.execute("SHOW server_encoding").fetchone()
        if encoding and encoding[0] != "UTF8":
            raise AuditLogError(
                f"the audit database's encoding is {encoding[0]}: the log needs UTF8 "
                "(entries are UTF-8 JSON); create the database with ENCODING 'UTF8'"
            )
        conn.execute(_TABLES)
        present = conn.execute(check, [list(_TRIGGERS)]).fetchone()
        for name, statement in _TRIGGERS.items():
            if not present or name not in present[1]:
                conn.execute(statement)


def database_label(url: str) -> str:
    """The database, for messages: never its password."""
    try:
        parts = conninfo_to_dict(_libpq_url(url))
    except psycopg.ProgrammingError:
        return "audit database (unparsable URL)"
    host, port = parts.get("host", "localhost"), parts.get("port")
    user = f"{parts['user']}@" if parts.get("user") else ""
    return f"audit database {user}{host}{f':{port}' if port else ''}/{parts.get('dbname', '')}"


def one_line(err: BaseException) -> str:
    """An error's message on one line."""
    return " ".join(str(err).split())
