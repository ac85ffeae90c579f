"""The local Runtime with real processes: a stand-in app built into a wheel, run from the store.

apps/ is not used here: the tests build their own tiny app (standard library only) with the same
contract (`python -m <pkg> --host --port`, `/healthz/ready`, graceful SIGTERM, the
APP_FAULT_CRASH_ON_START fault), store its wheel in a temporary ZDP_HOME and register it with
the runtime. Every process a test starts is stopped by pid in the fixture's finalizer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from tests.ports import port_base
from zdp.errors import ConfigError, PlatformError, ReleaseError
from zdp.models import Artifact, ChangeMetadata, ReleaseManifest
from zdp.platforms.base import Runtime
from zdp.platforms.layout import (
    ENVIRONMENT_BLOCKS,
    LocalApp,
    data_dir,
    runtime_dir,
    versions_dir,
)
from zdp.platforms.local import confine
from zdp.platforms.local.artifacts import build_wheel, find_artifact, store_artifact
from zdp.platforms.local.runtime import LocalRuntime, running, stop_all

APP = LocalApp("zdp-testapp", "zdp_testapp", 1)
APPS = {APP.name: APP}
BASE = port_base("local-runtime")
REPO_ROOT = Path(__file__).resolve().parents[2]
CANARY_PORT = APP.slot_port("canary", BASE)
STABLE_PORT = APP.slot_port("stable", BASE)

PYPROJECT = """\
[build-system]
requires = ["setuptools>=68", "wheel"]
build-backend = "setuptools.build_meta"

[project]
name = "zdp-testapp"
version = "1.0.0"

[tool.setuptools.packages.find]
where = ["src"]
"""

MAIN = '''\
"""A stand-in for apps/: the local runtime's contract with the standard library only."""

import argparse
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import zdp_testapp


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    if os.environ.get("APP_FAULT_CRASH_ON_START"):
        print("fault injected: crash on start", file=sys.stderr, flush=True)
        sys.exit(3)
    ready = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlparse(self.path)
            if url.path == "/healthz/ready":
                code, body = (200, {"ready": True}) if ready.is_set() else (503, {"ready": False})
            elif url.path == "/info":
                code, body = 200, {
                    "version": os.environ.get("APP_VERSION"),
                    "slot": os.environ.get("APP_SLOT"),
                    "greeting": os.environ.get("APP_GREETING"),
                    "app_env": os.environ.get("APP_ENV"),
                    "api_keys_file": os.environ.get("APP_API_KEYS_FILE"),
                    "file": zdp_testapp.__file__,
                    "pid": os.getpid(),
                    "sys_path": sys.path,
                }
            elif url.path == "/env":
                code, body = 200, dict(os.environ)
            elif url.path in ("/read", "/write"):
                target = parse_qs(url.query)["path"][0]
                try:
                    if url.path == "/read":
                        with open(target, "rb") as handle:
                            handle.read(1)
                    else:
                        with open(target, "a") as handle:
                            handle.write("x")
                    code, body = 200, {"allowed": True}
                except OSError as exc:
                    code, body = 200, {"allowed": False, "error": str(exc)}
            elif url.path == "/slow":
                time.sleep(float(parse_qs(url.query).get("s", ["0.5"])[0]))
                code, body = 200, {"slept": True}
            else:
                code, body = 404, {}
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = False  # server_close() then waits for in-flight requests

    def drain(signum: int, frame: object) -> None:
        ready.clear()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, drain)
    if not os.environ.get("APP_FAULT_NEVER_READY"):
        ready.set()
    print(f"listening on {args.host}:{args.port}", flush=True)
    server.serve_forever()
    server.server_close()


