"""pharma-manufacturing: a small batch-record API the zero-downtime engine deploys as a process."""

from importlib.metadata import PackageNotFoundError, version

APP_NAME = "pharma-manufacturing"

try:
    __version__ = version(APP_NAME)
except PackageNotFoundError:
    __version__ = "1.0.0"  # run from the source tree (PYTHONPATH=src): keep in step with pyproject
