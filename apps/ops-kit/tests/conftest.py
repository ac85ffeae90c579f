"""Fixtures for the kit's own tests: the example app of ops_kit_example.py for the contract.
ops_kit is imported from apps/ops-kit/src (the checkout, not the installed copy): see
apps/conftest.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from ops_kit.testing import AppCommand, AppFactory, app_process, in_process  # noqa: E402, F401
from ops_kit_example import Settings, create_app  # noqa: E402


@pytest.fixture
def app_factory() -> AppFactory:
    return lambda env: create_app(Settings.from_env(env))


@pytest.fixture
def app_command() -> AppCommand:
    return AppCommand(package="ops_kit_example", src=TESTS)
