"""Business logic of the trading API, free of HTTP: quotes, risk checks, the order book, orders."""
