"""Issue 17's Done-when: an alert firing in a real Prometheus reaches `zdp alert-receiver`
through a real Alertmanager and rolls back a running deployment, named in its audit entries.

Prometheus (Debian `prometheus`) scrapes a gauge this test serves and fires
ZdpCanaryErrorBudgetBurn (app/environment labels from the series) when the test sets it to 1;
Alertmanager (`prometheus-alertmanager`) routes it to the receiver's webhook with the bearer
token file. The deployment runs on the Temporal dev server with the in-process memory-platform
worker, held in its first canary bake, in an environment where identities must be proven: the
receiver's abort counts only because it is signed by its registered key. Then the receiver is
restarted and Alertmanager sends the same alert again (a second alert joins its group): a
second deployment, running by then, is not touched.

Every process is started by pid in temp folders and stopped by pid; every wait is bounded and
polls; the ports come from tests/ports.py ("alert-rollback").
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cli_checks import ZDP
from tests.kit import APP, Harness, enrol
from tests.ports import port_base
from tests.scrape_target import scrape_target
from zdp import deployments
from zdp.compliance.audit.log import default_log_path, verify_log
from zdp.compliance.engine_key import engine_key
from zdp.compliance.registry import registry_dir
from zdp.models import Outcome
from zdp.signing import generate_key_pair, load_private_key

pytestmark = pytest.mark.server

BASE = port_base("alert-rollback")
PROMETHEUS_PORT, ALERTMANAGER_PORT, RECEIVER_PORT = BASE + 4, BASE + 5, BASE + 6
ENVIRONMENT = "dev"
DEPLOYMENT = f"deploy-{APP}-{ENVIRONMENT}"
BURN = "ZdpCanaryErrorBudgetBurn"
DEADLINE_S = 180.0

RULES = """\
groups:
  - name: zdp-alert-rollback-test
    interval: 1s
    rules:
      - alert: ZdpCanaryErrorBudgetBurn
        expr: zdp_test_canary_error_budget_burn > 0
        for: 0s
        labels:
          severity: critical
        annotations:
          summary: >-
            the canary of {{ $labels.app }} in {{ $labels.environment }} burns its error budget
      - alert: ZdpTestNoise
        expr: zdp_test_noise > 0
        for: 0s
        labels:
          severity: info
"""


def _binaries() -> tuple[str, str]:
    prometheus = shutil.which("prometheus")
    alertmanager = shutil.which("prometheus-alertmanager")
    if prometheus is None or alertmanager is None:
        found = {"prometheus": prometheus, "prometheus-alertmanager": alertmanager}
        missing = [name for name, binary in found.items() if binary is None]
        pytest.skip(
            f"{' and '.join(missing)} not installed: apt-get install -y prometheus "
            "prometheus-alertmanager (Debian/Ubuntu)"
        )
    return prometheus, alertmanager


@dataclass
class Gauges:
    """The scrape target: the series the alert rules watch, set by the test."""

    values: dict[str, int] = field(
        default_factory=lambda: {"zdp_test_canary_error_budget_burn": 0, "zdp_test_noise": 0}
    )
    lock: threading.Lock = field(default_factory=threading.Lock)
    port: int = 0  # the kernel's choice, once served: Prometheus' config is written after it

    def set(self, name: str, value: int) -> None:
        with self.lock:
            self.values[name] = value

    def exposition(self) -> bytes:
        labels = f'{{app="{APP}",environment="{ENVIRONMENT}"}}'
        with self.lock:
            lines = [f"# TYPE {n} gauge\n{n}{labels} {v}" for n, v in sorted(self.values.items())]
        return ("\n".join(lines) + "\n").encode()


@pytest.fixture
def gauges() -> Iterator[Gauges]:
    state = Gauges()
    with scrape_target(state.exposition) as port:
        state.port = port
        yield state


class Process:
    """A child in its own session, its output in a log file, stopped by its pid."""

    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.log = log
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=20)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, url: str, what: str, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(url, timeout=2.0).is_success:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"{what} did not become ready at {url}; its log: {self.text()[-3000:]}")
            time.sleep(0.2)


@dataclass
class Monitoring:
    prometheus: Process
    alertmanager: Process


@pytest.fixture
def monitoring(gauges: Gauges, tmp_path: Path) -> Iterator[Monitoring]:
    """Prometheus scraping the gauges and alerting to Alertmanager, which posts to the
    receiver's webhook with the bearer token in tmp_path/alert-receiver.token."""
    prometheus_bin, alertmanager_bin = _binaries()
    prom, am = tmp_path / "prometheus", tmp_path / "alertmanager"
    prom.mkdir()
    am.mkdir()
    (prom / "rules.yml").write_text(RULES)
    (prom / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "rule_files: [rules.yml]\n"
        "alerting:\n  alertmanagers:\n    - static_configs:\n"
        f"        - targets: ['127.0.0.1:{ALERTMANAGER_PORT}']\n"
        "scrape_configs:\n  - job_name: canary\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{gauges.port}']\n"
    )
    (am / "alertmanager.yml").write_text(
        "route:\n  receiver: zdp\n  group_by: [app, environment]\n"
        "  group_wait: 0s\n  group_interval: 1s\n  repeat_interval: 4h\n"
        "receivers:\n  - name: zdp\n    webhook_configs:\n"
        f"      - url: http://127.0.0.1:{RECEIVER_PORT}/alerts\n"
        "        send_resolved: true\n"
        "        http_config:\n          authorization:\n            type: Bearer\n"
        f"            credentials_file: {tmp_path / 'alert-receiver.token'}\n"
    )
    alertmanager = Process(
        [
            alertmanager_bin,
            f"--config.file={am / 'alertmanager.yml'}",
            f"--storage.path={am / 'data'}",
            f"--web.listen-address=127.0.0.1:{ALERTMANAGER_PORT}",
            "--cluster.listen-address=",  # no HA peer: nothing listens but the API
        ],
        am / "alertmanager.log",
    )
    prometheus = Process(
        [
            prometheus_bin,
            f"--config.file={prom / 'prometheus.yml'}",
            f"--storage.tsdb.path={prom / 'data'}",
            f"--web.listen-address=127.0.0.1:{PROMETHEUS_PORT}",
        ],
        prom / "prometheus.log",
    )
    try:
        alertmanager.wait_ready(f"http://127.0.0.1:{ALERTMANAGER_PORT}/-/ready", "Alertmanager")
        prometheus.wait_ready(f"http://127.0.0.1:{PROMETHEUS_PORT}/-/ready", "Prometheus")
        yield Monitoring(prometheus, alertmanager)
    finally:
        prometheus.stop()
        alertmanager.stop()


