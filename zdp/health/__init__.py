"""zdp/health."""
