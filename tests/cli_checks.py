"""Assertions shared by the CLI tests: what a user sees when something is wrong."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from temporalio.testing import WorkflowEnvironment
from typer.testing import Result

from tests.kit import Harness
from zdp.models import TASK_QUEUE


def assert_one_line_error(result: Result, contains: str, code: int = 1) -> None:
    """Exit `code`, nothing on stdout, exactly one `error: …` line on stderr, no traceback."""
    assert result.exit_code == code, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert contains in lines[0]
    assert "Traceback" not in result.output


ZDP = str(Path(sys.executable).parent / "zdp")


@dataclass
class Run:
    code: int
    out: str
    err: str


async def zdp(*args: str, env: dict[str, str], timeout: float = 60) -> Run:
    proc = await asyncio.create_subprocess_exec(
        ZDP,
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(), err.decode())


def one_clear_line(run: Run) -> str:
    """A user-facing error: exactly one line on stderr, prefixed, with no traceback."""
    lines = [line for line in run.err.splitlines() if line.strip()]
    assert "Traceback" not in run.err, run.err
    assert len(lines) == 1, run.err
    assert lines[0].startswith("error: "), run.err
    return lines[0]


@pytest.fixture
def cli_env(temporal_env: WorkflowEnvironment, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEMPORAL_")}
    env.update(
        TEMPORAL_ADDRESS=temporal_env.client.service_client.config.target_host,
        ZDP_HOME=str(tmp_path / ".zdp"),
        ZDP_USER="ci-bot",
        # Where the CLI finds its user's signing key: empty unless a test puts one there.
        ZDP_KEY_DIR=str(tmp_path / "keys"),
        COLUMNS="200",
        # The worker in this process runs with the test engine config; `zdp deploy` checks
        # requests against the same file before it starts anything.
        ZDP_CONFIG=str(Path(__file__).parent / "workflows" / "engine.yaml"),
    )
    return env


@pytest_asyncio.fixture
async def cli(kit: Harness, cli_env: dict[str, str], tmp_path: Path) -> AsyncIterator[Harness]:
    """A worker on the real task queue, and a signed release.json in tmp_path."""
    kit.task_queue = TASK_QUEUE
    (tmp_path / "release.dsse.json").write_text(kit.signer.release("2.0.0").model_dump_json())
    statement = json.loads(base64.b64decode(kit.signer.release("2.0.0").payload).decode())
    (tmp_path / "release.json").write_text(json.dumps(statement["predicate"]))
    async with kit.worker():
        yield kit


def flip_first(text: str) -> str:
    """`text` with its first character changed (always: a signature that already started with
    the replacement would come back untampered, one time in 64)."""
    return ("B" if text[0] == "A" else "A") + text[1:]
