"""finance-trading: a small trading API that the zero-downtime engine deploys as an OS process."""

from importlib.metadata import PackageNotFoundError, version

APP_NAME = "finance-trading"

try:
    __version__ = version(APP_NAME)
except PackageNotFoundError:
    __version__ = "1.0.0"  # run from the source tree (PYTHONPATH=src): keep in step with pyproject
