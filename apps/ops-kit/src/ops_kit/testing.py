"""Test fixtures and the operations contract, for an app's own test suite (pytest, httpx).

In the app's `tests/conftest.py`, define two fixtures and import the kit's:

    from ops_kit.testing import AppCommand, app_process, in_process  # noqa: F401 (fixtures)

    @pytest.fixture
    def app_factory() -> AppFactory:          # env -> a fresh app
        return lambda env: create_app(Settings.from_env(env))

    @pytest.fixture
    def app_command() -> AppCommand:           # how `python -m <pkg>` is started
        return AppCommand(package="my_app", src=SRC)

- `in_process`: `async with in_process({"APP_...": ...}) as client`: a fresh app served
  through httpx's ASGITransport, its lifespan run (`started=False`: not run; `app=`: an app the
  test built itself).
- `app_process`: `app_process({"APP_...": ...})` starts the app as a real process on a free
  port (`AppProcess`), killed when the test ends.

Then a test module with `class TestOperations(OpsContract)` (setting `APP`, `API_PATH`,
`API_ROUTE` and `drill_headers`) runs the kit's contract against the app: health, version,
metrics, drill faults, readiness drills, the SIGTERM drain.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

import ops_kit

InProcess = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]
AppFactory = Callable[[dict[str, str]], FastAPI]

KIT_PATH = Path(ops_kit.__file__).resolve().parents[1]  # where ops_kit was imported from


@pytest.fixture
def in_process(app_factory: AppFactory) -> InProcess:
    """`async with in_process({"APP_...": ...}) as client`: a fresh app, lifespan run;
    `app=` serves an app the test built itself."""

    @asynccontextmanager
    async def serve(
        env: dict[str, str] | None = None, *, started: bool = True, app: FastAPI | None = None
    ) -> AsyncIterator[httpx.AsyncClient]:
        if app is None:
            app = app_factory(env or {})
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

    def log_lines(self) -> list[dict[str, Any]]:
        """The JSON lines of the log (anything else, such as a traceback, left out)."""
        return [json.loads(line) for line in self.log().splitlines() if line.startswith("{")]

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

    def logged_paths(self, until: list[str]) -> list[str]:
        """The paths of the request log lines, once `until` are logged (or after 10 s)."""
        deadline = time.monotonic() + 10  # a request's line is written just after its answer
        while True:
            lines = self.log_lines()
            paths = [line["path"] for line in lines if line.get("msg") == "request"]
            if paths == until or time.monotonic() > deadline:
                return paths
            time.sleep(0.05)


StartApp = Callable[[dict[str, str]], AppProcess]


@dataclass(frozen=True)
class AppCommand:
    """How `app_process` starts the app: `python -m <package>` with `src` (and the folder
    ops_kit came from) on PYTHONPATH, `env` under the test's own variables."""

    package: str
    src: Path
    env: Mapping[str, str] = field(default_factory=dict)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def app_process(app_command: AppCommand, tmp_path: Path) -> Iterator[StartApp]:
    """Starts `python -m <package> --port <free>`; kills what it started. The test's `env`
    wins, PYTHONPATH too (a test that starts an unpacked wheel)."""
    started: list[AppProcess] = []

    def start(env: dict[str, str]) -> AppProcess:
        port = free_port()
        log_path = tmp_path / f"app-{port}.log"
        clean = {k: v for k, v in os.environ.items() if not k.startswith("APP_")}
        path = os.pathsep.join([str(app_command.src), str(KIT_PATH)])
        argv = ["-m", app_command.package, "--host", "127.0.0.1", "--port", str(port)]
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, *argv],
                env={**clean, "PYTHONPATH": path, **app_command.env, **env},
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


