"""GraphQL at /graphql over the same order service as REST: quotes, orders, trades, positions.

Business errors come back as GraphQL errors whose `extensions.code` is the REST error code
(PRICE_BAND, IDEMPOTENCY_CONFLICT, ...). The API-key middleware guards all of /graphql, so a
resolver always has an account.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from enum import Enum

import strawberry
from fastapi import Request
from fastapi.routing import APIWebSocketRoute
from graphql import GraphQLError
from pydantic import ValidationError
from strawberry.fastapi import BaseContext, GraphQLRouter
from strawberry.types import ExecutionContext

from finance_trading.models.trading import OrderRequest
from finance_trading.services.errors import TradingError
from finance_trading.services.orders import Fill, OrderService
from finance_trading.services.quotes import quote_for
from finance_trading.services.records import OrderRecord, Position

logger = logging.getLogger(__name__)


class GraphContext(BaseContext):
    def __init__(self, orders: OrderService, account: str) -> None:
        super().__init__()
        self.orders = orders
        self.account = account


Info = strawberry.Info[GraphContext, None]


@strawberry.enum
class Side(Enum):
    BUY = "buy"
    SELL = "sell"


@strawberry.enum
class OrderStatus(Enum):
    NEW = "new"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELLED = "cancelled"


@strawberry.type
class Quote:
    symbol: str
    bid: Decimal
    ask: Decimal
    currency: str


@strawberry.type
class Order:
    order_id: strawberry.ID
    client_order_id: str
    account: str
    symbol: str
    side: Side
    qty: int
    limit_price: Decimal
    status: OrderStatus
    filled_qty: int
    leaves_qty: int
    avg_fill_price: Decimal | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_record(cls, order: OrderRecord) -> Order:
        average = order.avg_fill_price
        return cls(
            order_id=strawberry.ID(order.order_id),
            client_order_id=order.client_order_id,
            account=order.account,
            symbol=order.symbol,
            side=Side(order.side),
            qty=order.qty,
            limit_price=order.limit_price,
            status=OrderStatus(order.status),
            filled_qty=order.filled_qty,
            leaves_qty=order.leaves_qty,
            avg_fill_price=None if average is None else average.quantize(Decimal("0.0001")),
            created_at=order.created_at,
            updated_at=order.updated_at,
        )


@strawberry.type
class Trade:
    """The account's side of one trade."""

    trade_id: strawberry.ID
    order_id: strawberry.ID
    symbol: str
    side: Side
    qty: int
    price: Decimal
    executed_at: datetime

    @classmethod
    def from_fill(cls, fill: Fill) -> Trade:
        return cls(
            trade_id=strawberry.ID(fill.trade.trade_id),
            order_id=strawberry.ID(fill.order.order_id),
            symbol=fill.trade.symbol,
            side=Side(fill.order.side),
            qty=fill.trade.qty,
            price=fill.trade.price,
            executed_at=fill.trade.executed_at,
        )


@strawberry.type(name="Position")
class PositionNode:
    symbol: str
    qty: int
    bought_qty: int
    sold_qty: int
    net_cash: Decimal

    @classmethod
    def from_record(cls, position: Position) -> PositionNode:
        return cls(
            symbol=position.symbol,
            qty=position.qty,
            bought_qty=position.bought_qty,
            sold_qty=position.sold_qty,
            net_cash=position.net_cash,
        )


@strawberry.type
class PriceLevel:
    price: Decimal
    qty: int


@strawberry.type
class OrderBook:
    symbol: str
    bids: list[PriceLevel]
    asks: list[PriceLevel]


@strawberry.input
class OrderInput:
    client_order_id: str
    symbol: str
    side: Side
    qty: int
    limit_price: Decimal


@strawberry.type
class OrderResult:
    order: Order
    replayed: bool  # true: the order existed already (a retried submit or cancel)


