"""finance-trading matching, on the order service itself: price-time priority, partial fills."""

from __future__ import annotations

from decimal import Decimal

from finance_trading.models.trading import OrderRequest
from finance_trading.services.orders import OrderService
from finance_trading.services.records import OrderRecord
from finance_trading.services.risk import RiskLimits

LIMITS = RiskLimits(
    max_order_qty=1000, max_order_notional=Decimal(10**7), price_band_pct=Decimal(50)
)


def submit(
    service: OrderService, account: str, side: str, qty: int, price: str, symbol: str = "AAPL"
) -> OrderRecord:
    client_order_id = f"{account}-{len(service.orders(account)) + 1}"
    request = OrderRequest(
        client_order_id=client_order_id,
        symbol=symbol,
        side=side,  # type: ignore[arg-type]
        qty=qty,
        limit_price=Decimal(price),
    )
    return service.submit(account, request).order


def test_orders_that_do_not_cross_rest_in_the_book() -> None:
    service = OrderService(LIMITS)
    bid = submit(service, "a", "buy", 10, "189")
    ask = submit(service, "b", "sell", 10, "191")
    assert (bid.status, ask.status) == ("new", "new")
    assert service.depth("AAPL") == {
        "bids": [(Decimal(189), 10)],
        "asks": [(Decimal(191), 10)],
    }


def test_a_crossing_buy_trades_at_the_resting_price() -> None:
    service = OrderService(LIMITS)
    submit(service, "seller", "sell", 10, "190")
    buy = submit(service, "buyer", "buy", 10, "195")
    assert buy.status == "filled"
    assert buy.avg_fill_price == Decimal(190)
    [fill] = service.fills("buyer")
    assert (fill.trade.price, fill.trade.qty) == (Decimal(190), 10)


def test_a_crossing_sell_trades_at_the_resting_bid() -> None:
    service = OrderService(LIMITS)
    submit(service, "buyer", "buy", 10, "192")
    sell = submit(service, "seller", "sell", 10, "188")
    assert sell.avg_fill_price == Decimal(192)


def test_partial_fills_leave_the_rest_open() -> None:
    service = OrderService(LIMITS)
    resting = submit(service, "seller", "sell", 10, "190")
    first = submit(service, "buyer", "buy", 4, "190")
    assert (first.status, resting.status) == ("filled", "partially_filled")
    assert (resting.filled_qty, resting.leaves_qty) == (4, 6)
    big = submit(service, "buyer", "buy", 10, "190")
    assert (resting.status, big.status) == ("filled", "partially_filled")
    assert (big.filled_qty, big.leaves_qty) == (6, 4)
    assert service.depth("AAPL") == {"bids": [(Decimal(190), 4)], "asks": []}


def test_better_price_first_then_earlier_order_first() -> None:
    service = OrderService(LIMITS)
    early_at_191 = submit(service, "s1", "sell", 5, "191")
    at_190 = submit(service, "s2", "sell", 5, "190")
    late_at_191 = submit(service, "s3", "sell", 5, "191")
    buy = submit(service, "buyer", "buy", 12, "191")
    assert [f.trade.sell.order_id for f in service.fills("buyer")] == [
        at_190.order_id,
        early_at_191.order_id,
        late_at_191.order_id,
    ]
    assert [f.trade.qty for f in service.fills("buyer")] == [5, 5, 2]
    assert buy.avg_fill_price == (5 * Decimal(190) + 7 * Decimal(191)) / 12
    assert (late_at_191.filled_qty, late_at_191.leaves_qty) == (2, 3)


def test_a_buy_stops_at_the_first_ask_above_its_limit() -> None:
    service = OrderService(LIMITS)
    submit(service, "s", "sell", 5, "190")
    submit(service, "s", "sell", 5, "192")
    buy = submit(service, "b", "buy", 10, "191")
    assert (buy.filled_qty, buy.status) == (5, "partially_filled")
    assert service.depth("AAPL") == {"bids": [(Decimal(191), 5)], "asks": [(Decimal(192), 5)]}


def test_books_are_per_symbol() -> None:
    service = OrderService(LIMITS)
    submit(service, "s", "sell", 5, "190", symbol="AAPL")
    buy = submit(service, "b", "buy", 5, "190", symbol="AMZN")
    assert buy.status == "new"


def test_cancelled_orders_never_trade_and_leave_the_book() -> None:
    service = OrderService(LIMITS)
    first = submit(service, "s", "sell", 5, "190")
    second = submit(service, "s", "sell", 5, "190")
    service.cancel("s", first.order_id)
    buy = submit(service, "b", "buy", 5, "190")
    assert (first.status, first.filled_qty) == ("cancelled", 0)
    assert second.status == "filled"
    assert buy.status == "filled"
    assert service.depth("AAPL") == {"bids": [], "asks": []}


def test_many_cancellations_are_compacted_away() -> None:
    service = OrderService(LIMITS)
    orders = [submit(service, "s", "sell", 1, "190") for _ in range(200)]
    for resting in orders[:-1]:
        service.cancel("s", resting.order_id)
    book = service._books["AAPL"]
    assert len(book._asks) < 100  # compacted, not 200 entries
    buy = submit(service, "b", "buy", 1, "190")
    assert buy.status == "filled"
    assert orders[-1].status == "filled"


def test_positions_follow_the_fills_of_each_account() -> None:
    service = OrderService(LIMITS)
    submit(service, "alice", "buy", 10, "190")
    submit(service, "bob", "sell", 6, "189")
    submit(service, "carol", "sell", 4, "190", symbol="AAPL")
    submit(service, "alice", "sell", 3, "180")  # no bid left at or above 180
    [alice] = service.positions("alice")
    [bob] = service.positions("bob")
    [carol] = service.positions("carol")
    assert (alice.qty, alice.bought_qty, alice.net_cash) == (10, 10, Decimal(-1900))
    assert (bob.qty, bob.sold_qty, bob.net_cash) == (-6, 6, Decimal(1140))
    assert (carol.qty, carol.net_cash) == (-4, Decimal(760))
    assert service.positions("nobody") == []


def test_a_self_match_nets_to_a_flat_position() -> None:
    service = OrderService(LIMITS)
    submit(service, "a", "sell", 5, "190")
    submit(service, "a", "buy", 5, "190")
    [position] = service.positions("a")
    assert (position.qty, position.bought_qty, position.sold_qty) == (0, 5, 5)
    assert position.net_cash == 0