main()
'''

WORKER = """\
import asyncio, signal, sys
from pathlib import Path
from zdp.models import ReleaseManifest
from zdp.platforms.local.runtime import LocalRuntime
from zdp.platforms.layout import LocalApp

app = LocalApp("zdp-testapp", "zdp_testapp", 1)
runtime = LocalRuntime(home=Path(sys.argv[1]), base=int(sys.argv[2]), apps={app.name: app})
release = ReleaseManifest.model_validate_json(sys.argv[3])
print(asyncio.run(runtime.provision(release, "stable")).model_dump_json(), flush=True)
signal.pause()
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The stand-in app's wheel, built once from a src-layout tree in tmp."""
    root = tmp_path_factory.mktemp("zdp-testapp")
    package = root / "src" / "zdp_testapp"
    package.mkdir(parents=True)
    (root / "pyproject.toml").write_text(PYPROJECT)
    (package / "__init__.py").write_text('"""zdp_testapp."""\n')
    (package / "__main__.py").write_text(MAIN)
    return build_wheel(root, root / "dist")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("ZDP_HOME", str(home))
    monkeypatch.setenv("ZDP_ARTIFACTS", str(home / "artifacts"))
    return home


@pytest.fixture
def artifact(wheel: Path, home: Path) -> Artifact:
    return store_artifact(wheel, home)


@pytest_asyncio.fixture
async def runtime(home: Path) -> AsyncIterator[LocalRuntime]:
    try:
        yield LocalRuntime(home=home, base=BASE, ready_timeout=15.0, drain_grace=3.0, apps=APPS)
    finally:
        await stop_all(home, drain_grace=2.0)
        for pid in our_app_pids():  # anything a failing test left behind, by verified pid
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)


def release(artifact: Artifact, version: str = "1.0.0", **config: str) -> ReleaseManifest:
    return ReleaseManifest(
        app=APP.name, version=version, artifact=artifact, config_overrides=config
    )


def our_app_pids() -> list[int]:
    """Pids of stand-in app processes on this run's ports (found by their command line)."""
    ports = {
        str(APP.in_environment(environment).slot_port(slot, BASE))
        for environment in ENVIRONMENT_BLOCKS
        for slot in ("stable", "canary", "blue", "green")
    }
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        args = [a.decode(errors="replace") for a in argv]
        if "zdp_testapp" in args and "--port" in args and set(args) & ports:
            found.append(int(proc.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def record(home: Path, slot: str) -> dict[str, Any]:
    return dict(json.loads((runtime_dir(home) / APP.name / f"{slot}.json").read_text()))


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


async def get_json(url: str) -> dict[str, Any]:
    async with httpx.AsyncClient(trust_env=False, timeout=5.0) as client:
        response = await client.get(url)
    assert response.status_code == 200
    return dict(response.json())


# ---------------------------------------------------------------------- provision


async def test_provision_runs_the_release_and_its_endpoint_answers(
    runtime: LocalRuntime, artifact: Artifact, home: Path
) -> None:
    assert isinstance(runtime, Runtime)
    deployed = await runtime.provision(release(artifact, greeting="hello"), "canary")
    endpoint = f"http://127.0.0.1:{CANARY_PORT}"
    assert deployed.endpoints == [endpoint]
    assert (deployed.app, deployed.slot, deployed.version) == (APP.name, "canary", "1.0.0")
    info = await get_json(f"{endpoint}/info")
    assert (info["version"], info["slot"], info["greeting"]) == ("1.0.0", "canary", "hello")
    saved = record(home, "canary")
    assert saved["pid"] == info["pid"] and saved["port"] == CANARY_PORT
    assert saved["version"] == "1.0.0" and saved["digest"] == artifact.digest
    assert saved["started_at"]
    assert await runtime.endpoints(APP.name, "canary") == [endpoint]
    assert await runtime.deployed(APP.name, "canary") == deployed
    assert [r["pid"] for r in running(home)] == [info["pid"]]
    assert await runtime.endpoints(APP.name, "stable") == []


async def test_the_target_environment_and_its_secrets_reach_the_app(
    runtime: LocalRuntime, artifact: Artifact, home: Path
) -> None:
    """A production deployment starts the app with APP_ENV=production (not local, whose config
    holds demo data and public demo keys), with that environment's secrets by reference; a
    release cannot choose its own environment."""
    secrets = home / "secrets" / APP.name / "production"
    secrets.mkdir(parents=True)
    (secrets / "API_KEYS_FILE").write_text("{}\n")
    (home / "secrets" / APP.name / "staging").mkdir()
    (home / "secrets" / APP.name / "staging" / "API_KEYS_FILE").write_text("{}\n")
    await runtime.provision(release(artifact), "canary", app_env="production")
    info = await get_json(f"http://127.0.0.1:{CANARY_PORT}/info")
    assert info["app_env"] == "production"
    assert info["api_keys_file"] == str(secrets / "API_KEYS_FILE")  # not staging's
    await runtime.retire(APP.name, "canary")
    await runtime.provision(release(artifact, "2.0.0"), "canary")  # no environment: local
    info = await get_json(f"http://127.0.0.1:{CANARY_PORT}/info")
    assert (info["app_env"], info["api_keys_file"]) == ("local", None)
    with pytest.raises(ConfigError, match="APP_ENV is set by the engine"):
        await runtime.provision(release(artifact, "3.0.0", ENV="local"), "stable", "production")


async def test_the_process_runs_from_the_unpacked_wheel_not_the_working_tree(
    runtime: LocalRuntime, artifact: Artifact, home: Path, wheel: Path
) -> None:
    await runtime.provision(release(artifact), "canary")
    info = await get_json(f"http://127.0.0.1:{CANARY_PORT}/info")
    unpacked = versions_dir(home) / APP.name / "1.0.0"
    assert Path(info["file"]).resolve().is_relative_to(unpacked.resolve())
    assert info["sys_path"][0] == str(unpacked)
    source_tree = wheel.parent.parent
    assert not any(p and Path(p).resolve().is_relative_to(source_tree) for p in info["sys_path"])
    assert not any(
        p and Path(p).resolve().is_relative_to(REPO_ROOT / "apps") for p in info["sys_path"]
    )


async def test_an_app_process_cannot_reach_the_engines_secrets(
    runtime: LocalRuntime, artifact: Artifact, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker's environment holds its tokens, database URL and passphrases, and its home
    holds its keys: the app process gets none of them. It reads its own code and secrets,
    writes only its data folder, and cannot read the worker's environment through /proc."""
    engine_secrets = {
        "ZDP_SLACK_BOT_TOKEN": "xoxb-engine-token",
        "TEMPORAL_API_KEY": "temporal-api-key",
        "ZDP_AUDIT_DATABASE_URL": "postgresql://zdp:db-password@db/zdp",
        "ZDP_KEY_PASSPHRASE": "engine-passphrase",
        "SLACK_SIGNING_SECRET": "webhook-secret",
    }
    for name, value in engine_secrets.items():
        monkeypatch.setenv(name, value)
    engine_key = home / "keys" / "engine.key"
    engine_key.parent.mkdir(parents=True)
    engine_key.write_text("-----BEGIN PRIVATE KEY-----\n")
    engine_key.chmod(0o600)
    (home / "trusted-keys").mkdir()
    (home / "trusted-keys" / "ci.pub").write_text("public\n")
    secret = home / "secrets" / APP.name / "local" / "API_KEYS_FILE"
    secret.parent.mkdir(parents=True)
    secret.write_text("{}\n")
    other_app = home / "data" / "another-app" / "ledger"
    other_app.parent.mkdir(parents=True)
    other_app.write_text("theirs\n")

    deployed = await runtime.provision(release(artifact), "canary")
    app = f"http://127.0.0.1:{CANARY_PORT}"
    env = await get_json(f"{app}/env")
    assert not [k for k in env if k.startswith(("ZDP_", "TEMPORAL_"))], sorted(env)
    assert not set(engine_secrets.values()) & set(env.values())
    assert "SLACK_SIGNING_SECRET" not in env
    assert env["APP_API_KEYS_FILE"] == str(secret)  # its own secret, by reference

    if confine.landlock_abi() < 1:
        pytest.skip("this kernel has no Landlock: the file checks need it")
    assert deployed.notes[0].startswith("confined (Landlock ABI")

    async def can(action: str, path: Path | str) -> bool:
        return bool((await get_json(f"{app}/{action}?path={path}"))["allowed"])

    unpacked = versions_dir(home) / APP.name / "1.0.0"
    assert await can("read", secret)
    assert await can("read", unpacked / "zdp_testapp" / "__init__.py")
    assert await can("write", data_dir(APP.name, home) / "state")
    assert not await can("read", engine_key)
    assert not await can("write", home / "trusted-keys" / "attacker.pub")
    assert not await can("write", unpacked / "zdp_testapp" / "__init__.py")
    assert not await can("read", other_app)
    assert not await can("read", runtime_dir(home) / APP.name / "canary.json")
    assert not await can("read", f"/proc/{os.getpid()}/environ")  # the worker's environment
    assert not (home / "trusted-keys" / "attacker.pub").exists()


async def test_code_changed_after_unpacking_is_unpacked_again_before_it_runs(
    runtime: LocalRuntime, artifact: Artifact, home: Path
) -> None:
    """Unpacked code is checked file by file against the signed wheel before each start: a
    changed, added or removed file is moved aside as evidence and the wheel unpacked again,
    and the start says so."""
    await runtime.provision(release(artifact), "canary")
    await runtime.retire(APP.name, "canary")
    unpacked = versions_dir(home) / APP.name / "1.0.0"
    (unpacked / "zdp_testapp" / "__init__.py").write_text("import os  # changed\n")
    (unpacked / "zdp_testapp" / "extra.py").write_text("x = 1\n")

    deployed = await runtime.provision(release(artifact), "canary")
    assert len(deployed.notes) == 2, deployed.notes
    assert "zdp_testapp/__init__.py was changed" in deployed.notes[1]
    assert "zdp_testapp/extra.py was added" in deployed.notes[1]
    assert (unpacked / "zdp_testapp" / "__init__.py").read_text() == '"""zdp_testapp."""\n'
    assert not (unpacked / "zdp_testapp" / "extra.py").exists()
    kept = list((unpacked.parent / ".tampered").iterdir())
    assert len(kept) == 1 and (kept[0] / "zdp_testapp" / "extra.py").exists()
    assert await runtime.deployed(APP.name, "canary") == deployed  # on the slot's record


async def test_without_landlock_production_apps_are_not_started_unconfined(
    runtime: LocalRuntime, artifact: Artifact, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(confine, "landlock_abi", lambda: 0)
    with pytest.raises(PlatformError, match="this kernel has no Landlock"):
        await runtime.provision(release(artifact), "canary", app_env="production")
    assert our_app_pids() == []
    deployed = await runtime.provision(release(artifact), "canary", app_env="staging")
    assert deployed.notes == ["not confined: this kernel has no Landlock"]
    await runtime.retire(APP.name, "canary")
    monkeypatch.setenv("ZDP_APP_CONFINEMENT", "none")  # an operator's explicit choice
    deployed = await runtime.provision(release(artifact), "canary", app_env="production")
    assert deployed.notes == ["not confined: ZDP_APP_CONFINEMENT=none"]
    await runtime.retire(APP.name, "canary")
    monkeypatch.setenv("ZDP_APP_CONFINEMENT", "landlock")
    with pytest.raises(PlatformError, match="no Landlock"):
        await runtime.provision(release(artifact), "canary")


async def test_staging_and_production_of_one_app_run_side_by_side(
    runtime: LocalRuntime, artifact: Artifact, home: Path
) -> None:
    """Each environment has its own slots: production's stable runs beside staging's, on its
    own port, with its own record and data folder; retiring one leaves the other running."""
    staging, production = runtime.for_environment("staging"), runtime.for_environment("production")
    assert runtime.for_environment("production") is production
    on_staging = await staging.provision(release(artifact, "1.0.0"), "stable", "staging")
    on_production = await production.provision(release(artifact, "2.0.0"), "stable", "production")
    assert on_staging.endpoints == [f"http://127.0.0.1:{STABLE_PORT}"]
    prod_port = APP.in_environment("production").slot_port("stable", BASE)
    assert prod_port != STABLE_PORT
    assert on_production.endpoints == [f"http://127.0.0.1:{prod_port}"]
    assert (await get_json(f"http://127.0.0.1:{STABLE_PORT}/info"))["version"] == "1.0.0"
    assert (await get_json(f"http://127.0.0.1:{prod_port}/info"))["version"] == "2.0.0"
    assert (await staging.deployed(APP.name, "stable")).version == "1.0.0"  # type: ignore[union-attr]
    assert (await production.deployed(APP.name, "stable")).version == "2.0.0"  # type: ignore[union-attr]
    prod_record = runtime_dir(home) / f"{APP.name}@production" / "stable.json"
    assert json.loads(prod_record.read_text())["environment"] == "production"
    info = await get_json(f"http://127.0.0.1:{prod_port}/env")
    assert info["APP_DATA_DIR"] == str(data_dir(f"{APP.name}@production", home))
    assert len(running(home)) == 2

    await production.retire(APP.name, "stable")
    assert await production.deployed(APP.name, "stable") is None
    assert (await staging.deployed(APP.name, "stable")).version == "1.0.0"  # type: ignore[union-attr]
    await production.provision(release(artifact, "2.0.0"), "stable", "production")
    assert len(await stop_all(home, drain_grace=2.0)) == 2  # `zdp down` finds both
    assert our_app_pids() == []
    with pytest.raises(ConfigError, match="no place on the embedded stack"):
        runtime.for_environment("perf")


async def test_provisioning_again_is_idempotent(
    runtime: LocalRuntime, artifact: Artifact, home: Path
) -> None:
    first = await runtime.provision(release(artifact), "canary")
    pid = record(home, "canary")["pid"]
    second = await runtime.provision(release(artifact), "canary")
    assert second == first
    assert record(home, "canary")["pid"] == pid
    assert our_app_pids() == [pid]


async def test_concurrent_provisions_of_one_slot_start_one_process(
    runtime: LocalRuntime, artifact: Artifact, home: Path
) -> None:
    other = LocalRuntime(home=home, base=BASE, apps=APPS)  # as if a second worker
    first, second = await asyncio.wait_for(
        asyncio.gather(
            runtime.provision(release(artifact), "canary"),
            other.provision(release(artifact), "canary"),
        ),
        30,
    )
    assert first == second
    assert our_app_pids() == [record(home, "canary")["pid"]]


async def test_another_version_into_an_occupied_slot_is_refused(
    runtime: LocalRuntime, artifact: Artifact, home: Path
) -> None:
    await runtime.provision(release(artifact), "canary")
    pid = record(home, "canary")["pid"]
    with pytest.raises(PlatformError) as err:
        await runtime.provision(release(artifact, "2.0.0"), "canary")
    assert str(err.value) == (
        "slot canary of zdp-testapp runs 1.0.0; retire it before provisioning 2.0.0"
    )
    assert alive(pid) and record(home, "canary")["version"] == "1.0.0"


async def test_a_tampered_artifact_is_refused_before_any_process_starts(
    runtime: LocalRuntime, artifact: Artifact, home: Path
) -> None:
    stored = find_artifact(artifact, home)
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0x01
    stored.write_bytes(bytes(data))
    with pytest.raises(PlatformError, match="digest mismatch"):
        await runtime.provision(release(artifact), "canary")
    slot_files = runtime_dir(home) / APP.name
    assert not (slot_files / "canary.json").exists()
    assert not (slot_files / "canary.log").exists(), "no process may have been started"
    assert not (versions_dir(home) / APP.name / "1.0.0").exists()
    assert our_app_pids() == [] and not listening(CANARY_PORT)


async def test_a_crash_on_start_is_one_clear_line_and_leaves_nothing_behind(
    runtime: LocalRuntime, artifact: Artifact, home: Path
) -> None:
    with pytest.raises(PlatformError) as err:
        await runtime.provision(release(artifact, fault_crash_on_start="1"), "canary")
    message = str(err.value)
    assert message.startswith(
        "zdp-testapp 1.0.0 in slot canary exited with code 3 before it was ready: "
    )
    assert message.endswith("fault injected: crash on start")
    assert "\n" not in message
    assert not (runtime_dir(home) / APP.name / "canary.json").exists()
    assert our_app_pids() == [] and running(home) == []


async def test_a_version_that_never_gets_ready_is_stopped(
    artifact: Artifact, home: Path, runtime: LocalRuntime
) -> None:
    impatient = LocalRuntime(home=home, base=BASE, ready_timeout=1.0, drain_grace=1.0, apps=APPS)
    started = time.monotonic()
    with pytest.raises(PlatformError) as err:
        await impatient.provision(release(artifact, fault_never_ready="1"), "canary")
    assert time.monotonic() - started < 10
    assert str(err.value).startswith(
        "zdp-testapp 1.0.0 in slot canary not ready after 1 s; stopped it: "
    )
    assert our_app_pids() == [] and not (runtime_dir(home) / APP.name / "canary.json").exists()


async def test_bad_releases_are_refused_with_a_reason(
    runtime: LocalRuntime, artifact: Artifact
) -> None:
    image = Artifact(kind="oci-image", reference="ghcr.io/x/app:1", digest=artifact.digest)
    with pytest.raises(PlatformError, match="runs wheels only"):
        await runtime.provision(release(image), "canary")
    with pytest.raises(ConfigError, match="not a valid name"):
        await runtime.provision(release(artifact, **{"bad-key": "1"}), "canary")
    stranger = ReleaseManifest(app="webshop", version="1.0.0", artifact=artifact)
    with pytest.raises(ConfigError, match="cannot run on the local runtime"):
        await runtime.provision(stranger, "canary")
    with pytest.raises(ConfigError, match="unknown slot"):
        await runtime.provision(release(artifact), "purple")
    with pytest.raises(ConfigError, match="unknown slot"):
        await runtime.retire(APP.name, "../../etc")
    with pytest.raises(ConfigError, match="not an app name"):
        await runtime.retire("../zdp-testapp", "canary")
    assert our_app_pids() == []


@pytest.mark.parametrize("version", ["../../trusted-keys", "/tmp/elsewhere", ".."])
async def test_a_path_like_version_never_leaves_the_versions_folder(
    runtime: LocalRuntime, artifact: Artifact, home: Path, version: str
) -> None:
    """The manifest model refuses such a version wherever a release is parsed; a manifest
    that skipped validation (built in code) is still refused by the runtime before it
    unpacks anything: nothing is written outside the versions folder."""
    trusted = home / "trusted-keys"
    trusted.mkdir(exist_ok=True)
    (trusted / "release-ci.pub").write_text("the worker's trusted key\n")
    escaping = ReleaseManifest.model_construct(
        app=APP.name, version=version, artifact=artifact, config_overrides={},
        change=ChangeMetadata(), created_at=None, validation=None,
    )  # fmt: skip
    with pytest.raises(ReleaseError, match="would lead outside"):
        await runtime.provision(escaping, "canary")
    assert [p.name for p in trusted.iterdir()] == ["release-ci.pub"]
    assert (trusted / "release-ci.pub").read_text() == "the worker's trusted key\n"
    assert not Path("/tmp/elsewhere").exists()
    assert our_app_pids() == []


async def test_a_port_held_by_a_stranger_is_refused(
    runtime: LocalRuntime, artifact: Artifact
) -> None:
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", CANARY_PORT))
        squatter.listen()
        with pytest.raises(PlatformError, match=f"port {CANARY_PORT} .* did not start"):
            await runtime.provision(release(artifact), "canary")
    assert our_app_pids() == []


# ---------------------------------------------------------------------- retire


async def test_retire_stops_exactly_that_pid_and_is_idempotent(
    runtime: LocalRuntime, artifact: Artifact, home: Path
) -> None:
    await runtime.provision(release(artifact), "stable")
    await runtime.provision(release(artifact, "2.0.0"), "canary")
    stable, canary = record(home, "stable")["pid"], record(home, "canary")["pid"]
    await runtime.retire(APP.name, "canary")
    assert not alive(canary) and alive(stable)
    assert await runtime.deployed(APP.name, "canary") is None
    assert await runtime.endpoints(APP.name, "canary") == []
    assert not (runtime_dir(home) / APP.name / "canary.json").exists()
    await runtime.retire(APP.name, "canary")
    await runtime.retire(APP.name, "blue")
    assert alive(stable)


async def test_retire_lets_in_flight_requests_finish(
    runtime: LocalRuntime, artifact: Artifact, home: Path
) -> None:
    await runtime.provision(release(artifact), "canary")
    async with httpx.AsyncClient(trust_env=False, timeout=5.0) as client:
        slow = asyncio.create_task(client.get(f"http://127.0.0.1:{CANARY_PORT}/slow?s=0.6"))
        await asyncio.sleep(0.2)
        await asyncio.wait_for(runtime.retire(APP.name, "canary"), 10)
        response = await asyncio.wait_for(slow, 5)
    assert response.status_code == 200 and response.json() == {"slept": True}
    assert our_app_pids() == []


async def test_a_slot_can_be_reprovisioned_with_a_new_version_after_retire(
    runtime: LocalRuntime, artifact: Artifact
) -> None:
    await runtime.provision(release(artifact), "canary")
    await runtime.retire(APP.name, "canary")
    deployed = await runtime.provision(release(artifact, "2.0.0"), "canary")
    info = await get_json(f"{deployed.endpoints[0]}/info")
    assert info["version"] == "2.0.0"


async def test_a_record_whose_pid_is_not_ours_is_never_signalled(
    runtime: LocalRuntime, artifact: Artifact, home: Path
) -> None:
    stranger = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        path = runtime_dir(home) / APP.name / "canary.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        stale = {"app": APP.name, "slot": "canary", "package": APP.package, "pid": stranger.pid}
        stale |= {"port": CANARY_PORT, "version": "0.9.0", "digest": artifact.digest}
        path.write_text(json.dumps(stale))
        assert await runtime.deployed(APP.name, "canary") is None
        await runtime.retire(APP.name, "canary")
        assert stranger.poll() is None, "a pid that is not ours must not be signalled"
        assert not path.exists()
        path.write_text(json.dumps(stale))
        deployed = await runtime.provision(release(artifact), "canary")
        assert deployed.version == "1.0.0" and stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait(5)


# ---------------------------------------------------------------------- a worker crash


@pytest.fixture
def worker_process(home: Path, artifact: Artifact) -> Iterator[subprocess.Popen[str]]:
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(home), str(BASE), release(artifact).model_dump_json()],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        yield worker
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(5)


async def test_the_version_outlives_its_worker_and_a_new_runtime_retires_it(
    worker_process: subprocess.Popen[str], home: Path, runtime: LocalRuntime
) -> None:
    assert worker_process.stdout is not None
    line = await asyncio.wait_for(asyncio.to_thread(worker_process.stdout.readline), 30)
    assert json.loads(line)["version"] == "1.0.0"
    pid = record(home, "stable")["pid"]
    os.killpg(worker_process.pid, signal.SIGKILL)  # the worker and its whole process group
    worker_process.wait(5)
    await asyncio.sleep(0.2)
    assert alive(pid), "the app must run in its own session and survive the worker"
    assert (await get_json(f"http://127.0.0.1:{STABLE_PORT}/info"))["pid"] == pid
    del runtime  # the fixture's runtime has never seen it; a fresh one finds it from disk
    fresh = LocalRuntime(home=home, base=BASE, drain_grace=3.0, apps=APPS)
    found = await fresh.deployed(APP.name, "stable")
    assert found is not None and found.version == "1.0.0"
    await fresh.retire(APP.name, "stable")
    assert not alive(pid) and running(home) == []


async def test_stop_all_retires_every_recorded_slot(
    runtime: LocalRuntime, artifact: Artifact, home: Path
) -> None:
    await runtime.provision(release(artifact), "blue")
    await runtime.provision(release(artifact, "2.0.0"), "green")
    pids = {r["pid"] for r in running(home)}
    assert len(pids) == 2
    stopped = await stop_all(home, drain_grace=2.0)
    assert {r["pid"] for r in stopped} == pids
    assert not any(alive(pid) for pid in pids) and running(home) == []
