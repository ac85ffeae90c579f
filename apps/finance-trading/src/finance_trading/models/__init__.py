"""Request and response models of the trading API."""
