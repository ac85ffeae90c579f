"""The local runtime reads a slot's process counters for the gate (ProcessStats.cpu_times):
only for a process of its own, and the state the gate tells a hang from a busy machine by."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from zdp.platforms.base import ProcessStats
from zdp.platforms.layout import runtime_dir
from zdp.platforms.local.runtime import LocalRuntime, _proc_start

PORT = 1  # never bound: only the command line names it, as the runtime's records do


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A process that looks like an app the runtime started (`-m <package> --port <port>`)."""
    code = "import time\nwhile True: time.sleep(0.01)"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "-m", "finance_trading", "--port", str(PORT)]
    )
    yield proc
    proc.kill()
    proc.wait(10)


def _record(home: Path, pid: int, package: str = "finance_trading") -> None:
    path = runtime_dir(home) / "finance-trading" / "canary.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + 10
    while _proc_start(pid) is None and time.monotonic() < deadline:
        time.sleep(0.01)
    record = {
        "app": "finance-trading", "slot": "canary", "package": package, "pid": pid,
        "port": PORT, "version": "2.0.0", "digest": "sha256:x", "proc_start": _proc_start(pid),
    }  # fmt: skip
    path.write_text(json.dumps(record))


def _wait_for_state(runtime: LocalRuntime, state: str) -> str | None:
    """The state read once it is `state` (a signal takes effect asynchronously), else the last."""
    deadline = time.monotonic() + 10
    seen = None
    while time.monotonic() < deadline:
        times = runtime.cpu_times("finance-trading", "canary")
        seen = times.state if times else None
        if seen == state:
            return seen
        time.sleep(0.01)
    return seen


def test_the_local_runtime_reads_its_slots_process(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    runtime = LocalRuntime(home=tmp_path)
    assert isinstance(runtime, ProcessStats)
    assert runtime.cpu_times("finance-trading", "canary") is None  # nothing recorded
    _record(tmp_path, sleeper.pid)
    times = runtime.cpu_times("finance-trading", "canary")
    assert times is not None
    assert times.waiting_ms >= 0 and times.running_ms >= 0 and times.process_cpu_ms >= 0
    os.kill(sleeper.pid, signal.SIGSTOP)
    try:
        assert _wait_for_state(runtime, "T") == "T"  # stopped: what the gate calls a hang
    finally:
        os.kill(sleeper.pid, signal.SIGCONT)


def test_a_process_that_is_not_the_recorded_app_is_not_read(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    _record(tmp_path, sleeper.pid, package="pharma_manufacturing")  # not what it runs
    assert LocalRuntime(home=tmp_path).cpu_times("finance-trading", "canary") is None
