"""The wheel the engine runs carries config/*.yaml, and the app reads them from it."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from ops_kit.testing import build_wheel

APP_DIR = Path(__file__).resolve().parents[1]
ENVIRONMENTS = ("local", "staging", "production")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`pip wheel --no-deps --no-build-isolation` as the engine runs it, on a clean copy."""
    built = build_wheel(APP_DIR, tmp_path_factory.mktemp("wheel"))
    assert built.name.startswith("finance_trading-")
    return built


def test_the_wheel_carries_every_environment_file(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for environment in ENVIRONMENTS:
        assert f"finance_trading/config/{environment}.yaml" in names
        packaged = zipfile.ZipFile(wheel).read(f"finance_trading/config/{environment}.yaml")
        assert packaged == (APP_DIR / "config" / f"{environment}.yaml").read_bytes()


def test_the_wheel_carries_every_module_of_src(wheel: Path) -> None:
    """The package list in pyproject.toml is explicit: a new subpackage must be added there."""
    names = set(zipfile.ZipFile(wheel).namelist())
    src = APP_DIR / "src"
    modules = {
        path.relative_to(src).as_posix()
        for path in src.rglob("*.py")
        if "egg-info" not in str(path)
    }
    assert modules <= names, f"missing from the wheel: {sorted(modules - names)}"


def test_the_unpacked_wheel_reads_its_own_config(wheel: Path, tmp_path: Path) -> None:
    unpacked = tmp_path / "unpacked"
    zipfile.ZipFile(wheel).extractall(unpacked)
    env = {k: v for k, v in os.environ.items() if not k.startswith("APP_")}
    done = subprocess.run(
        [sys.executable, "-c",
         "from finance_trading.trading_config import load_trading_config as load;"
         "c = load(); print(c.source); print(c.limits.max_order_qty)"],
        cwd=tmp_path, env={**env, "PYTHONPATH": str(unpacked)},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    source, max_qty = done.stdout.split()
    assert Path(source) == unpacked / "finance_trading" / "config" / "local.yaml"
    assert max_qty == "10000"
