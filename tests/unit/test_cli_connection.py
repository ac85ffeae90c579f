"""The CLI talks to the stack `zdp up` started (its address, namespace and worker config, as
recorded in $ZDP_HOME/stack.json) unless told otherwise, and says which server it tried and
where that came from. The stack's "processes" here are stand-ins whose command lines carry
what the stack checks a pid by (`start-dev`, `zdp worker`): no server runs in these tests."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tests.kit import APP, Signer
from tests.ports import free_port
from zdp.cli import main
from zdp.fsutil import proc_cmdline
from zdp.models import DeploymentResult, DeploymentStatus, Outcome, Phase, Strategy
from zdp.temporal import DEFAULT_ADDRESS, connect_config, resolve, use_flags

ENGINE_YAML = Path(__file__).parent.parent / "workflows" / "engine.yaml"


def _stand_in(marker: str) -> subprocess.Popen[bytes]:
    """A sleeping process whose command line contains `marker`, once it does: Popen returns
    when the child's exec has begun, and until the kernel has laid out the new program's
    arguments /proc/<pid>/cmdline reads empty (seen here on a busy machine)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)", marker],
        stdin=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while marker not in proc_cmdline(proc.pid):
        assert proc.poll() is None and time.monotonic() < deadline, f"{marker} stand-in"
        time.sleep(0.01)
    return proc


