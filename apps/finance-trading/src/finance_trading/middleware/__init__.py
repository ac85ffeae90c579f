"""Cross-cutting request handling: metrics and request logs, and the drill faults."""
