"""The wheel carries what the runtime needs besides the code: config/<env>.yaml and the Alembic
migrations. The engine runs the app only from its unpacked wheel, so this builds one the way
the engine does (`pip wheel --no-deps --no-build-isolation`) and starts the app from it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

if TYPE_CHECKING:
    from collections.abc import Callable

    from ops_kit.testing import AppProcess

APP = Path(__file__).resolve().parents[1]
PACKAGE = "pharma_manufacturing"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built from a copy of the app folder, so that a stale build/ in the checkout (setuptools
    reuses it) cannot hide a file missing from the packaging config."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "pharma-manufacturing"
    shutil.copytree(
        APP,
        source,
        ignore=shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__", "tests"),
    )
    build = ["pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(root / "dist")]
    subprocess.run(
        [sys.executable, "-m", *build, str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    [built] = (root / "dist").glob("pharma_manufacturing-*.whl")
    return built


def test_wheel_carries_the_config_files(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        for env in ("local", "staging", "production"):
            name = f"{PACKAGE}/config/{env}.yaml"
            assert name in names
            assert archive.read(name) == (APP / "config" / f"{env}.yaml").read_bytes()


def test_wheel_carries_the_migrations(wheel: Path) -> None:
    versions = sorted(
        p.name for p in (APP / "src" / PACKAGE / "migrations" / "versions").glob("0*.py")
    )
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert versions == ["0001_base_schema.py", "0002_deviations.py"]
    assert f"{PACKAGE}/migrations/env.py" in names
    assert {f"{PACKAGE}/migrations/versions/{v}" for v in versions} <= names


def test_wheel_carries_every_package_and_declares_the_dependencies(wheel: Path) -> None:
    packages = {
        str(init.parent.relative_to(APP / "src"))
        for init in (APP / "src" / PACKAGE).rglob("__init__.py")
    }
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        [metadata] = [n for n in names if n.endswith(".dist-info/METADATA")]
        requires = Parser().parsestr(archive.read(metadata).decode()).get_all("Requires-Dist")
    missing = {p for p in packages if f"{p}/__init__.py" not in names}
    assert not missing, f"add to [tool.setuptools] packages in pyproject.toml: {sorted(missing)}"
    declared = {r.split(">")[0].split("[")[0].strip().lower() for r in requires}
    assert {
        "fastapi",
        "uvicorn",
        "prometheus-client",
        "sqlalchemy",
        "alembic",
        "pyyaml",
        "psycopg",
        "zdp-ops-kit",
    } <= declared


def test_app_starts_from_the_unpacked_wheel_alone(
    wheel: Path, tmp_path: Path, app_process: Callable[[dict[str, str]], AppProcess]
) -> None:
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(unpacked)
    app = app_process({"PYTHONPATH": str(unpacked), "APP_VERSION": "9.9.9", "APP_SLOT": "green"})
    app.wait_ready()
    batch = httpx.get(f"{app.base_url}/api/batches/B-1001")
    lines = [json.loads(line) for line in app.log().splitlines() if line.startswith("{")]
    started = next(line for line in lines if line["msg"] == "started")
    migrated = next(line for line in lines if line["msg"] == "schema migrated")
    assert batch.status_code == 200
    assert started["config_file"] == str(unpacked / PACKAGE / "config" / "local.yaml")
    assert (migrated["from"], migrated["to"]) == (None, "0002")