class Receiver:
    """`zdp alert-receiver` as a process of its own, with the worker's home (its registry and
    audit log) and this test's token, key and Temporal server."""

    def __init__(self, harness: Harness, tmp_path: Path) -> None:
        keys = tmp_path / "receiver-keys"
        generate_key_pair(keys, "alert-receiver")
        self.key = keys / "alert-receiver.key"
        self.log = tmp_path / "alert-receiver.log"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("ZDP_", "TEMPORAL_"))}
        self.env.update(
            TEMPORAL_ADDRESS=harness.client.service_client.config.target_host,
            ZDP_HOME=str(harness.home),
            ZDP_PORT_BASE=str(BASE),  # the receiver listens on the stack's BASE+6
            ZDP_ALERT_RECEIVER_KEY=str(self.key),
            ZDP_ALERT_RECEIVER_TOKEN_FILE=str(tmp_path / "alert-receiver.token"),
            ZDP_CONFIG=str(_receiver_config(tmp_path)),
        )
        self.process: Process | None = None

    def start(self) -> None:
        self.process = Process([ZDP, "alert-receiver"], self.log, self.env)
        self.process.wait_ready(f"http://127.0.0.1:{RECEIVER_PORT}/healthz", "the alert receiver")

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def _receiver_config(tmp_path: Path) -> Path:
    """The workflow tests' engine config with the receiver among the operators, as the worker
    has it here (the receiver reads it only to say where it may act)."""
    source = Path(__file__).resolve().parents[1] / "workflows"
    folder = tmp_path / "config"
    folder.mkdir()
    shutil.copy(source / "gate-policies.yaml", folder / "gate-policies.yaml")
    text = (source / "engine.yaml").read_text()
    operators = "operators: [oncall, oncall-sre, dave, erin]"
    assert operators in text
    (folder / "engine.yaml").write_text(
        text.replace(operators, "operators: [oncall, oncall-sre, dave, erin, alert-receiver]")
    )
    return folder / "engine.yaml"


@pytest.fixture
def receiver(harness: Harness, tmp_path: Path) -> Iterator[Receiver]:
    made = Receiver(harness, tmp_path)
    public = load_private_key(made.key).public_key()
    enrol(registry_dir(harness.home), "alert-receiver", "Alertmanager receiver", public, "bot")
    try:
        yield made
    finally:
        made.stop()


def _audit_entries(harness: Harness) -> list[dict[str, Any]]:
    """The log's complete lines (a line another process is appending has no newline yet)."""
    text = default_log_path(harness.home).read_text()
    return [json.loads(line) for line in text.split("\n")[:-1] if line]


