"""zdp/platforms."""
