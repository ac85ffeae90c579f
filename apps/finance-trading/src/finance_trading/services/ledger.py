"""The idempotency ledger every version of the app shares: one row per (account, client order id).

The engine runs a stable and a canary side by side, and the proxy retries a failed submit or
cancel that carries an `Idempotency-Key` on the other version. Each version matches in its own
in-memory book, so the idempotency record cannot live there: it lives here, in SQLite at
`$APP_DATA_DIR/finance-trading.db`, a file every version of the app opens.

A submit claims its key with `INSERT ... ON CONFLICT DO NOTHING` inside `BEGIN IMMEDIATE`,
and the accepted order's JSON goes into the same row, so a committed claim always has its
order: whoever inserts the row owns the order, everyone else replays the stored one. A cancel
stores the cancelled order over it, so a retried cancel replays on either version.

WAL with `synchronous=NORMAL`: a commit appends to the WAL without an fsync, so a claim
survives the process crashing, but the last commits may be lost if the machine loses power.
Statements are fixed strings, so sqlite3's statement cache prepares each one once.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager, suppress
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Protocol

from finance_trading.services.errors import LedgerUnavailableError
from finance_trading.services.records import OrderRecord

logger = logging.getLogger("finance_trading.ledger")

DB_FILE = "finance-trading.db"
BUSY_TIMEOUT_MS = 2000  # the longest wait for the other version's write lock

_SCHEMA = """
CREATE TABLE IF NOT EXISTS order_ledger (
    account         TEXT    NOT NULL,
    client_order_id TEXT    NOT NULL,
    symbol          TEXT    NOT NULL,  -- upper case
    side            TEXT    NOT NULL,
    qty             INTEGER NOT NULL,
    limit_price     TEXT    NOT NULL,  -- canonical: 190.5 for 190.50 and 190.5000
    order_id        TEXT    NOT NULL UNIQUE,
    order_json      TEXT    NOT NULL,  -- the order as accepted, or as cancelled
    PRIMARY KEY (account, client_order_id)
) WITHOUT ROWID
"""
_CLAIM = """
INSERT INTO order_ledger
    (account, client_order_id, symbol, side, qty, limit_price, order_id, order_json)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (account, client_order_id) DO NOTHING
"""
_BY_KEY = "SELECT order_json FROM order_ledger WHERE account = ? AND client_order_id = ?"
_BY_ORDER_ID = "SELECT order_json FROM order_ledger WHERE order_id = ? AND account = ?"
_STORE_CANCEL = "UPDATE order_ledger SET order_json = ? WHERE account = ? AND client_order_id = ?"
_READABLE = "SELECT 1 FROM order_ledger LIMIT 1"  # reads the header, the schema and one page
_NOT_ACCEPTED = "the order was not accepted; retry with the same client_order_id"
_NOT_CANCELLED = "the order was not cancelled; retry the cancel"


class LedgerError(RuntimeError):
    """The ledger file cannot be opened; the message names the file and what to do."""


class OrderLedger(Protocol):
    """Idempotency records shared by every version: what the order service needs of them."""

    def claim(self, order: OrderRecord) -> OrderRecord | None:
        """Store `order` under its key and return None; or return the order stored before."""

    def find(self, account: str, client_order_id: str) -> OrderRecord | None:
        """The order stored under this key, if any."""

    def find_order(self, account: str, order_id: str) -> OrderRecord | None:
        """The account's order with this id, if any version stored one."""

    def store_cancel(self, order: OrderRecord) -> None:
        """`order` (already cancelled) replaces what is stored under its key."""

    def close(self) -> None: ...


