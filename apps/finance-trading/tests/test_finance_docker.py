"""docker/Dockerfile, checked offline (no Docker here): stages, user, health check, tags."""

from __future__ import annotations

import json
import re
from pathlib import Path

from ops_kit.testing import check_dockerfile_installs_the_kit

DOCKERFILE = Path(__file__).resolve().parents[1] / "docker" / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, comments dropped and continued lines joined."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    found = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, arguments = line.partition(" ")
            found.append((keyword.upper(), arguments.strip()))
    return found


def of(keyword: str) -> list[str]:
    return [arguments for name, arguments in instructions() if name == keyword]


def test_it_is_multi_stage_and_the_runtime_installs_the_builders_wheel() -> None:
    stages = of("FROM")
    assert len(stages) > 1
    assert stages[0].endswith(" AS builder")
    assert any("--from=builder" in copy for copy in of("COPY"))
    assert any("pip wheel" in run for run in of("RUN"))


def test_base_images_are_pinned_never_latest() -> None:
    for stage in of("FROM"):
        image = stage.split()[0]
        assert ":" in image or "@sha256:" in image, f"{image} has no tag: that means latest"
        assert not image.endswith(":latest"), image
        assert "slim" in image


def test_it_runs_as_a_user_that_is_not_root() -> None:
    [user] = of("USER")
    assert user.split(":")[0] not in ("root", "0")
    last_user = max(i for i, (name, _) in enumerate(instructions()) if name == "USER")
    last_from = max(i for i, (name, _) in enumerate(instructions()) if name == "FROM")
    assert last_user > last_from  # in the runtime stage, not only the builder


def test_it_checks_liveness_exposes_the_port_and_starts_the_app() -> None:
    [healthcheck] = of("HEALTHCHECK")
    assert "/healthz/live" in healthcheck
    assert of("EXPOSE") == ["8000"]
    [cmd] = of("CMD")
    command = json.loads(cmd)  # exec form: the app is PID 1 and gets SIGTERM itself
    assert command[:3] == ["python", "-m", "finance_trading"]
    assert command[command.index("--port") + 1] == "8000"
    assert any("APP_ENV=production" in env for env in of("ENV"))


def test_the_image_builds_and_installs_the_ops_kit() -> None:
    check_dockerfile_installs_the_kit(DOCKERFILE.read_text(), "finance-trading")
