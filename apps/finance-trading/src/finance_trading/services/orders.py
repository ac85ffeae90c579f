"""The order service both APIs call: idempotent submit and cancel, queries, per-account state.

Submission is idempotent per account on the client order id (FIX ClOrdID): a retry with the
same fields returns the original order, a reuse with other fields is refused. That makes the
proxy's retries of a submit safe. Books, trades and positions are in memory, one set per
process (per version), and lost on restart.

With a ledger (APP_DATA_DIR set), the idempotency record is the ledger's, shared by every
version: a submit first claims its key there, with the order, in one transaction, and only the
version whose claim won matches the order in its book. A retry that reaches another version
replays the stored order. Without one, this process's memory is the only record.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal

from finance_trading.models.trading import OrderRequest
from finance_trading.services.book import LimitOrderBook
from finance_trading.services.errors import (
    IdempotencyConflictError,
    OrderNotCancellableError,
    OrderNotFoundError,
    RiskRejectedError,
)
from finance_trading.services.ledger import OrderLedger
from finance_trading.services.records import OrderRecord, Position, Trade
from finance_trading.services.risk import RiskLimits, check_order

Clock = Callable[[], datetime]


@dataclass(frozen=True, slots=True)
class Submission:
    order: OrderRecord
    replayed: bool  # True: the order was accepted before, this submit was a retry
    trades: list[Trade] = field(default_factory=list)  # the trades this submit made


@dataclass(frozen=True, slots=True)
class Cancellation:
    order: OrderRecord
    replayed: bool  # True: the order was already cancelled (by this version or another)


@dataclass(frozen=True, slots=True)
class Fill:
    """One side of a trade, as the account that owns `order` sees it."""

    trade: Trade
    order: OrderRecord


class OrderService:
    """Orders, books, trades and positions of every account in this process.

    REST handlers and GraphQL resolvers call it from the event loop, where one call runs to
    its end before another starts; the lock keeps that true for a caller on a thread, and
    serializes the use of the ledger's one connection. A ledger call is one short SQLite
    transaction, run inline: handing it to a thread would cost more than it does.
    """

    def __init__(
        self,
        limits: RiskLimits,
        clock: Clock = lambda: datetime.now(UTC),
        ledger: OrderLedger | None = None,
    ) -> None:
        self.limits = limits
        self._clock = clock
        self._ledger = ledger
        self._lock = threading.Lock()
        # Ids carry a per-process tag: a stable and a canary each number their own orders,
        # and each restart starts again at 1. 48 bits, as the ledger keeps ids across restarts.
        self._tag = secrets.token_hex(6)
        self._seq = 0
        self._trade_seq = 0
        self._orders: dict[str, OrderRecord] = {}
        self._by_client_id: dict[tuple[str, str], OrderRecord] = {}
        self._by_account: dict[str, list[OrderRecord]] = {}
        self._fills: dict[str, list[Fill]] = {}
        self._positions: dict[tuple[str, str], Position] = {}
        self._books: dict[str, LimitOrderBook] = {}

    # ------------------------------------------------------------------ commands

    def submit(self, account: str, request: OrderRequest) -> Submission:
        """Accept and match a new order, or return the one this client order id made before."""
        with self._lock:
            existing = self._by_client_id.get((account, request.client_order_id))
            if existing is not None:  # accepted here: replay it in its current state
                _refuse_if_different(existing, request)
                return Submission(existing, replayed=True)
            try:
                check_order(request, self.limits)
            except RiskRejectedError:
                # A version with other limits may have accepted it: that is still a replay.
                stored = self._stored(account, request.client_order_id)
                if stored is None:
                    raise
                _refuse_if_different(stored, request)
                return Submission(stored, replayed=True)
            now = self._clock()
            self._seq += 1
            order = OrderRecord(
                order_id=f"ord-{self._tag}-{self._seq:08d}",
                account=account,
                client_order_id=request.client_order_id,
                symbol=request.symbol,
                side=request.side,
                qty=request.qty,
                limit_price=request.limit_price,
                seq=self._seq,
                created_at=now,
                updated_at=now,
            )
            if self._ledger is not None:
                # Claims the key and stores the order, committed together. Only the winner
                # matches; the stored order is as accepted, before its fills in another book.
                stored = self._ledger.claim(order)
                if stored is not None:
                    _refuse_if_different(stored, request)
                    return Submission(stored, replayed=True)
            self._orders[order.order_id] = order
            self._by_client_id[(account, order.client_order_id)] = order
            self._by_account.setdefault(account, []).append(order)
            book = self._books.get(order.symbol) or self._books.setdefault(
                order.symbol, LimitOrderBook(order.symbol)
            )
            trades = book.match(order, self._record_trade, now)
            return Submission(order, replayed=False, trades=trades)

    def cancel(self, account: str, order_id: str) -> Cancellation:
        """Cancel what is left of an open order; cancelling a cancelled order changes nothing."""
        with self._lock:
            order = self._orders.get(order_id)
            if order is None or order.account != account:
                return self._cancelled_elsewhere(account, order_id)
            if order.status == "cancelled":
                return Cancellation(order, replayed=True)
            if order.status == "filled":
                raise OrderNotCancellableError(
                    f"order {order_id} is already filled: there is nothing left to cancel"
                )
            now = self._clock()
            if self._ledger is not None:  # first, so that a failure leaves the order open
                self._ledger.store_cancel(replace(order, status="cancelled", updated_at=now))
            order.cancel(now)
            self._books[order.symbol].cancelled(order)
            return Cancellation(order, replayed=False)

    # ------------------------------------------------------------------ queries

    def order(self, account: str, order_id: str) -> OrderRecord:
        with self._lock:
            return self._owned(account, order_id)

    def orders(self, account: str) -> list[OrderRecord]:
        """The account's orders, oldest first."""
        with self._lock:
            return list(self._by_account.get(account, ()))

    def fills(self, account: str) -> list[Fill]:
        """The account's side of each of its trades, oldest first."""
        with self._lock:
            return list(self._fills.get(account, ()))

    def positions(self, account: str) -> list[Position]:
        """The account's positions, one per symbol it traded, by symbol."""
        with self._lock:
            return sorted(
                (p for (owner, _), p in self._positions.items() if owner == account),
                key=lambda position: position.symbol,
            )

    def depth(self, symbol: str) -> dict[str, list[tuple[Decimal, int]]]:
        with self._lock:
            book = self._books.get(symbol.upper())
            return book.depth() if book else {"bids": [], "asks": []}

    # ------------------------------------------------------------------ internals

    def _stored(self, account: str, client_order_id: str) -> OrderRecord | None:
        """What the ledger holds under this key, if there is a ledger."""
        return self._ledger.find(account, client_order_id) if self._ledger is not None else None

    def _cancelled_elsewhere(self, account: str, order_id: str) -> Cancellation:
        """A cancel of an order this book does not hold: a replay if the ledger says another
        version (or this one before a restart) cancelled it, else not found here."""
        stored = self._ledger.find_order(account, order_id) if self._ledger is not None else None
        if stored is None:
            raise _not_found(order_id)
        if stored.status == "cancelled":
            return Cancellation(stored, replayed=True)
        raise OrderNotFoundError(
            f"order {order_id} is not in the book of this version: it was accepted by another "
            "version (or before a restart), and only the book that holds it can cancel it"
        )

    def _owned(self, account: str, order_id: str) -> OrderRecord:
        order = self._orders.get(order_id)
        if order is None or order.account != account:  # another account's order is not found
            raise _not_found(order_id)
        return order

    def _record_trade(
        self, buy: OrderRecord, sell: OrderRecord, qty: int, price: Decimal, at: datetime
    ) -> Trade:
        """The book made a trade: number it, file it under both accounts, move positions."""
        self._trade_seq += 1
        trade = Trade(
            trade_id=f"trd-{self._tag}-{self._trade_seq:08d}",
            symbol=buy.symbol,
            qty=qty,
            price=price,
            buy=buy,
            sell=sell,
            executed_at=at,
        )
        for order in (buy, sell):
            self._fills.setdefault(order.account, []).append(Fill(trade, order))
            key = (order.account, order.symbol)
            position = self._positions.get(key) or self._positions.setdefault(
                key, Position(order.account, order.symbol)
            )
            position.apply(order.side, qty, price)
        return trade


def _not_found(order_id: str) -> OrderNotFoundError:
    return OrderNotFoundError(
        f"no order {order_id} for this account: list your orders with GET /api/orders"
    )


def _refuse_if_different(existing: OrderRecord, request: OrderRequest) -> None:
    differences = [
        f"{name} {getattr(existing, name)}, not {getattr(request, name)}"
        for name in ("symbol", "side", "qty", "limit_price")
        if getattr(existing, name) != getattr(request, name)
    ]
    if differences:
        raise IdempotencyConflictError(
            f"client_order_id '{request.client_order_id}' was already used by this account for "
            f"another order ({'; '.join(differences)}): use a new client_order_id for a new order"
        )