@dataclass
class FakeStack:
    home: Path
    address: str
    worker_config: Path

    @property
    def record(self) -> Path:
        return self.home / "stack.json"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No Temporal settings from the machine running the tests; no temporal.toml."""
    for name in ("TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "TEMPORAL_PROFILE", "ZDP_TEMPORAL_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(tmp_path / "no-temporal.toml"))
    monkeypatch.setenv("ZDP_KEY_DIR", str(tmp_path / "no-keys"))
    monkeypatch.delenv("ZDP_REDIS_URL", raising=False)
    use_flags()


@pytest.fixture
def stack(clean_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeStack]:
    """A stack as `zdp up` records it: its server on a moved port, and a worker that runs with
    a config (the engine config without `prod`, as the demo's has no production)."""
    home = tmp_path / "zdp-home"
    home.mkdir()
    config = yaml.safe_load(ENGINE_YAML.read_text())
    del config["apps"][APP]["environments"]["prod"]
    worker_config = tmp_path / "demo-like.yaml"
    worker_config.write_text(yaml.safe_dump(config))
    server, worker = _stand_in("start-dev"), _stand_in("zdp worker")
    address = f"127.0.0.1:{free_port()}"
    record = {
        "temporal": {"pid": server.pid, "address": address, "namespace": "default", "ui": "-"},
        "worker": {"pid": worker.pid, "config": str(worker_config)},
    }
    (home / "stack.json").write_text(json.dumps(record))
    monkeypatch.setenv("ZDP_HOME", str(home))
    try:
        yield FakeStack(home, address, worker_config)
    finally:
        for proc in (server, worker):
            proc.kill()
            proc.wait()


def test_the_cli_follows_the_stack_zdp_up_recorded(stack: FakeStack) -> None:
    target = resolve()
    assert target.address == stack.address and target.namespace == "default"
    assert target.stack is not None and target.stack.running
    assert f"from the stack `zdp up` started, {stack.record}" in target.source
    assert connect_config()["target_host"] == stack.address
    assert connect_config()["namespace"] == "default"
    # The worker's config is what `zdp deploy` checks requests against.
    assert main._stack_worker_config() == stack.worker_config


def test_explicit_settings_win_over_the_stack(
    stack: FakeStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEMPORAL_ADDRESS", "temporal.example:7233")
    monkeypatch.setenv("TEMPORAL_NAMESPACE", "payments")
    target = resolve()
    assert (target.address, target.namespace) == ("temporal.example:7233", "payments")
    assert target.source == "from TEMPORAL_ADDRESS" and target.stack is None
    assert target.describe() == (
        "temporal.example:7233 (namespace payments from TEMPORAL_NAMESPACE; from TEMPORAL_ADDRESS)"
    )
    # Another server's workers have their own config: nothing of the stack's is assumed.
    assert main._stack_worker_config() is None
    try:
        use_flags(address="flag.example:7233", namespace="flagged")
        flagged = resolve()
        assert (flagged.address, flagged.namespace) == ("flag.example:7233", "flagged")
        assert flagged.source == "from --address"
    finally:
        use_flags()
    # TEMPORAL_ADDRESS naming the stack's own server is the stack.
    monkeypatch.setenv("TEMPORAL_ADDRESS", stack.address)
    assert resolve().stack is not None
    assert main._stack_worker_config() == stack.worker_config


def test_without_a_stack_the_default_or_zdp_temporal_port(
    clean_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ZDP_HOME", str(tmp_path / "empty"))
    target = resolve()
    assert target.address == DEFAULT_ADDRESS and target.stack is None
    assert target.source == (
        f"the default: no TEMPORAL_ADDRESS, no stack recorded in {tmp_path / 'empty'}"
    )
    monkeypatch.setenv("ZDP_TEMPORAL_PORT", "7833")
    assert resolve().address == "127.0.0.1:7833"
    assert resolve().source.startswith("from ZDP_TEMPORAL_PORT")


def test_an_unreachable_server_is_named_with_where_it_came_from(
    clean_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stack whose server died: its recorded address is tried (never another server on the
    default port), and the error says so and what to do."""
    home = tmp_path / "zdp-home"
    home.mkdir()
    gone = subprocess.Popen([sys.executable, "-c", "pass", "start-dev"])
    gone.wait()
    address = f"127.0.0.1:{free_port()}"
    record = {"temporal": {"pid": gone.pid, "address": address, "ui": "-"}}
    (home / "stack.json").write_text(json.dumps(record))
    monkeypatch.setenv("ZDP_HOME", str(home))

    result = CliRunner().invoke(main.app, ["status", "deploy-webshop-dev"])
    assert result.exit_code == 1, result.output
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(
        f"error: cannot reach Temporal at {address} (namespace default; from the stack "
        f"`zdp up` started, {home / 'stack.json'}): "
    )
    assert f"the stack's dev server (pid {gone.pid}) is not running: `zdp up` starts it" in line

    monkeypatch.setenv("TEMPORAL_ADDRESS", address)
    told = CliRunner().invoke(main.app, ["status", "deploy-webshop-dev"])
    assert told.exit_code == 1
    assert f"cannot reach Temporal at {address} (namespace default; from TEMPORAL_ADDRESS)" in (
        told.stderr
    )


def test_up_status_shows_the_worker_config_and_where_the_cli_goes(
    stack: FakeStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = CliRunner().invoke(main.app, ["up", "--status"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line for line in result.stdout.splitlines() if line.strip()}
    assert (
        "running" in rows["temporal"] and f"{stack.address}  namespace default" in rows["temporal"]
    )
    assert "running" in rows["worker"] and f"config {stack.worker_config}" in rows["worker"]
    assert "zdp commands here talk to" in result.stdout
    assert f"this stack, {stack.address} (namespace default; from the stack" in result.stdout

    monkeypatch.setenv("TEMPORAL_ADDRESS", "elsewhere.example:7233")
    other = CliRunner().invoke(main.app, ["up", "--status"], env={"COLUMNS": "200"})
    assert "elsewhere.example:7233 (namespace default; from TEMPORAL_ADDRESS), NOT this stack" in (
        other.stdout
    )


def test_deploy_preflight_names_the_stacks_worker_config_as_the_cause(
    stack: FakeStack, signer: Signer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stack's worker runs with a config that has no `prod` (as after `zdp up --config
    demo.yaml`): the deployment is refused before starting, and the refusal names the worker's
    config, not the release, with the command that restarts it with one that has `prod`."""
    monkeypatch.setenv("ZDP_CONFIG", str(ENGINE_YAML))  # what `zdp up` would use by default
    release = tmp_path / "release.dsse.json"
    release.write_text(signer.release("2.0.0").model_dump_json())

    result = CliRunner().invoke(
        main.app, ["deploy", APP, "--env", "prod", "--release", str(release)]
    )
    assert result.exit_code == 2, result.output
    (line,) = result.stderr.strip().splitlines()
    assert line == (
        f"error: refused before starting: app '{APP}' has no environment 'prod': known "
        f"environments are dev: the stack's worker runs with {stack.worker_config} (`zdp up "
        "--status` shows it), so the deployment would end rejected whatever the release; "
        f"restart the worker with one that has it: `zdp up --config {ENGINE_YAML.resolve()}`"
    )


def test_a_rejection_for_a_missing_environment_names_the_worker_config(
    stack: FakeStack, capsys: pytest.CaptureFixture[str]
) -> None:
    """When the worker refuses it itself (no pre-flight here: another CLI, an older one), the
    note after the outcome names the stack's worker config as the cause."""
    cause = f"release rejected: app '{APP}' has no environment 'prod': known environments are dev"
    status = DeploymentStatus(
        deployment_id=f"deploy-{APP}-prod", app=APP, environment="prod", version=None,
        strategy=Strategy.canary, phase=Phase.done, outcome=Outcome.rejected, cause=cause,
    )  # fmt: skip
    main._note_worker_config(
        DeploymentResult(outcome=Outcome.rejected, cause=cause, status=status, timeline=[])
    )
    err = capsys.readouterr().err
    assert "note: the release was not at fault: the stack's worker config, " in err
    assert str(stack.worker_config) in err and "`zdp up --config FILE`" in err
