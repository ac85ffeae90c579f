"""A limit order book for one symbol, matching by price-time priority.

An incoming order trades against the best opposite resting orders while it crosses (a buy at
or above the best ask, a sell at or below the best bid), each trade at the resting order's
price, oldest first at a price level; what is left rests in the book. Cancelled orders are
dropped lazily when they reach the top of their side, and both sides are compacted when
most of a side is such leftovers.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal

from finance_trading.services.records import OrderRecord, Trade

# A heap entry: (sort key, arrival seq, order). Bids sort by -price, asks by price; the
# unique seq breaks ties by time and keeps the orders themselves from being compared.
_Entry = tuple[Decimal, int, OrderRecord]
TradeFactory = Callable[[OrderRecord, OrderRecord, int, Decimal, datetime], Trade]


class LimitOrderBook:
    """Resting orders of one symbol; the order service calls it under its lock."""

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self._bids: list[_Entry] = []
        self._asks: list[_Entry] = []
        self._cancelled = 0

    def match(self, incoming: OrderRecord, make_trade: TradeFactory, at: datetime) -> list[Trade]:
        """Trade `incoming` against the opposite side, rest the remainder, return the trades."""
        buying = incoming.side == "buy"
        opposite = self._asks if buying else self._bids
        trades: list[Trade] = []
        while incoming.leaves_qty and opposite:
            resting = opposite[0][2]
            if not resting.is_open:  # cancelled while resting
                heapq.heappop(opposite)
                self._cancelled -= 1
                continue
            price = resting.limit_price
            if (incoming.limit_price < price) if buying else (incoming.limit_price > price):
                break
            qty = min(incoming.leaves_qty, resting.leaves_qty)
            incoming.fill(qty, price, at)
            resting.fill(qty, price, at)
            buy, sell = (incoming, resting) if buying else (resting, incoming)
            trades.append(make_trade(buy, sell, qty, price, at))
            if not resting.leaves_qty:
                heapq.heappop(opposite)
        if incoming.leaves_qty:
            self._rest(incoming)
        return trades

    def cancelled(self, order: OrderRecord) -> None:
        """`order` (resting here) was cancelled: it is skipped from now on."""
        self._cancelled += 1
        if self._cancelled > 64 and self._cancelled * 2 > len(self._bids) + len(self._asks):
            self._compact()

    def depth(self) -> dict[str, list[tuple[Decimal, int]]]:
        """Open quantity by price level, best first: {"bids": [(price, qty)], "asks": [...]}."""
        return {"bids": _levels(self._bids), "asks": _levels(self._asks)}

    def _rest(self, order: OrderRecord) -> None:
        if order.side == "buy":
            heapq.heappush(self._bids, (-order.limit_price, order.seq, order))
        else:
            heapq.heappush(self._asks, (order.limit_price, order.seq, order))

    def _compact(self) -> None:
        self._bids = [entry for entry in self._bids if entry[2].is_open]
        self._asks = [entry for entry in self._asks if entry[2].is_open]
        heapq.heapify(self._bids)
        heapq.heapify(self._asks)
        self._cancelled = 0


def _levels(side: list[_Entry]) -> list[tuple[Decimal, int]]:
    totals: dict[Decimal, int] = {}
    for _, _, order in sorted(side):
        if order.is_open:
            totals[order.limit_price] = totals.get(order.limit_price, 0) + order.leaves_qty
    return list(totals.items())
