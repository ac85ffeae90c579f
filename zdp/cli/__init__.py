"""zdp/cli."""
