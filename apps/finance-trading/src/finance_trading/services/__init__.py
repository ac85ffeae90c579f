"""Business logic of the trading API, free of HTTP."""
