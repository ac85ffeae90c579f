"""Cross-cutting request handling: request ids, metrics and request logs, API keys, faults."""