class SqliteOrderLedger:
    """The ledger in one SQLite file; one connection, used under the order service's lock."""

    def __init__(self, db: sqlite3.Connection, path: Path) -> None:
        self._db = db
        self.path = path

    @classmethod
    def open(cls, data_dir: Path, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> SqliteOrderLedger:
        """Open (creating if need be) `data_dir/finance-trading.db`; raise LedgerError."""
        path = data_dir / DB_FILE
        db: sqlite3.Connection | None = None
        try:
            # isolation_level=None: no implicit BEGIN, the transactions below are explicit.
            db = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, timeout=busy_timeout_ms / 1000
            )
            db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            _enable_wal(db, busy_timeout_ms)
            db.execute("PRAGMA synchronous = NORMAL")
            db.execute("BEGIN IMMEDIATE")  # two versions starting at once create it once
            db.execute(_SCHEMA)
            db.execute("COMMIT")
        except sqlite3.Error as error:
            if db is not None:
                db.close()
            raise LedgerError(
                f"APP_DATA_DIR: cannot open the order ledger {path}: {error}. Make the folder "
                "writable by this user, or unset APP_DATA_DIR to keep orders in memory only"
            ) from None
        return cls(db, path)

    def claim(self, order: OrderRecord) -> OrderRecord | None:
        row = (
            order.account,
            order.client_order_id,
            order.symbol,
            order.side,
            order.qty,
            canonical_price(order.limit_price),
            order.order_id,
            order_to_json(order),
        )
        with self._failures(_NOT_ACCEPTED):
            self._db.execute("BEGIN IMMEDIATE")  # the write lock now, not at the first write
            claimed = self._db.execute(_CLAIM, row).rowcount
            stored = None if claimed else self._db.execute(_BY_KEY, row[:2]).fetchone()
            self._db.execute("COMMIT")
        return None if stored is None else order_from_json(stored[0])

    def find(self, account: str, client_order_id: str) -> OrderRecord | None:
        with self._failures(_NOT_ACCEPTED):
            found = self._db.execute(_BY_KEY, (account, client_order_id)).fetchone()
        return order_from_json(found[0]) if found else None

    def find_order(self, account: str, order_id: str) -> OrderRecord | None:
        with self._failures(_NOT_CANCELLED):
            found = self._db.execute(_BY_ORDER_ID, (order_id, account)).fetchone()
        return order_from_json(found[0]) if found else None

    def store_cancel(self, order: OrderRecord) -> None:
        stored = (order_to_json(order), order.account, order.client_order_id)
        with self._failures(_NOT_CANCELLED):
            self._db.execute(_STORE_CANCEL, stored)  # one statement: its own transaction

    def close(self) -> None:
        self._db.close()

    def problem(self) -> str | None:
        """Readiness: None when the ledger file answers a read, else the reason. Blocking.

        On a short-lived connection of its own, not the order service's: the check must never
        queue for that connection's lock behind order traffic, nor hold orders up. `mode=rw`
        so that a ledger file someone removed reads as missing instead of being re-created
        empty (which would forget every key the other version still replays).
        """
        try:
            uri = f"{self.path.resolve().as_uri()}?mode=rw"
            with closing(sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_MS / 1000)) as db:
                db.execute(_READABLE).fetchall()
        except sqlite3.Error as error:
            return f"the order ledger does not answer: {error}"
        return None

    @contextmanager
    def _failures(self, outcome: str) -> Iterator[None]:
        """Roll back whatever failed; a SQLite failure becomes LedgerUnavailableError, whose
        message adds `outcome` (what did not happen, and what to do)."""
        try:
            yield
        except BaseException as error:
            with suppress(sqlite3.Error):  # e.g. closed: then there is nothing to roll back
                if self._db.in_transaction:
                    self._db.rollback()
            if not isinstance(error, sqlite3.Error):
                raise
            logger.warning(
                "order ledger unavailable",
                extra={"fields": {"path": str(self.path), "why": str(error)}},
            )
            raise LedgerUnavailableError(
                f"the order ledger is unavailable ({error}): {outcome}"
            ) from None


def canonical_price(price: Decimal) -> str:
    """One spelling per price: 190.5 for 190.50 and 190.5000, 100 for 1E+2."""
    return format(price.normalize(), "f")


def order_to_json(order: OrderRecord) -> str:
    return json.dumps(
        {
            "order_id": order.order_id,
            "account": order.account,
            "client_order_id": order.client_order_id,
            "symbol": order.symbol,
            "side": order.side,
            "qty": order.qty,
            "limit_price": str(order.limit_price),  # as the client wrote it, as answered
            "seq": order.seq,
            "created_at": order.created_at.isoformat(),
            "updated_at": order.updated_at.isoformat(),
            "status": order.status,
            "filled_qty": order.filled_qty,
            "filled_notional": str(order.filled_notional),
        }
    )


def order_from_json(text: str) -> OrderRecord:
    data = json.loads(text)
    return OrderRecord(
        order_id=data["order_id"],
        account=data["account"],
        client_order_id=data["client_order_id"],
        symbol=data["symbol"],
        side=data["side"],
        qty=data["qty"],
        limit_price=Decimal(data["limit_price"]),
        seq=data["seq"],
        created_at=datetime.fromisoformat(data["created_at"]),
        updated_at=datetime.fromisoformat(data["updated_at"]),
        status=data["status"],
        filled_qty=data["filled_qty"],
        filled_notional=Decimal(data["filled_notional"]),
    )


def _enable_wal(db: sqlite3.Connection, busy_timeout_ms: int) -> None:
    """Switch the file to WAL (it stays so). Switching needs the file to itself, and two
    versions creating it at once can get SQLITE_BUSY without the busy handler: retry."""
    deadline = time.monotonic() + busy_timeout_ms / 1000
    while True:
        try:
            (mode,) = db.execute("PRAGMA journal_mode = WAL").fetchone()
        except sqlite3.OperationalError:
            if time.monotonic() > deadline:
                raise
            mode = None
        if mode == "wal":
            return
        if time.monotonic() > deadline:  # the pragma answers the old mode when it cannot switch
            raise sqlite3.OperationalError(f"cannot switch to WAL, the journal mode is {mode}")
        time.sleep(0.01)
