"""Fixtures for pharma-manufacturing: the app in process (ASGITransport) and as a real process.

The package is imported from apps/pharma-manufacturing/src and ops_kit from apps/ops-kit/src
(apps/conftest.py), so the tests need no install and always test the checkout. `in_process`
and `app_process` are ops_kit.testing's, given this app by `app_factory` and `app_command`.
Each test gets its own data folder (`data_dir`), so its own SQLite file, migrated and seeded
at start.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

from ops_kit.testing import AppCommand, AppFactory, app_process, in_process  # noqa: E402, F401
from pharma_manufacturing.main import create_app  # noqa: E402
from pharma_manufacturing.settings import Settings  # noqa: E402

PACKAGE = "pharma_manufacturing"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """This test's APP_DATA_DIR: the SQLite file is `data_dir / "pharma-manufacturing.db"`."""
    folder = tmp_path / "data"
    folder.mkdir(exist_ok=True)
    return folder


@pytest.fixture
def app_factory(data_dir: Path) -> AppFactory:
    """A fresh app; APP_ENV is local and APP_DATA_DIR is `data_dir` unless `env` says otherwise."""
    return lambda env: create_app(Settings.from_env({"APP_DATA_DIR": str(data_dir), **env}))


@pytest.fixture
def app_command(tmp_path: Path) -> AppCommand:
    """Every process of one test shares one APP_DATA_DIR, as the versions of an app do under
    the engine; a test's `env` may override it."""
    data = tmp_path / "process-data"
    data.mkdir(exist_ok=True)
    return AppCommand(package=PACKAGE, src=SRC, env={"APP_DATA_DIR": str(data)})
