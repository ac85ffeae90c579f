"""Request and response models of the REST API (the GraphQL types mirror them)."""
