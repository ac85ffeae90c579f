"""Fixtures for finance-trading: the app in process (ASGITransport) and as a real process.

The package is imported from apps/finance-trading/src, so the tests need no install.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

SRC = Path(__file__).resolve().parents[1] / "src"
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

from finance_trading.main import create_app  # noqa: E402
from finance_trading.settings import Settings  # noqa: E402

PACKAGE = "finance_trading"

InProcess = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def in_process() -> InProcess:
    """`async with in_process({"APP_...": ...}) as client`: a fresh app, lifespan run;
    `app=` serves an app the test built itself."""

    @asynccontextmanager
    async def serve(
        env: dict[str, str] | None = None, *, started: bool = True, app: FastAPI | None = None
    ) -> AsyncIterator[httpx.AsyncClient]:
        if app is None:
            app = create_app(Settings.from_env(env or {}))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            if not started:
                yield client
                return
            async with app.router.lifespan_context(app):
                yield client

    return serve


@dataclass
class AppProcess:
    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout_s: float = 15.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"app exited {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(f"{self.base_url}/healthz/ready", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"app not ready within {timeout_s} s:\n{self.log()}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def app_process(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], AppProcess]]:
    """Starts `python -m finance_trading --port <free>`; kills what it started."""
    started: list[AppProcess] = []

    def start(env: dict[str, str]) -> AppProcess:
        port = free_port()
        log_path = tmp_path / f"app-{port}.log"
        clean = {k: v for k, v in os.environ.items() if not k.startswith("APP_")}
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", PACKAGE, "--host", "127.0.0.1", "--port", str(port)],
                env={**clean, "PYTHONPATH": str(SRC), **env},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        handle = AppProcess(process, f"http://127.0.0.1:{port}", log_path)
        started.append(handle)
        return handle

    yield start
    for handle in started:
        if handle.process.poll() is None:
            handle.process.send_signal(signal.SIGKILL)
            handle.process.wait(timeout=5)
