"""In-memory order book, idempotent on `client_order_id` so that retried submits are safe."""

from __future__ import annotations

from datetime import UTC, datetime

from finance_trading.models.trading import Order, OrderRequest
from finance_trading.services.quotes import quote_for


class IdempotencyConflictError(ValueError):
    def __init__(self, client_order_id: str) -> None:
        super().__init__(
            f"client_order_id '{client_order_id}' was already used for a different order: "
            "use a new client_order_id for a new order"
        )


class OrderBook:
    """Accepted orders by client_order_id; cleared on restart (no storage yet).

    `submit` never awaits, so on the event loop two submits cannot interleave.
    """

    def __init__(self) -> None:
        self._by_client_id: dict[str, Order] = {}

    def submit(self, request: OrderRequest) -> tuple[Order, bool]:
        """Accept the order, or return the one accepted before; the flag says it is a replay."""
        existing = self._by_client_id.get(request.client_order_id)
        if existing is not None:
            submitted = existing.model_dump(include=set(OrderRequest.model_fields))
            if OrderRequest.model_validate(submitted) != request:
                raise IdempotencyConflictError(request.client_order_id)
            return existing, True
        quote_for(request.symbol)  # only quoted symbols trade: raises UnknownSymbolError
        order = Order(
            **request.model_dump(),
            order_id=f"ord-{len(self._by_client_id) + 1:08d}",
            accepted_at=datetime.now(UTC),
        )
        self._by_client_id[request.client_order_id] = order
        return order, False
