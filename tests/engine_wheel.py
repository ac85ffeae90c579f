"""The engine's wheel, built as a release build would: from a copy of the sources it packages,
never in the checkout (a build writes build/ and *.egg-info beside its sources; two at once
would share them)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGED = ("pyproject.toml", "README.md", "zdp", "workflows", "activities", "workers")


def build_engine_wheel(out: Path) -> Path:
    source = out / "source"
    source.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for name in PACKAGED:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=ignore)
        else:
            shutil.copy2(path, source / name)
    command = ["wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out)]
    built = subprocess.run(
        [sys.executable, "-m", "pip", *command, str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = out.glob("zero_downtime_pipeline-*.whl")
    return wheel
