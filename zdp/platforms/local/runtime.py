"""The `local` Runtime: each app version runs as an OS process on its slot's loopback port.

A version runs from its verified, unpacked wheel (`versions_dir()/<app>/<version>`), never
from the working tree, in its own session (`start_new_session=True`) so that a worker crash
or a Ctrl-C in the worker's terminal does not take it down. What runs where is recorded on
disk, one JSON file per slot (`runtime_dir()/<app>/<slot>.json`):

    {"app", "slot", "package", "pid", "port", "version", "digest", "started_at", "proc_start"}

so a new worker (or `zdp down`) finds the processes an earlier one started. A pid is only
ever signalled after checking that it is still ours: alive, the same start time as recorded,
and a command line running the app package on the slot's port; a recycled pid is left alone.

Retire contract: the caller (the workflow) has already set the slot's traffic weight to 0.
`retire` then sends SIGTERM, the app turns its readiness false and finishes in-flight
requests, and after `drain_grace` seconds whatever is left is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from zdp.errors import ConfigError, PlatformError
from zdp.fsutil import inside, write_file_atomic
from zdp.models import Deployed, ReleaseManifest
from zdp.platforms.base import CpuTimes, release_environment
from zdp.platforms.layout import (
    LOCAL_APPS,
    SLOTS,
    LocalApp,
    data_dir,
    environment_block,
    instance_key,
    runtime_dir,
    secrets_dir,
    versions_dir,
)
from zdp.platforms.local import confine
from zdp.platforms.local.artifacts import find_artifact, unpack_verified
from zdp.settings import settings

READY_PATH = "/healthz/ready"
_POLL = 0.05
_CONFIG_KEY = re.compile(r"^[A-Za-z0-9_]+$")
_APP_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_KILL_WAIT = 5.0
# All an app process gets from the worker's environment (besides what the runtime sets): never
# the engine's own settings and secrets (ZDP_*, TEMPORAL_*, tokens, database URLs).
PASSED_ENV = frozenset({"PATH", "LANG", "LANGUAGE", "TZ"})
PASS_ENV_VAR = "ZDP_APP_PASS_ENV"  # more names to pass, comma-separated (say SSL_CERT_FILE)
CONFINEMENT_VAR = "ZDP_APP_CONFINEMENT"  # auto (default), landlock or none
_NEVER_PASSED = ("ZDP_", "TEMPORAL_", "APP_", "PYTHON")
# What a confined app may read and execute besides the Python installation and its own code.
_SYSTEM_EXEC = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin")
_SYSTEM_READ = (
    "/etc/localtime", "/etc/timezone", "/etc/ssl", "/etc/ca-certificates", "/etc/pki",
    "/etc/hosts", "/etc/resolv.conf", "/etc/nsswitch.conf", "/etc/host.conf", "/etc/gai.conf",
    "/etc/passwd", "/etc/group", "/etc/mime.types", "/sys/devices/system/cpu",
    "/proc/self",  # resolved when the rules are made: this process, not the worker or others
)  # fmt: skip
_DEVICES = ("/dev/null", "/dev/zero", "/dev/random", "/dev/urandom", "/dev/shm")
_TICK_MS = 1000 / os.sysconf("SC_CLK_TCK")  # /proc/<pid>/stat counts CPU time in clock ticks


class LocalRuntime:
    """Runtime that starts app versions as processes on 127.0.0.1, one per (app, slot)."""

    def __init__(
        self,
        home: Path | None = None,
        base: int | None = None,
        ready_timeout: float = 20.0,
        drain_grace: float = 10.0,
        apps: dict[str, LocalApp] | None = None,
        environment: str | None = None,
    ) -> None:
        self.home = home
        self.base = base
        self.ready_timeout = ready_timeout
        self.drain_grace = drain_grace
        # The environment whose slots this runtime manages (None: block 0, the legacy layout).
        self.environment = environment
        self.apps = {
            name: app.in_environment(environment)
            for name, app in (LOCAL_APPS if apps is None else apps).items()
        }
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._scoped: dict[str, LocalRuntime] = {}
        # (app, slot) -> the open /proc files of the recorded process cpu_times reads.
        self._measured: dict[tuple[str, str], _ProcReader] = {}

    def for_environment(self, environment: str) -> LocalRuntime:
        """The runtime of `environment`'s own slots: its ports, records and data folders, so
        staging and production of one app run side by side."""
        environment_block(environment)  # an environment the stack has no place for: refused
        scoped = self._scoped.get(environment)
        if scoped is None:
            scoped = LocalRuntime(
                self.home, self.base, self.ready_timeout, self.drain_grace, self.apps, environment
            )
            scoped._children = self._children  # one parent of every process it started
            self._scoped[environment] = scoped
        return scoped

    # ------------------------------------------------------------------ the Runtime protocol

    async def provision(
        self, release: ReleaseManifest, slot: str, app_env: str | None = None
    ) -> Deployed:
        app = self.apps.get(release.app)
        if app is None:
            raise ConfigError(
                f"app '{release.app}' cannot run on the local runtime: "
                f"local apps are {', '.join(sorted(self.apps))}"
            )
        if release.artifact.kind != "wheel":
            raise PlatformError(
                f"{release.app} {release.version} is an {release.artifact.kind} release: "
                "the local runtime runs wheels only; deploy it to kubernetes or release a wheel"
            )
        port = app.slot_port(slot, self.base)
        env = self._environment(release, slot, app_env)
        async with self._slot_lock(app.name, slot):
            running = await self._reuse_or_clear(release, slot)
            if running is not None:
                return running
            wheel = await asyncio.to_thread(find_artifact, release.artifact, self.home)
            folder = inside(versions_dir(self.home), app.name, release.version)
            differed = await asyncio.to_thread(unpack_verified, wheel, folder)
            notes = [
                f"the unpacked code of {release.version} differed from its signed wheel "
                f"({'; '.join(differed)}): kept under {folder.parent / '.tampered'} and "
                "unpacked again"
            ] if differed else []  # fmt: skip
            prefix, confinement = self._confinement(release, folder, env)
            if await _answers(port):
                raise PlatformError(
                    f"port {port} of slot {slot} of {app.name} is taken by a process this "
                    "runtime did not start; stop it and provision again"
                )
            record = self._spawn(app, release, slot, port, folder, env, prefix)
            record["notes"] = [confinement, *notes]
            _write_record(self._record_path(app.name, slot), record)  # with what to record
            await self._await_ready(record, describe=f"{app.name} {release.version} in slot {slot}")
            return _deployed(record)

    async def retire(self, app: str, slot: str) -> None:
        """Drain and stop the slot's process; the caller has already set its weight to 0."""
        async with self._slot_lock(app, slot):
            record = _read_record(self._record_path(app, slot))
            if record is not None:
                await self._stop(record)
            self._record_path(app, slot).unlink(missing_ok=True)

    async def endpoints(self, app: str, slot: str) -> list[str]:
        found = await self.deployed(app, slot)
        return list(found.endpoints) if found else []

    async def deployed(self, app: str, slot: str) -> Deployed | None:
        record = _read_record(self._record_path(app, slot))
        if record is None or not self._is_ours(record):
            return None
        return _deployed(record)

    # ------------------------------------------------------------------ ProcessStats

    def cpu_times(self, app: str, slot: str) -> CpuTimes | None:
        """The scheduler's counters of the slot's process (/proc/<pid>/schedstat and stat), for
        the health gate: a process kept from a CPU by a busy machine is not a slow release. The
        gate reads them every tick: the record is read again only when it changes, and the
        /proc files stay open (read in place: a few microseconds, where opening them costs
        tens). None when the slot runs nothing of ours."""
        key = (app, slot)
        known = self._measured.get(key)
        path = known.record if known is not None else self._record_path(app, slot)
        try:
            mtime = path.stat().st_mtime_ns
        except OSError:
            mtime = None
        if known is not None and known.mtime != mtime:  # another process, or none now
            known.close()
            del self._measured[key]
            known = None
        if mtime is None:
            return None
        if known is None:
            record = _read_record(path)
            if record is None or not self._is_ours(record):
                return None
            known = _ProcReader.open(record["pid"], record.get("proc_start"), path, mtime)
            if known is None:
                return None
            self._measured[key] = known
        times = known.read()
        if times is None:  # gone, or the pid is someone else's now
            known.close()
            self._measured.pop(key, None)
        return times

    # ------------------------------------------------------------------ steps of provision

    async def _reuse_or_clear(self, release: ReleaseManifest, slot: str) -> Deployed | None:
        """The running version when it is this release; refuse another one; drop stale records."""
        path = self._record_path(release.app, slot)
        record = _read_record(path)
        if record is None:
            return None
        if not self._is_ours(record):  # stale: gone, exiting, or the pid was reused
            await self._exits_within(record, _KILL_WAIT)  # an exiting one frees its port first
            path.unlink(missing_ok=True)
            return None
        if record["version"] != release.version:
            raise PlatformError(
                f"slot {slot} of {release.app} runs {record['version']}; "
                f"retire it before provisioning {release.version}"
            )
        if record["digest"] != release.artifact.digest:
            raise PlatformError(
                f"slot {slot} of {release.app} runs {release.version} built from "
                f"{record['digest']}, not {release.artifact.digest}; retire it before "
                "provisioning this build"
            )
        await self._await_ready(record, describe=f"{release.app} {release.version} in slot {slot}")
        return _deployed(record)

    def _environment(
        self, release: ReleaseManifest, slot: str, app_env: str | None
    ) -> dict[str, str]:
        """The app's whole environment: from ours only PATH, the locale, TZ and the names in
        ZDP_APP_PASS_ENV (never ZDP_*, TEMPORAL_*, APP_* or PYTHON*); its data folder (also its
        HOME and TMPDIR; a default a release may override), the target environment's secrets
        (files in $ZDP_HOME/secrets/<app>/<APP_ENV>/, each given as APP_<FILE NAME>=<path>),
        the release's overrides and what the engine sets (APP_ENV, APP_VERSION, APP_SLOT)."""
        env = {
            key: value
            for key, value in os.environ.items()
            if (key in PASSED_ENV or key.startswith("LC_") or key in _extra_passed_env())
            and not key.startswith(_NEVER_PASSED)
        }
        data = self._data_dir(release.app)
        (data / "tmp").mkdir(parents=True, exist_ok=True)
        ours = release_environment(release, slot, app_env)
        env.update(HOME=str(data), TMPDIR=str(data / "tmp"), APP_DATA_DIR=str(data))
        env.update(self._secrets(release.app, ours["APP_ENV"]))
        env.update(ours)
        env.update(PYTHONUNBUFFERED="1", PYTHONDONTWRITEBYTECODE="1", PYTHONNOUSERSITE="1")
        return env

    def _confinement(
        self, release: ReleaseManifest, folder: Path, env: dict[str, str]
    ) -> tuple[list[str], str]:
        """The command prefix that confines the app (zdp/platforms/local/confine.py), and what goes
        on the record about it. ZDP_APP_CONFINEMENT: `auto` (Landlock where the kernel has it,
        else unconfined, but never for production), `landlock` (required) or `none`."""
        mode = settings().APP_CONFINEMENT
        if mode == "none":
            return [], f"not confined: {CONFINEMENT_VAR}=none"
        abi = confine.landlock_abi()
        if abi < 1 and (mode == "landlock" or env["APP_ENV"] == "production"):
            raise PlatformError(
                f"{release.app} {release.version} is not started: this kernel has no Landlock, "
                "so the app could read the engine's keys and secrets; run it on Linux 5.13 or "
                f"later, or set {CONFINEMENT_VAR}=none to start it unconfined knowingly"
            )
        if abi < 1:
            return [], "not confined: this kernel has no Landlock"
        home = (self.home or versions_dir().parent).resolve()
        executable = [sys.prefix, sys.base_prefix, sys.exec_prefix, *_SYSTEM_EXEC]
        for path in executable:
            if home.is_relative_to(Path(path).resolve()):
                raise PlatformError(
                    f"cannot confine {release.app}: the engine's home {home} lies inside {path}, "
                    "which apps may read; move ZDP_HOME out of it"
                )
        secrets = inside(secrets_dir(self.home), release.app, env["APP_ENV"])
        readable = [*_SYSTEM_READ, *_DEVICES[:4], str(secrets)]
        # The engine's data folder for the app, never one a release names.
        writable = [str(self._data_dir(release.app)), "/dev/shm", *_DEVICES[:2]]
        prefix = [sys.executable, "-I", confine.__file__]
        for flag, paths in (("--exec", [*executable, str(folder)]), ("--read", readable),
                            ("--write", writable)):  # fmt: skip
            for path in dict.fromkeys(paths):
                prefix += [flag, path]
        return [*prefix, "--"], (
            f"confined (Landlock ABI {abi}): reads only the Python installation, the system "
            "libraries and its own code and secrets, writes only its data folder"
        )

    def _secrets(self, app: str, app_env: str) -> dict[str, str]:
        """APP_<NAME>=<path> for each file in the environment's secrets folder: secrets reach
        an app by reference (a file), never as text in a release."""
        folder = inside(secrets_dir(self.home), app, app_env)
        if not folder.is_dir():
            return {}
        found: dict[str, str] = {}
        for path in sorted(folder.iterdir()):
            if path.is_file() and _CONFIG_KEY.match(path.name):
                found[f"APP_{path.name.upper()}"] = str(path)
        return found

    def _spawn(
        self,
        app: LocalApp,
        release: ReleaseManifest,
        slot: str,
        port: int,
        folder: Path,
        env: dict[str, str],
        prefix: list[str],
    ) -> dict[str, Any]:
        env["PYTHONPATH"] = str(folder)
        log_path = self._record_path(app.name, slot).with_suffix(".log")
        started_at = datetime.now(UTC).isoformat()
        command = [
            *prefix, sys.executable, "-m", app.package, "--host", "127.0.0.1", "--port", str(port)
        ]  # fmt: skip
        with log_path.open("ab") as log:
            log.write(f"--- {started_at} {app.name} {release.version} on :{port}\n".encode())
            log.flush()
            log_offset = log.tell()
            try:
                child = subprocess.Popen(
                    command,
                    cwd=folder,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as exc:
                raise PlatformError(f"cannot start {app.name} {release.version}: {exc}") from exc
        self._children[child.pid] = child
        record: dict[str, Any] = {
            "app": app.name,
            "slot": slot,
            "package": app.package,
            "pid": child.pid,
            "port": port,
            "version": release.version,
            "environment": self.environment,
            "digest": release.artifact.digest,
            "config": dict(release.config_overrides),
            "started_at": started_at,
            "proc_start": _proc_start(child.pid),
            "log_offset": log_offset,
        }
        try:
            _write_record(self._record_path(app.name, slot), record)
        except BaseException:
            child.kill()  # unrecorded, nobody could ever find and stop it
            child.wait(_KILL_WAIT)
            raise
        return record

    async def _await_ready(self, record: dict[str, Any], describe: str) -> None:
        """Poll /healthz/ready until 200; on exit or timeout stop it, drop the record, raise."""
        url = f"http://127.0.0.1:{record['port']}{READY_PATH}"
        deadline = time.monotonic() + self.ready_timeout
        async with httpx.AsyncClient(trust_env=False, timeout=1.0) as client:
            while True:
                if self._exited(record):
                    code = self._exit_code(record["pid"])
                    problem = "exited" if code is None else f"exited with code {code}"
                    reason = f"{describe} {problem} before it was ready"
                    break
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(url)).status_code == 200:
                        return
                if time.monotonic() >= deadline:
                    reason = f"{describe} not ready after {self.ready_timeout:g} s; stopped it"
                    break
                await asyncio.sleep(_POLL)
        await self._stop(record)
        self._record_path(record["app"], record["slot"]).unlink(missing_ok=True)
        tail = _log_tail(self._record_path(record["app"], record["slot"]).with_suffix(".log"),
                         record.get("log_offset", 0))  # fmt: skip
        raise PlatformError(f"{reason}: {tail}" if tail else reason)

    # ------------------------------------------------------------------ stopping

    async def _stop(self, record: dict[str, Any]) -> None:
        """SIGTERM, wait up to drain_grace, then SIGKILL the group; only if the pid is ours."""
        pid = record["pid"]
        if not self._exited(record):
            if self._is_ours(record):  # else it is already exiting: its command line is gone
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
            if not await self._exits_within(record, self.drain_grace):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
                if not await self._exits_within(record, _KILL_WAIT):
                    raise PlatformError(
                        f"{record['app']} {record['version']} (pid {pid}) in slot "
                        f"{record['slot']} survived SIGKILL for {_KILL_WAIT:g} s"
                    )
        self._children.pop(pid, None)

    async def _exits_within(self, record: dict[str, Any], seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while not self._exited(record):
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(_POLL)
        return True

    def _exited(self, record: dict[str, Any]) -> bool:
        """Whether the recorded process is gone: dead, a zombie, or its pid now someone else's.

        An exiting process loses its command line before it closes its sockets, so once a
        process is known to be ours, its pid and start time (not its command line) say whether
        it is still there.
        """
        child = self._children.get(record["pid"])
        if child is not None and child.poll() is not None:
            return True  # our child exited (and is now reaped)
        fields = _proc_stat(record["pid"])
        if not fields or fields[0] in ("Z", "X"):
            return True
        if record.get("proc_start") is None:
            return not _is_ours(record)
        return int(fields[19]) != record["proc_start"]

    def _is_ours(self, record: dict[str, Any]) -> bool:
        """Alive and running the app package on the slot's port, as recorded."""
        return not self._exited(record) and _is_ours(record)

    def _exit_code(self, pid: int) -> int | None:
        child = self._children.get(pid)
        return None if child is None else child.poll()

    # ------------------------------------------------------------------ files

    def _key(self, app: str) -> str:
        """The folder name of `app` in this runtime's environment (`LocalApp.key`)."""
        if not _APP_NAME.match(app):
            raise ConfigError(f"'{app}' is not an app name: lowercase letters, digits and '-'")
        return instance_key(app, self.environment)

    def _data_dir(self, app: str) -> Path:
        return data_dir(self._key(app), self.home)

    def _record_path(self, app: str, slot: str) -> Path:
        if slot not in SLOTS:
            raise ConfigError(f"unknown slot '{slot}': use one of {', '.join(SLOTS)}")
        return runtime_dir(self.home) / self._key(app) / f"{slot}.json"

    @contextlib.asynccontextmanager
    async def _slot_lock(self, app: str, slot: str) -> AsyncIterator[None]:
        """One provision or retire per slot at a time, across coroutines and processes."""
        path = self._record_path(app, slot).with_suffix(".lock")
        path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.ready_timeout + self.drain_grace + 2 * _KILL_WAIT
        with path.open("a") as handle:
            while True:
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise PlatformError(
                            f"slot {slot} of {app} is busy: another provision or retire holds "
                            f"{path}; try again"
                        ) from None
                    await asyncio.sleep(_POLL)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


# ---------------------------------------------------------------------- module helpers


def _extra_passed_env() -> set[str]:
    """The names in ZDP_APP_PASS_ENV (what an operator chose to pass on, say SSL_CERT_FILE)."""
    return settings().app_pass_env


def running(home: Path | None = None) -> list[dict[str, Any]]:
    """Every recorded slot whose process is alive and ours (for `zdp up --status`)."""
    live = []
    for path in sorted(runtime_dir(home).glob("*/*.json")):
        record = _read_record(path)
        if record is not None and _is_ours(record):
            live.append(record)
    return live


async def stop_all(home: Path | None = None, drain_grace: float = 10.0) -> list[dict[str, Any]]:
    """Retire every recorded slot (for `zdp down`); returns the records of live ones stopped."""
    runtime = LocalRuntime(home=home, drain_grace=drain_grace)
    stopped = running(home)
    for path in sorted(runtime_dir(home).glob("*/*.json")):
        app, _, environment = path.parent.name.partition("@")  # `<app>@<environment>`
        scoped = runtime.for_environment(environment) if environment else runtime
        await scoped.retire(app, path.stem)
    return stopped


def _deployed(record: dict[str, Any]) -> Deployed:
    return Deployed(
        app=record["app"],
        slot=record["slot"],
        version=record["version"],
        endpoints=[f"http://127.0.0.1:{record['port']}"],
        config=record.get("config"),  # None in records from before config was kept
        notes=list(record.get("notes", [])),
    )


def _read_record(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    keys = ("app", "slot", "package", "pid", "port", "version", "digest")
    if not isinstance(data, dict) or any(key not in data for key in keys):
        return None
    return data


def _write_record(path: Path, record: dict[str, Any]) -> None:
    """Write a slot record atomically (temp file, fsync, rename)."""
    write_file_atomic(path, json.dumps(record, indent=2).encode())


def _proc_stat(pid: int) -> list[str] | None:
    """Fields 3.. of /proc/<pid>/stat (after the command name), or None when there is no pid."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


class _ProcReader:
    """One process's /proc/<pid>/schedstat and stat, kept open and read in place (procfs makes
    the text anew at each read from offset 0)."""

    def __init__(
        self, fds: tuple[int, int], proc_start: int | None, record: Path, mtime: int
    ) -> None:
        # The slot's record, and its mtime when the process was looked up from it.
        self.fds, self.proc_start, self.record, self.mtime = fds, proc_start, record, mtime

    @classmethod
    def open(cls, pid: int, proc_start: int | None, record: Path, mtime: int) -> _ProcReader | None:
        try:
            sched = os.open(f"/proc/{pid}/schedstat", os.O_RDONLY)
        except OSError:
            return None
        try:
            stat = os.open(f"/proc/{pid}/stat", os.O_RDONLY)
        except OSError:
            os.close(sched)
            return None
        return cls((sched, stat), proc_start, record, mtime)

    def read(self) -> CpuTimes | None:
        """schedstat: the main thread's ns on a CPU and waiting on a run queue; stat: its state,
        and user + system time of all threads. None when the process is gone or is not the one
        recorded (another start time)."""
        try:
            sched = os.pread(self.fds[0], 256, 0).split()
            stat = os.pread(self.fds[1], 4096, 0)
        except OSError:
            return None
        fields = stat[stat.rindex(b")") + 2 :].split()
        state = fields[0].decode()
        if state in ("Z", "X") or (
            self.proc_start is not None and int(fields[19]) != self.proc_start
        ):
            return None
        return CpuTimes(
            waiting_ms=int(sched[1]) / 1e6,
            running_ms=int(sched[0]) / 1e6,
            process_cpu_ms=(int(fields[11]) + int(fields[12])) * _TICK_MS,
            state=state,
        )

    def close(self) -> None:
        for fd in self.fds:
            with contextlib.suppress(OSError):
                os.close(fd)


def _proc_start(pid: int) -> int | None:
    fields = _proc_stat(pid)
    return int(fields[19]) if fields else None


def _is_ours(record: dict[str, Any]) -> bool:
    """Alive (not a zombie), same start time, and running the app package on the slot's port."""
    pid = record["pid"]
    fields = _proc_stat(pid)
    if not fields or fields[0] in ("Z", "X"):
        return False
    if record.get("proc_start") is not None and int(fields[19]) != record["proc_start"]:
        return False
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return False
    pairs = set(itertools.pairwise(argv))
    return ("-m", record["package"]) in pairs and ("--port", str(record["port"])) in pairs


async def _answers(port: int) -> bool:
    """Whether something already listens on 127.0.0.1:<port>."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 1.0)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


def _log_tail(path: Path, offset: int, lines: int = 5, limit: int = 600) -> str:
    """The last lines this start wrote to the slot log, joined into one line."""
    try:
        with path.open("rb") as log:
            log.seek(offset)
            text = log.read().decode(errors="replace")
    except OSError:
        return ""
    kept = [line.strip() for line in text.splitlines() if line.strip()][-lines:]
    return " | ".join(kept)[-limit:]