@strawberry.type
class Query:
    @strawberry.field(description="Public delayed market data (the key is still required here).")
    def quote(self, symbol: str) -> Quote:
        with _graphql_errors():
            quote = quote_for(symbol)
        return Quote(symbol=quote.symbol, bid=quote.bid, ask=quote.ask, currency=quote.currency)

    @strawberry.field
    def order(self, info: Info, order_id: strawberry.ID) -> Order:
        with _graphql_errors():
            return Order.from_record(info.context.orders.order(info.context.account, order_id))

    @strawberry.field
    def orders(self, info: Info) -> list[Order]:
        return [Order.from_record(o) for o in info.context.orders.orders(info.context.account)]

    @strawberry.field
    def trades(self, info: Info) -> list[Trade]:
        return [Trade.from_fill(f) for f in info.context.orders.fills(info.context.account)]

    @strawberry.field
    def positions(self, info: Info) -> list[PositionNode]:
        positions = info.context.orders.positions(info.context.account)
        return [PositionNode.from_record(p) for p in positions]

    @strawberry.field(description="Open quantity by price level, best first.")
    def book(self, info: Info, symbol: str) -> OrderBook:
        depth = info.context.orders.depth(symbol)
        return OrderBook(
            symbol=symbol.upper(),
            bids=[PriceLevel(price=price, qty=qty) for price, qty in depth["bids"]],
            asks=[PriceLevel(price=price, qty=qty) for price, qty in depth["asks"]],
        )


@strawberry.type
class Mutation:
    @strawberry.mutation(description="Idempotent per account on clientOrderId, as over REST.")
    def submit_order(self, info: Info, order: OrderInput) -> OrderResult:
        with _graphql_errors():
            request = OrderRequest(
                client_order_id=order.client_order_id,
                symbol=order.symbol,
                side=order.side.value,
                qty=order.qty,
                limit_price=order.limit_price,
            )
            submission = info.context.orders.submit(info.context.account, request)
        return OrderResult(order=Order.from_record(submission.order), replayed=submission.replayed)

    @strawberry.mutation(description="Idempotent: cancelling a cancelled order changes nothing.")
    def cancel_order(self, info: Info, order_id: strawberry.ID) -> OrderResult:
        with _graphql_errors():
            cancellation = info.context.orders.cancel(info.context.account, order_id)
        return OrderResult(
            order=Order.from_record(cancellation.order), replayed=cancellation.replayed
        )


@contextmanager
def _graphql_errors() -> Iterator[None]:
    """Turn business and validation errors into GraphQL errors carrying the REST code."""
    try:
        yield
    except TradingError as error:
        raise GraphQLError(error.message, extensions={"code": error.code}) from None
    except ValidationError as error:
        message = "; ".join(
            f"{'.'.join(str(part) for part in e['loc'])}: {e['msg']}" for e in error.errors()
        )
        raise GraphQLError(message, extensions={"code": "INVALID_REQUEST"}) from None


class TradingSchema(strawberry.Schema):
    """Logs a refused order as one info line, not as an error with a traceback."""

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        unexpected = []
        for error in errors:
            code = (error.extensions or {}).get("code")
            if code is None:
                unexpected.append(error)
            else:
                logger.info("graphql refused", extra={"fields": {"code": code, "why": str(error)}})
        super().process_errors(unexpected, execution_context)


schema = TradingSchema(query=Query, mutation=Mutation)


async def graphql_context(request: Request) -> GraphContext:
    return GraphContext(orders=request.app.state.orders, account=request.state.account)


def graphql_router() -> GraphQLRouter[GraphContext, None]:
    """Queries and mutations over HTTP POST (queries also over GET); no IDE, no WebSocket."""
    router: GraphQLRouter[GraphContext, None] = GraphQLRouter(
        schema,
        path="/graphql",  # on the route itself, not as an include prefix: metrics label routes
        context_getter=graphql_context,
        graphql_ide=None,
        subscription_protocols=(),
    )
    # Nothing subscribes, so drop the WebSocket route: every operation then passes the
    # HTTP middleware (API key, request id, metrics) and the drill faults.
    router.routes[:] = [r for r in router.routes if not isinstance(r, APIWebSocketRoute)]
    return router
