"""The kit's wheel, built as `pip install ./apps/ops-kit` builds it (not editable: an app the
engine confines may read the venv's site-packages but not the checkout), carries every module
and imports from where it is unpacked, with nothing of the checkout or the engine."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
from ops_kit.testing import build_wheel, check_dockerfile_installs_the_kit

KIT = Path(__file__).resolve().parents[1]
ENGINE = ("zdp", "workflows", "activities", "workers")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    built = build_wheel(KIT, tmp_path_factory.mktemp("wheel"))
    assert built.name.startswith("zdp_ops_kit-")
    return built


def test_the_wheel_carries_every_module_and_declares_its_dependencies(wheel: Path) -> None:
    modules = {p.relative_to(KIT / "src").as_posix() for p in (KIT / "src").rglob("*.py")}
    modules = {m for m in modules if "egg-info" not in m}
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        [metadata] = [n for n in names if n.endswith(".dist-info/METADATA")]
        parsed = Parser().parsestr(archive.read(metadata).decode())
    assert modules <= names, f"missing from the wheel: {sorted(modules - names)}"
    assert "ops_kit/py.typed" in names
    assert parsed["Name"] == "zdp-ops-kit"
    required = {
        r.split(">")[0].split("[")[0].strip().lower()
        for r in parsed.get_all("Requires-Dist")
        if "extra ==" not in r
    }
    assert required == {"fastapi", "uvicorn", "prometheus-client"}


def test_the_unpacked_wheel_imports_without_the_engine(wheel: Path, tmp_path: Path) -> None:
    unpacked = tmp_path / "unpacked"
    zipfile.ZipFile(wheel).extractall(unpacked)
    probe = (
        "import sys, ops_kit, ops_kit.operations, ops_kit.serve, ops_kit.logs;"
        "print(ops_kit.__file__);"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {ENGINE!r}))"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(unpacked)!r}); {probe}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    location, engine_modules = done.stdout.splitlines()
    assert Path(location) == unpacked / "ops_kit" / "__init__.py"
    assert engine_modules == "[]"


def test_no_module_of_the_kit_imports_the_engine_or_an_app() -> None:
    forbidden = (*ENGINE, "finance_trading", "pharma_manufacturing")
    for module in (KIT / "src" / "ops_kit").rglob("*.py"):
        for line in module.read_text().splitlines():
            words = line.split()
            if words[:1] in (["import"], ["from"]) and len(words) > 1:
                assert words[1].split(".")[0] not in forbidden, f"{module.name}: {line}"


def test_the_dockerfile_check_refuses_an_image_without_the_kit() -> None:
    without = (
        "# syntax=docker/dockerfile:1\n"
        "FROM python:3.11-slim AS builder\n"
        "COPY pyproject.toml README.md ./\n"
        "RUN pip wheel --wheel-dir /wheels .\n"
        "FROM python:3.11-slim AS runtime\n"
        "COPY --from=builder /wheels /wheels\n"
        "RUN pip install --no-index --find-links /wheels my-app\n"
    )
    with pytest.raises(AssertionError):
        check_dockerfile_installs_the_kit(without, "my-app")
