"""Fixtures for finance-trading: the app in process (ASGITransport) and as a real process.

The package is imported from apps/finance-trading/src and ops_kit from apps/ops-kit/src (see
apps/conftest.py), so the tests need no install and always test the checkout. `in_process`
and `app_process` are ops_kit.testing's, given this app by `app_factory` and `app_command`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

from finance_trading.main import create_app  # noqa: E402
from finance_trading.settings import Settings  # noqa: E402
from ops_kit.testing import AppCommand, AppFactory, app_process, in_process  # noqa: E402, F401

PACKAGE = "finance_trading"


@pytest.fixture
def app_factory() -> AppFactory:
    return lambda env: create_app(Settings.from_env(env))


@pytest.fixture
def app_command() -> AppCommand:
    return AppCommand(package=PACKAGE, src=SRC)
