"""Business logic of the batch-record API, free of HTTP."""
