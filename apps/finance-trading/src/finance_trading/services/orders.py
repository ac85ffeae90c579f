"""The order service both APIs call: idempotent submit and cancel, queries, per-account state.

Submission is idempotent per account on the client order id (FIX ClOrdID): a retry with the
same fields returns the original order, a reuse with other fields is refused. That makes the
proxy's retries of a submit safe. Everything is in memory and lost on restart.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from finance_trading.models.trading import OrderRequest
from finance_trading.services.book import LimitOrderBook
from finance_trading.services.errors import (
    IdempotencyConflictError,
    OrderNotCancellableError,
    OrderNotFoundError,
)
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
    replayed: bool  # True: the order was already cancelled


@dataclass(frozen=True, slots=True)
class Fill:
    """One side of a trade, as the account that owns `order` sees it."""

    trade: Trade
    order: OrderRecord


class OrderService:
    """Orders, books, trades and positions of every account in this process.

    REST handlers and GraphQL resolvers call it from the event loop, where one call runs to
    its end before another starts; the lock keeps that true for a caller on a thread.
    """

    def __init__(self, limits: RiskLimits, clock: Clock = lambda: datetime.now(UTC)) -> None:
        self.limits = limits
        self._clock = clock
        self._lock = threading.Lock()
        # Ids carry a per-process tag: a stable and a canary each number their own orders.
        self._tag = secrets.token_hex(3)
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
            if existing is not None:
                _refuse_if_different(existing, request)
                return Submission(existing, replayed=True)
            check_order(request, self.limits)
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
            order = self._owned(account, order_id)
            if order.status == "cancelled":
                return Cancellation(order, replayed=True)
            if order.status == "filled":
                raise OrderNotCancellableError(
                    f"order {order_id} is already filled: there is nothing left to cancel"
                )
            order.cancel(self._clock())
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

    def _owned(self, account: str, order_id: str) -> OrderRecord:
        order = self._orders.get(order_id)
        if order is None or order.account != account:  # another account's order is not found
            raise OrderNotFoundError(
                f"no order {order_id} for this account: list your orders with GET /api/orders"
            )
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
