"""PrometheusProvider and metric templates against a real Prometheus (Debian package).

Prometheus scrapes a tiny target whose counters the test sets, and a real finance-trading app
process (its own /metrics), whose faults the test switches on through the drill endpoint.
Loopback only, every wait bounded, every process stopped by pid.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.ports import free_port
from tests.scrape_target import scrape_target
from zdp.errors import PlatformError
from zdp.health.prometheus import MetricTemplate, PrometheusProvider, TemplateRun
from zdp.models import GateResult

# finance-trading runs with APP_ENV=local here; its POST /drill/faults takes only a drill key,
# and this is the public demo one of apps/finance-trading/config/local.yaml.
DRILL_KEY = {"X-API-Key": "ft-demo-drill-key"}
INSTALL_HINT = "apt-get install -y prometheus (Debian/Ubuntu), or put prometheus on PATH"
ERROR_RATIO = (
    'sum(http_requests_total{job="{{app}}",status="500"}) / sum(http_requests_total{job="{{app}}"})'
)


@dataclass
class Target:
    """A scrape target whose request counters the test sets."""

    counts: dict[str, int] = field(default_factory=lambda: {"200": 1000, "500": 0})
    lock: threading.Lock = field(default_factory=threading.Lock)

    def exposition(self) -> bytes:
        with self.lock:
            lines = ["# TYPE http_requests_total counter"] + [
                f'http_requests_total{{status="{status}"}} {n}'
                for status, n in sorted(self.counts.items())
            ]
        return ("\n".join(lines) + "\n").encode()


@pytest.fixture(scope="session")
def target() -> Iterator[tuple[Target, int]]:
    state = Target()
    with scrape_target(state.exposition) as port:
        yield state, port


def _scraped(port: int) -> bool:
    try:
        response = httpx.get(
            f"http://127.0.0.1:{port}/api/v1/query",
            params={"query": 'up{job="quotes"} == 1'},
            timeout=1.0,
        )
        return bool(response.json()["data"]["result"])
    except (httpx.HTTPError, ValueError, KeyError):
        return False


@pytest.fixture(scope="session")
def app_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """finance-trading from apps/, as the local runtime runs it, with its drill endpoint on."""
    port = free_port()
    src = Path(__file__).resolve().parents[2] / "apps" / "finance-trading" / "src"
    log = (tmp_path_factory.mktemp("app") / "app.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "finance_trading", "--host", "127.0.0.1", "--port", str(port)],
        env={**os.environ, "PYTHONPATH": str(src), "APP_DRILL_ENDPOINT": "1"},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz/ready", timeout=0.5).is_success:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("finance-trading did not become ready")
            time.sleep(0.1)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


@pytest.fixture(scope="session")
def prometheus_url(
    target: tuple[Target, int], app_process: int, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip(f"prometheus not installed: {INSTALL_HINT}")
    home: Path = tmp_path_factory.mktemp("prometheus")
    config = home / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: quotes\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{target[1]}']\n"
        "  - job_name: finance-trading\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{app_process}']\n"
        "        labels: {app: finance-trading, slot: canary}\n",
        encoding="utf-8",
    )
    port = free_port()
    log = (home / "prometheus.log").open("wb")
    server = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={home / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not _scraped(port):
            if server.poll() is not None:
                tail = (home / "prometheus.log").read_text(errors="replace")[-300:]
                pytest.skip(f"prometheus exited with {server.returncode}: {' '.join(tail.split())}")
            if time.monotonic() > deadline:
                pytest.fail("prometheus did not scrape the target within 30 s")
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
        log.close()


async def _run_until(
    run: TemplateRun, provider: PrometheusProvider, seconds: float
) -> GateResult | None:
    deadline = time.monotonic() + seconds
    result = None
    while result is None and time.monotonic() < deadline:
        result = await run.step(provider, "quotes", "canary", "2.0.0")
        await asyncio.sleep(0.05)
    return result


async def test_query_returns_the_scraped_value(prometheus_url: str) -> None:
    provider = PrometheusProvider(prometheus_url)
    try:
        assert await provider.is_online()
        value = await provider.query('sum(http_requests_total{job="quotes",status="200"})')
        assert value is not None and value >= 1000
        assert await provider.query('http_requests_total{status="418"}') is None
        assert await provider.query("0/0") is None  # NaN means no usable data
    finally:
        await provider.aclose()


async def test_invalid_promql_is_a_one_line_platform_error(prometheus_url: str) -> None:
    provider = PrometheusProvider(prometheus_url)
    try:
        with pytest.raises(PlatformError, match="refused the query") as err:
            await provider.query("sum(")
        assert "\n" not in str(err.value) and "bad_data" in str(err.value)
    finally:
        await provider.aclose()


async def test_unreachable_prometheus_is_offline_and_queries_raise() -> None:
    provider = PrometheusProvider(f"http://127.0.0.1:{free_port()}", timeout=0.5)
    try:
        assert not await provider.is_online()
        with pytest.raises(PlatformError, match="did not answer"):
            await provider.query("up")
    finally:
        await provider.aclose()


async def test_error_ratio_template_passes_while_healthy_and_fails_once_500s_rise(
    prometheus_url: str, target: tuple[Target, int]
) -> None:
    state = target[0]
    template = MetricTemplate(
        name="error-ratio",
        query=ERROR_RATIO,
        threshold=0.05,
        comparator="<",
        interval_seconds=0.3,
        failure_limit=1,
        count=3,
    )
    provider = PrometheusProvider(prometheus_url)
    try:
        healthy = TemplateRun(template)
        assert await _run_until(healthy, provider, 10) is GateResult.passed
        assert all(ok for _, ok in healthy.measurements)
        with state.lock:
            state.counts["500"] = 500  # a third of all requests now failed
        breaking = TemplateRun(template.model_copy(update={"count": None}))
        assert await _run_until(breaking, provider, 15) is GateResult.failed
        breaches = [value for value, ok in breaking.measurements if not ok]
        assert len(breaches) == 2  # failure_limit 1: the second breach fails it
        assert breaches[-1] == pytest.approx(500 / 1500)
    finally:
        with state.lock:
            state.counts["500"] = 0
        await provider.aclose()


async def test_query_without_data_becomes_inconclusive(prometheus_url: str) -> None:
    template = MetricTemplate(
        name="teapots",
        query='sum(http_requests_total{job="{{app}}",status="418"})',
        threshold=1,
        comparator="<",
        interval_seconds=0.1,
        inconclusive_limit=2,
    )
    provider = PrometheusProvider(prometheus_url)
    try:
        run = TemplateRun(template)
        assert await _run_until(run, provider, 5) is GateResult.inconclusive
        assert run.no_data == 3 and not run.measurements
    finally:
        await provider.aclose()


APP_5XX_RATIO = (
    'sum(http_requests_total{app="{{app}}",slot="{{slot}}",status=~"5.."} or vector(0))'
    ' / sum(http_requests_total{app="{{app}}",slot="{{slot}}"})'
)


async def test_template_over_a_real_app_process_fails_once_its_api_fails(
    prometheus_url: str, app_process: int
) -> None:
    """The app's own /metrics, scraped by Prometheus, drive a template as a gate would."""
    app = f"http://127.0.0.1:{app_process}"
    template = MetricTemplate(
        name="api-5xx-ratio",
        query=APP_5XX_RATIO,
        threshold=0.05,
        comparator="<",
        interval_seconds=1.0,
        failure_limit=1,
    )
    async with httpx.AsyncClient(timeout=2.0) as client:
        for _ in range(50):
            assert (await client.get(f"{app}/api/quote/AAPL")).status_code == 200
        await asyncio.sleep(2.5)  # two scrapes
        provider = PrometheusProvider(prometheus_url)
        try:
            rendered = template.render("finance-trading", "canary", "2.0.0")
            healthy = await provider.query(rendered)
            assert healthy is not None and healthy < 0.05
            fault = await client.post(
                f"{app}/drill/faults", json={"error_rate": 1.0}, headers=DRILL_KEY
            )
            assert fault.status_code == 200
            for _ in range(100):
                assert (await client.get(f"{app}/api/quote/AAPL")).status_code == 503
            run = TemplateRun(template)
            result = None
            deadline = time.monotonic() + 15
            while result is None and time.monotonic() < deadline:
                result = await run.step(provider, "finance-trading", "canary", "2.0.0")
                await asyncio.sleep(0.1)
            assert result is GateResult.failed, run.measurements
            assert any(value > 0.5 for value, _ in run.measurements)
        finally:
            await client.post(f"{app}/drill/faults", json={"error_rate": 0.0}, headers=DRILL_KEY)
            await provider.aclose()
