"""`make demo` is the README's first command: it must run to its promised ending."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_demo_promotes_the_good_release_and_rolls_back_the_bad_one(tmp_path: Path) -> None:
    zdp = str(Path(sys.executable).parent / "zdp")
    env = {**os.environ, "ZDP_HOME": str(tmp_path), "COLUMNS": "200"}
    run = subprocess.run(
        [zdp, "demo"], env=env, capture_output=True, text=True, timeout=180, check=False
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    assert "Traceback" not in output
    assert "ci-bot tries to approve its own deployment: refused" in output
    assert "outcome: promoted" in output
    assert "outcome: rolled_back — health gate fail" in output
    assert "serving now: 2.4.0" in output
    assert (tmp_path / "demo" / "temporal.db").exists()  # the embedded server's database
