"""zero-downtime-pipeline: the Temporal-free core of the deployment engine."""

__version__ = "0.1.0"
