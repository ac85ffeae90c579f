"""`zdp demo` runs in a home of its own: it refuses, before anything starts, a home whose
trust `zdp up` (or the compose file's worker) would read, and keeps its own trust inside it.

Fast: nothing here starts a stack (Stack.up is replaced by one that fails the test)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from tests.cli_checks import assert_one_line_error
from zdp.cli import demo as demo_module
from zdp.cli.demo import DEFAULT_DEMO_HOME, OUTSIDE_HOME_ENV, DemoHome, demo_home, isolate
from zdp.cli.main import app
from zdp.errors import ConfigError
from zdp.stack import Stack

REPO_ROOT = Path(__file__).resolve().parents[2]

TRUST_VARIABLES = (
    "ZDP_HOME",
    "ZDP_DEMO_HOME",
    "ZDP_TRUSTED_KEYS",
    "ZDP_TRUSTED_KEYS_DIR",
    "ZDP_APPROVER_REGISTRY",
    "ZDP_REGISTRY_ROOT",
    "ZDP_ARTIFACTS",
    "ZDP_AUDIT_DATABASE_URL",
    "ZDP_AUDIT_DATABASE_CA",
)


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working folder, no trust variable set, and no stack may start."""
    monkeypatch.chdir(tmp_path)
    for name in TRUST_VARIABLES:
        monkeypatch.delenv(name, raising=False)

    def no_stack(self: Stack) -> None:
        raise AssertionError(f"a stack was started in {self.home}")

    monkeypatch.setattr(Stack, "up", no_stack)
    return tmp_path


def zdp_demo(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(app, ["demo", *args], env=env)


def test_the_demo_refuses_the_home_zdp_up_uses(workspace: Path) -> None:
    """The default `zdp up` home (./.zdp), and an explicit ZDP_HOME given to the demo too."""
    assert_one_line_error(
        zdp_demo("--home", ".zdp"), "is the home `zdp up` uses (ZDP_HOME, default ./.zdp)", code=2
    )
    up = workspace / "up-home"
    same = {"ZDP_HOME": str(up), "ZDP_DEMO_HOME": f"{up}/"}
    assert_one_line_error(zdp_demo(env=same), f"the demo home {up} is the home `zdp up`", code=2)
    assert_one_line_error(zdp_demo("--json", env=same), "refused before starting", code=2)
    assert list(workspace.iterdir()) == []  # nothing created, nothing started


def test_the_demo_refuses_a_link_to_the_zdp_up_home(workspace: Path) -> None:
    (workspace / ".zdp").mkdir()
    (workspace / "alias").symlink_to(workspace / ".zdp")
    assert_one_line_error(zdp_demo("--home", "alias"), "is the home `zdp up` uses", code=2)
    assert list((workspace / ".zdp").iterdir()) == []


@pytest.mark.parametrize(
    ("variable", "folder", "message"),
    [
        ("ZDP_TRUSTED_KEYS", "trusted-keys", "the trusted keys `zdp up`'s worker reads"),
        ("ZDP_APPROVER_REGISTRY", "approvers", "the identity registry `zdp up` reads"),
        ("ZDP_TRUSTED_KEYS_DIR", "trusted-keys", "docker-compose.temporal.yml mounts"),
    ],
)
def test_the_demo_refuses_a_home_whose_trust_zdp_up_reads(
    workspace: Path, variable: str, folder: str, message: str
) -> None:
    env = {variable: str(workspace / "shared" / folder)}
    assert_one_line_error(zdp_demo("--home", "shared", env=env), message, code=2)
    assert not (workspace / "shared").exists()


def test_the_demo_refuses_the_folder_the_compose_file_trusts_by_default(
    workspace: Path,
) -> None:
    """docker-compose.temporal.yml mounts ./.zdp/trusted-keys of the checkout it runs in by
    default (the working directory), whatever ZDP_HOME says."""
    env = {"ZDP_HOME": str(workspace / "elsewhere")}
    result = zdp_demo("--home", str(workspace / ".zdp"), env=env)
    assert_one_line_error(result, "docker-compose.temporal.yml mounts", code=2)


def test_the_demo_refuses_to_start_beside_a_running_zdp_up_stack(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same Temporal port: the demo's stack would collide with it (or talk to it)."""
    monkeypatch.setenv("ZDP_TEMPORAL_PORT", "17233")
    up = Stack(home=workspace / ".zdp")
    # A stand-in for the dev server: a process whose command line says start-dev.
    fake = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", "start-dev"],
        start_new_session=True,
    )
    try:
        up._save({"temporal": {"pid": fake.pid, "address": up.temporal_address}})
        assert_one_line_error(zdp_demo(), "a `zdp up` stack in", code=2)
        monkeypatch.setenv("ZDP_TEMPORAL_PORT", "17234")  # the demo moved: no clash
        assert demo_home(DEFAULT_DEMO_HOME).path == workspace / ".zdp-demo"
    finally:
        fake.kill()
        fake.wait(timeout=10)


def test_the_default_demo_home_is_its_own_and_holds_all_of_its_trust(workspace: Path) -> None:
    home = demo_home(DEFAULT_DEMO_HOME)
    assert home == DemoHome(workspace / ".zdp-demo", workspace / ".zdp")
    for path in home.trust().values():
        assert Path(path).is_relative_to(home.path)
    assert demo_module.Demo(home.path).key_path == Path(home.trust()["release_key"])


def test_isolate_keeps_the_demo_and_its_worker_inside_the_demo_home(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in OUTSIDE_HOME_ENV:
        monkeypatch.setenv(name, str(workspace / "production" / name))
    monkeypatch.setenv("ZDP_HOME", str(workspace / "up-home"))
    home = demo_home(workspace / "demo-home")
    isolate(home)
    assert os.environ["ZDP_HOME"] == str(workspace / "demo-home")
    assert not set(OUTSIDE_HOME_ENV) & set(os.environ)
    assert home.up_home == workspace / "up-home"


def test_a_demo_home_of_its_own_is_accepted(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    up = workspace / "up-home"
    monkeypatch.setenv("ZDP_HOME", str(up))
    assert demo_home(workspace / "demo").path == workspace / "demo"
    with pytest.raises(ConfigError):
        demo_home(up)