async def readiness_until(
    client: httpx.AsyncClient, accept: Callable[[httpx.Response], bool], timeout_s: float = 15.0
) -> httpx.Response:
    """Probe `/healthz/ready` until `accept(answer)` or `timeout_s` passes; the last answer.

    The check's verdict is refreshed in the background about every 0.5 s, so a change shows
    within about a second; the long deadline is for a machine whose cores are all busy.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        answer = await client.get("/healthz/ready")
        if accept(answer) or time.monotonic() > deadline:
            return answer
        await asyncio.sleep(0.05)


def is_ready(answer: httpx.Response) -> bool:
    return answer.status_code == 200


def is_not_ready(answer: httpx.Response) -> bool:
    return answer.status_code == 503 and answer.json().get("status") == "not_ready"


async def probe_while_checking(
    client: httpx.AsyncClient, checks: list[int], probes: int = 200
) -> None:
    """Send `probes` concurrent readiness probes to a started app whose check appends its
    thread's ident to `checks`; then wait until the refresher checked again. Asserts that every
    probe answered 200 and that no probe ran the check (it runs in refresher threads only)."""
    loop_thread = threading.get_ident()  # where the app serves requests
    answers = await asyncio.gather(*(client.get("/healthz/ready") for _ in range(probes)))
    while_probing = list(checks)
    deadline = time.monotonic() + 15
    while len(checks) <= len(while_probing) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert {answer.status_code for answer in answers} == {200}
    assert loop_thread not in while_probing  # refresher threads only, never a probe
    assert len(checks) > len(while_probing), "the refresher never ran again"


def build_wheel(folder: Path, out: Path) -> Path:
    """`pip wheel --no-deps --no-build-isolation` of a copy of `folder` (as the engine builds
    an app's wheel), so that a stale build/ in the checkout cannot add or hide a file and
    concurrent builds do not share one build/ folder. Answers the wheel."""
    source = out / "source" / folder.name
    shutil.copytree(
        folder,
        source,
        ignore=shutil.ignore_patterns(
            "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", "tests"
        ),
    )
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--no-index", "-q", "-w", str(out / "dist"), str(source)],
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    [built] = (out / "dist").glob("*.whl")
    return built


@contextmanager
def json_log_lines(logger_name: str) -> Iterator[list[dict[str, Any]]]:
    """The JSON lines (ops_kit.logs' format) logged on `logger_name` inside the block, parsed
    when it ends."""
    from ops_kit.logs import JsonFormatter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    lines: list[dict[str, Any]] = []
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        lines.extend(json.loads(line) for line in stream.getvalue().splitlines())


def refresher_tasks() -> list[asyncio.Task[Any]]:
    """The readiness refreshers still running (none once an app has stopped)."""
    return [task for task in asyncio.all_tasks() if task.get_name() == "readiness-refresh"]


DRILL = {"APP_DRILL_ENDPOINT": "1"}
BREAK_IT = {"error_rate": 1.0, "latency_ms": 0, "ready_fail": True}


class OpsContract:
    """What the engine relies on from any app, as tests; a subclass named Test... runs them.

    Set `APP` (the name /version reports), `VERSION` (the package's), `API_PATH` (a GET of
    the business API that answers 200 with no credential in APP_ENV=local), `API_ROUTE` (its
    route template, the `path` label of the metrics) and `drill_headers` (the credential
    POST /drill/faults takes). Needs the fixtures `in_process`, `app_factory`, `app_process`.
    """

    APP: str
    VERSION: str = "1.0.0"
    API_PATH: str
    API_ROUTE: str

    def drill_headers(self) -> dict[str, str]:
        raise NotImplementedError

    async def test_health_version_and_metrics(self, in_process: InProcess) -> None:
        env = {"APP_VERSION": "2.0.0", "APP_SLOT": "green"}
        async with in_process(env) as client:
            assert (await client.get("/healthz/live")).json() == {"status": "live"}
            ready = await client.get("/healthz/ready")
            assert (ready.status_code, ready.json()) == (200, {"status": "ready"})
            assert (await client.get("/version")).json() == {
                "app": self.APP,
                "version": "2.0.0",
                "slot": "green",
            }
            await client.get(self.API_PATH)
            metrics = await client.get("/metrics")
        assert metrics.headers["content-type"].startswith("text/plain")
        assert (
            f'http_requests_total{{method="GET",path="{self.API_ROUTE}",status="200"}} 1.0'
            in metrics.text
        )
        assert 'http_request_duration_seconds_count{method="GET",path="/healthz/live"} 1.0' in (
            metrics.text
        )

    async def test_version_defaults_to_package_version_and_no_slot(
        self, in_process: InProcess
    ) -> None:
        async with in_process() as client:
            assert (await client.get("/version")).json() == {
                "app": self.APP,
                "version": self.VERSION,
                "slot": None,
            }

    async def test_ready_is_starting_before_startup(self, in_process: InProcess) -> None:
        async with in_process(started=False) as client:
            ready = await client.get("/healthz/ready")
            assert (ready.status_code, ready.json()) == (503, {"status": "starting"})
            assert (await client.get("/healthz/live")).status_code == 200

    @pytest.mark.parametrize("rate", ["1", "1.0"])
    async def test_error_rate_one_fails_api_but_not_health(
        self, in_process: InProcess, rate: str
    ) -> None:
        async with in_process({"APP_FAULT_ERROR_RATE": rate}) as client:
            api = [(await client.get(self.API_PATH)).status_code for _ in range(5)]
            health = [
                (await client.get(path)).status_code
                for path in ("/healthz/live", "/healthz/ready", "/version", "/metrics")
            ]
            metrics = (await client.get("/metrics")).text
        assert api == [503] * 5
        assert health == [200] * 4
        assert f'path="{self.API_ROUTE}",status="503"}} 5.0' in metrics

    async def test_error_rate_half_fails_exactly_half_of_ten(self, in_process: InProcess) -> None:
        async with in_process({"APP_FAULT_ERROR_RATE": "0.5"}) as client:
            statuses = [(await client.get(self.API_PATH)).status_code for _ in range(10)]
        assert statuses.count(503) == 5
        assert statuses.count(200) == 5

    async def test_latency_fault_delays_api_only(self, in_process: InProcess) -> None:
        async with in_process({"APP_FAULT_LATENCY_MS": "1000"}) as client:
            started = time.perf_counter()
            assert (await client.get(self.API_PATH)).status_code == 200
            api_s = time.perf_counter() - started
            started = time.perf_counter()
            assert (await client.get("/healthz/ready")).status_code == 200
            health_s = time.perf_counter() - started
        assert api_s >= 1.0
        assert health_s < 1.0  # not delayed (generous: shared 2-core box)

    async def test_ready_delay_keeps_readiness_starting(self, in_process: InProcess) -> None:
        async with in_process({"APP_FAULT_READY_DELAY_S": "0.4"}) as client:
            early = await client.get("/healthz/ready")
            assert (await client.get("/healthz/live")).status_code == 200
            await asyncio.sleep(0.5)
            late = await client.get("/healthz/ready")
        assert (early.status_code, early.json()) == (503, {"status": "starting"})
        assert (late.status_code, late.json()) == (200, {"status": "ready"})

    async def test_draining_shows_at_once(
        self, in_process: InProcess, app_factory: AppFactory
    ) -> None:
        app = app_factory({})
        async with in_process(app=app) as client:
            before = await client.get("/healthz/ready")
            app.state.lifecycle.start_draining()  # what SIGTERM does
            draining = await client.get("/healthz/ready")
        assert before.status_code == 200
        assert (draining.status_code, draining.json()) == (503, {"status": "draining"})
        assert not refresher_tasks(), "the readiness refresher outlived the app"

    @pytest.mark.parametrize("flag", ["1", "true"])
    def test_crash_on_start_exits_with_code_3(self, app_process: StartApp, flag: str) -> None:
        app = app_process({"APP_FAULT_CRASH_ON_START": flag})
        assert app.process.wait(timeout=30) == 3, app.log()
        assert "injected fault APP_FAULT_CRASH_ON_START" in app.log()

    def test_sigterm_drains_then_exits_zero(self, app_process: StartApp) -> None:
        app = app_process({"APP_FAULT_LATENCY_MS": "1500", "APP_DRAIN_DELAY_S": "0.5"})
        app.wait_ready()
        in_flight: dict[str, httpx.Response] = {}
        slow = threading.Thread(
            target=lambda: in_flight.update(
                response=httpx.get(f"{app.base_url}{self.API_PATH}", timeout=10)
            )
        )
        slow.start()
        time.sleep(0.3)  # the slow request is now being served

        app.process.send_signal(signal.SIGTERM)
        try:
            ready = httpx.get(f"{app.base_url}/healthz/ready", timeout=2)
            assert (ready.status_code, ready.json()) == (503, {"status": "draining"})
        except httpx.TransportError:
            pass  # the listener already closed: the proxy sees that as not ready too

        slow.join(timeout=10)
        assert not slow.is_alive(), "the in-flight request did not finish"
        assert in_flight["response"].status_code == 200  # it outlived the 0.5 s drain delay
        assert app.process.wait(timeout=10) == 0, app.log()
        lines = [json.loads(line) for line in app.log().splitlines() if line.strip()]
        assert {"ts", "level", "msg"} <= lines[0].keys()
        assert any(line["msg"] == "draining" for line in lines)

    @pytest.mark.parametrize("body", [{"error_rate": 1.0}, BREAK_IT])
    async def test_drill_endpoint_is_off_unless_enabled(
        self, in_process: InProcess, body: dict[str, Any]
    ) -> None:
        async with in_process({}) as client:
            answer = await client.post("/drill/faults", json=body, headers=self.drill_headers())
            ready = await client.get("/healthz/ready")
            api = await client.get(self.API_PATH)
        assert answer.status_code == 404
        assert (ready.status_code, api.status_code) == (200, 200)

    async def test_drill_endpoint_changes_faults_of_a_running_process(
        self, in_process: InProcess
    ) -> None:
        drill = self.drill_headers()
        async with in_process(DRILL) as client:
            assert (await client.get(self.API_PATH)).status_code == 200
            set_ = await client.post(
                "/drill/faults", json={"error_rate": 1.0, "latency_ms": 0}, headers=drill
            )
            assert set_.status_code == 200
            assert (await client.get(self.API_PATH)).status_code == 503
            assert (await client.get("/healthz/ready")).status_code == 200  # health unaffected
            bad = await client.post("/drill/faults", json={"error_rate": 2}, headers=drill)
            assert bad.status_code == 422
            await client.post("/drill/faults", json={"error_rate": 0}, headers=drill)
            assert (await client.get(self.API_PATH)).status_code == 200

    async def test_drill_ready_fail_fails_readiness_only_and_toggles_back(
        self, in_process: InProcess
    ) -> None:
        drill = self.drill_headers()
        async with in_process(DRILL) as client:
            on = await client.post("/drill/faults", json={"ready_fail": True}, headers=drill)
            failing = await client.get("/healthz/ready")
            api = await client.get(self.API_PATH)
            live = await client.get("/healthz/live")
            off = await client.post("/drill/faults", json={"ready_fail": False}, headers=drill)
            back = await client.get("/healthz/ready")
        assert (on.status_code, on.json()) == (
            200,
            {"error_rate": 0.0, "latency_ms": 0, "ready_fail": True},
        )
        assert (failing.status_code, failing.json()) == (
            503,
            {"status": "not_ready", "reason": "drill: readiness failing"},
        )
        assert (api.status_code, live.status_code) == (200, 200)  # the API keeps answering
        assert off.json()["ready_fail"] is False
        assert (back.status_code, back.json()) == (200, {"status": "ready"})

    async def test_draining_wins_over_the_ready_fail_drill(
        self, in_process: InProcess, app_factory: AppFactory
    ) -> None:
        app = app_factory(DRILL)
        async with in_process(app=app) as client:
            await client.post(
                "/drill/faults", json={"ready_fail": True}, headers=self.drill_headers()
            )
            app.state.lifecycle.start_draining()
            ready = await client.get("/healthz/ready")
        assert ready.json() == {"status": "draining"}

    @pytest.mark.parametrize("value", [1, "false", None])
    async def test_drill_ready_fail_takes_booleans_only(
        self, in_process: InProcess, value: object
    ) -> None:
        async with in_process(DRILL) as client:
            refused = await client.post(
                "/drill/faults", json={"ready_fail": value}, headers=self.drill_headers()
            )
            ready = await client.get("/healthz/ready")
        assert refused.status_code == 422
        assert ready.status_code == 200

    def test_a_real_process_serves_the_drill_and_does_not_log_probes(
        self, app_process: StartApp
    ) -> None:
        drill = self.drill_headers()
        app = app_process(DRILL)
        app.wait_ready()
        set_ = httpx.post(
            f"{app.base_url}/drill/faults", json={"ready_fail": True}, headers=drill, timeout=5
        )
        failing = httpx.get(f"{app.base_url}/healthz/ready", timeout=5)
        httpx.post(f"{app.base_url}/drill/faults", json={}, headers=drill, timeout=5)
        app.wait_ready()
        assert set_.json()["ready_fail"] is True
        assert failing.json() == {"status": "not_ready", "reason": "drill: readiness failing"}
        assert app.logged_paths(until=["/drill/faults"] * 2) == ["/drill/faults"] * 2


def check_dockerfile_installs_the_kit(dockerfile: str, app: str) -> None:
    """An app's docker/Dockerfile (its text) puts the kit in the image: the builder builds the
    kit's wheel alone (--no-deps) from the build context `ops-kit` (apps/ops-kit, which no
    index serves), the app's wheel finds its zdp-ops-kit requirement there (--find-links), and
    the runtime installs the kit's wheel (--no-deps) and the app's, offline (--no-index)."""
    lines = [line for line in dockerfile.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    instructions = [" ".join(line.split()) for line in joined.splitlines() if line.strip()]
    runs = [line.removeprefix("RUN ") for line in instructions if line.startswith("RUN ")]
    copies = [line for line in instructions if line.startswith("COPY --from=ops-kit ")]
    assert dockerfile.startswith("# syntax=docker/dockerfile:1"), "COPY --from a named context"
    assert [copy.split()[2:-1] for copy in copies] == [["pyproject.toml", "README.md"], ["src"]]
    [kit_wheel] = [run for run in runs if run.startswith("pip wheel") and "ops-kit" in run]
    assert "--no-deps" in kit_wheel
    [app_wheel] = [run for run in runs if run.startswith("pip wheel") and run.endswith(" .")]
    assert "--find-links" in app_wheel
    [install] = [run for run in runs if run.startswith("pip install")]
    kit_install, app_install = install.split(" && ")[:2]
    assert "--no-index --no-deps /wheels/zdp_ops_kit-" in kit_install
    assert "--no-index" in app_install and app_install.endswith(f" {app}")
    assert runs.index(kit_wheel) < runs.index(app_wheel) < runs.index(install)