async def _poll(condition: Any, what: str, describe: Any) -> None:
    deadline = asyncio.get_running_loop().time() + DEADLINE_S
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"{what} within {DEADLINE_S:g} s; {describe()}")
        await asyncio.sleep(0.25)


async def test_a_firing_alert_rolls_back_the_running_deployment_once(
    harness: Harness, monitoring: Monitoring, gauges: Gauges, receiver: Receiver
) -> None:
    env = harness.config.apps[APP].environments[ENVIRONMENT]
    env.require_proven_identities = True  # an unsigned or unregistered control is refused
    env.operators = [*env.operators, "alert-receiver"]
    await asyncio.to_thread(receiver.start)
    ready = receiver.text()
    assert f"zdp alert receiver listening on http://127.0.0.1:{RECEIVER_PORT}/alerts" in ready
    assert "operator of webshop/dev" in ready and "warning" not in ready

    first = await harness.start(harness.request("2.0.0", environment=ENVIRONMENT, bake_seconds=600))
    await harness.wait_for(first, lambda s: s.weights.get("canary") == 1, timeout=120)
    run_id = (await first.describe()).run_id

    gauges.set("zdp_test_canary_error_budget_burn", 1)
    result = await asyncio.wait_for(first.result(), DEADLINE_S)

    # Rolled back, traffic first: stable serves everything again.
    assert result.outcome is Outcome.rolled_back, (result.cause, receiver.text())
    assert harness.state.weights[APP].get("canary", 0) == 0
    reason = (
        f"alert {BURN} (app={APP} environment={ENVIRONMENT}, severity=critical): the canary of "
        f"{APP} in {ENVIRONMENT} burns its error budget"
    )
    assert result.cause == f"aborted by alert-receiver: {reason}"
    aborts = [e for e in result.timeline if e.kind == "abort_requested"]
    assert len(aborts) == 1 and aborts[0].actor == "alert-receiver"
    assert aborts[0].message.startswith(
        "abort requested by alert-receiver via api (signed with key"
    )
    assert aborts[0].message.endswith(reason)
    assert not [e for e in result.timeline if e.kind == "decision_refused"]

    # The audit log: the deployment's own entry, and the receiver's with the alert's identity.
    entries = _audit_entries(harness)
    logged = [
        e for e in entries
        if e["workflow_id"] == DEPLOYMENT and e["event_id"].startswith(run_id)
        and e["kind"] == "abort_requested"
    ]  # fmt: skip
    assert len(logged) == 1 and logged[0]["actor"] == "alert-receiver"
    assert BURN in logged[0]["message"] and logged[0]["data"]["reason"] == reason
    # The receiver appends its own entry after the control is sent, and the rollback may end
    # first: wait for it (bounded), then read the log again.
    await _poll(
        lambda: any(e["workflow_id"] == "alert-receiver" for e in _audit_entries(harness)),
        "the receiver's audit entry",
        receiver.text,
    )
    sent = [e for e in _audit_entries(harness) if e["workflow_id"] == "alert-receiver"]
    assert (
        len(sent) == 1
        and sent[0]["kind"] == "alert_control"
        and sent[0]["actor"] == ("alert-receiver")
    )
    assert sent[0]["data"]["alertname"] == BURN and sent[0]["data"]["run_id"] == run_id
    assert sent[0]["data"]["deployment_id"] == DEPLOYMENT and sent[0]["data"]["action"] == "abort"
    verify_log(default_log_path(harness.home), public_keys=[engine_key(harness.home).public_key()])

    # A restarted receiver and a second deployment; Alertmanager sends the group again (a second
    # alert joined it), the burning alert with it: remembered, it does not act twice.
    await asyncio.to_thread(receiver.stop)
    await asyncio.to_thread(receiver.start)
    second = await harness.start(
        harness.request("2.0.1", environment=ENVIRONMENT, bake_seconds=600)
    )
    await harness.wait_for(second, lambda s: s.weights.get("canary") == 1, timeout=120)
    gauges.set("zdp_test_noise", 1)
    await _poll(
        lambda: (
            "alert ZdpTestNoise" in receiver.text()
            and "duplicate: alert " + BURN in receiver.text()
        ),
        "the receiver did not get the burning alert again",
        receiver.text,
    )
    status = await harness.status(second)
    assert status.outcome is None and not status.paused and status.weights.get("canary") == 1
    timeline = await deployments.timeline(harness.client, second.id)
    assert not [e for e in timeline if e.kind in ("abort_requested", "paused", "decision_refused")]
    assert len([e for e in _audit_entries(harness) if e["workflow_id"] == "alert-receiver"]) == 1
