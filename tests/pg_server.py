"""A throwaway PostgreSQL cluster for tests: initdb in a temp folder, serve it on a free loopback
port, stop it by pid and remove the folder.

Any test folder can use it; a test module defines its own session fixture around it:

    @pytest.fixture(scope="session")
    def postgres() -> Iterator[PostgresServer]:
        yield from serve_or_skip()

and `postgres.create_database()` gives each test a fresh database (trust auth, loopback only).
Where the server cannot run (binaries missing, running as root with no `postgres` user to run
it as, initdb or start-up failing), the tests are skipped and the reason is the skip message.
The server refuses to run as root, so as root the cluster belongs to the `postgres` user.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.ports import free_port

BIN_ENV = "ZDP_TEST_PG_BIN"  # a folder holding initdb, postgres and pg_ctl, if not the default
DEBIAN_BIN = Path("/usr/lib/postgresql/15/bin")
INSTALL_HINT = (
    f"apt-get install -y postgresql-15 (Debian/Ubuntu), or set {BIN_ENV} to the folder "
    "holding initdb, postgres and pg_ctl"
)
SERVER_USER = "postgres"  # the OS user the server runs as when the tests run as root
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
_PORT_ATTEMPTS = 3  # another process may take the free port before the server binds it


class PostgresUnavailableError(Exception):
    """This machine cannot run a PostgreSQL server; the message says why (the skip reason)."""


@dataclass(frozen=True)
class PostgresServer:
    """A running throwaway cluster: superuser `postgres`, trust auth on 127.0.0.1 only."""

    port: int
    pid: int
    folder: Path

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, prefix: str = "test") -> str:
        """A new empty database (its name starts with `prefix`); returns its URL."""
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True, connect_timeout=5) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@dataclass(frozen=True)
class _Owner:
    """Who the cluster's processes run as: None for this process's own user."""

    uid: int | None = None
    gid: int | None = None

    def popen_options(self) -> dict[str, Any]:
        if self.uid is None:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}


def find_binaries() -> Path:
    """The folder holding initdb, postgres and pg_ctl."""
    candidates = [Path(os.environ[BIN_ENV])] if os.environ.get(BIN_ENV) else [DEBIAN_BIN]
    found = shutil.which("initdb")
    if found and not os.environ.get(BIN_ENV):
        candidates.append(Path(found).parent)
    for folder in candidates:
        if all((folder / name).is_file() for name in ("initdb", "postgres", "pg_ctl")):
            return folder
    raise PostgresUnavailableError(
        f"PostgreSQL server binaries not found in {', '.join(map(str, candidates))}: {INSTALL_HINT}"
    )


def _owner() -> _Owner:
    if os.geteuid() != 0:
        return _Owner()
    try:
        entry = pwd.getpwnam(SERVER_USER)
    except KeyError:
        raise PostgresUnavailableError(
            f"running as root, and there is no `{SERVER_USER}` user to run the server as "
            "(PostgreSQL refuses to run as root)"
        ) from None
    return _Owner(entry.pw_uid, entry.pw_gid)


def _tail(path: Path, lines: int = 6) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(text[-lines:]) or "(empty log)"


def _run(command: list[str], owner: _Owner, folder: Path, timeout_s: float) -> None:
    """Run a server tool as the cluster's owner; PostgresUnavailableError with its output."""
    try:
        done = subprocess.run(
            command,
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
            **owner.popen_options(),
        )
    except PermissionError as err:
        raise PostgresUnavailableError(
            f"cannot run {Path(command[0]).name} as `{SERVER_USER}`: {err.strerror}"
        ) from None
    except subprocess.TimeoutExpired:
        raise PostgresUnavailableError(
            f"{Path(command[0]).name} did not finish within {timeout_s:g} s"
        ) from None
    if done.returncode != 0:
        output = " | ".join((done.stderr or done.stdout).strip().splitlines()[-4:])
        raise PostgresUnavailableError(
            f"{Path(command[0]).name} exited with {done.returncode}: {output}"
        )


def _init_cluster(bindir: Path, data: Path, owner: _Owner) -> None:
    """initdb with trust auth, then allow 127.0.0.1 and the private socket only."""
    options = ["--username=postgres", "--auth=trust", "--encoding=UTF8", "--no-locale"]
    command = [str(bindir / "initdb"), f"--pgdata={data}", *options, "--no-sync"]
    _run([*command, "--no-instructions"], owner, data.parent, timeout_s=60)
    # Rewritten in place, so it keeps the owner and mode initdb gave it.
    (data / "pg_hba.conf").write_text("local all all trust\nhost all all 127.0.0.1/32 trust\n")


def _answers(port: int) -> bool:
    try:
        with psycopg.connect(
            host="127.0.0.1", port=port, user="postgres", dbname="postgres", connect_timeout=1
        ):
            return True
    except psycopg.OperationalError:
        return False


def _start(
    bindir: Path, data: Path, owner: _Owner, timeout_s: float
) -> tuple[subprocess.Popen[bytes], int]:
    """The postmaster, answering on a free loopback port; retried if the port was taken."""
    folder = data.parent
    for attempt in range(_PORT_ATTEMPTS):
        port = free_port()
        log_path = folder / f"server-{port}.log"
        with log_path.open("wb") as log:
            try:
                server = subprocess.Popen(
                    [str(bindir / "postgres"), "-D", str(data), *_settings(port, folder)],
                    cwd=folder,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group: stopped as one below
                    **owner.popen_options(),
                )
            except PermissionError as err:
                raise PostgresUnavailableError(
                    f"cannot start postgres as `{SERVER_USER}`: {err.strerror}"
                ) from None
        if _wait_until_answering(server, port, log_path, timeout_s):
            return server, port
        if "already in use" not in _tail(log_path) or attempt == _PORT_ATTEMPTS - 1:
            raise PostgresUnavailableError(
                f"postgres exited with {server.returncode} at start-up: {_tail(log_path)}"
            )
    raise AssertionError("unreachable")


def _settings(port: int, folder: Path) -> list[str]:
    settings = {
        "port": port,
        "listen_addresses": "127.0.0.1",
        "unix_socket_directories": folder,  # the socket stays in the private folder
        "fsync": "off",  # a throwaway cluster: speed over durability
        "synchronous_commit": "off",
        "full_page_writes": "off",
    }
    return [f"--{name}={value}" for name, value in settings.items()]


def _wait_until_answering(
    server: subprocess.Popen[bytes], port: int, log_path: Path, timeout_s: float
) -> bool:
    """True once the server accepts connections; False if it exited first."""
    deadline = time.monotonic() + timeout_s
    while not _answers(port):
        if server.poll() is not None:
            return False
        if time.monotonic() > deadline:
            _kill(server)
            raise PostgresUnavailableError(
                f"postgres did not accept connections within {timeout_s:g} s: {_tail(log_path)}"
            )
        time.sleep(0.05)
    return True


def _kill(server: subprocess.Popen[bytes]) -> None:
    """SIGKILL the server's process group (the postmaster and its backends), then reap it.

    Only while the postmaster is not reaped: until then its pid, the group's id, is ours."""
    if server.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        server.wait(timeout=STOP_TIMEOUT_S)


def _stop(bindir: Path, data: Path, owner: _Owner, server: subprocess.Popen[bytes]) -> None:
    """pg_ctl stop -m fast (it signals the pid in postmaster.pid); SIGKILL if that fails."""
    if server.poll() is None:
        with contextlib.suppress(PostgresUnavailableError):
            _run(
                [str(bindir / "pg_ctl"), "stop", "-D", str(data), "-m", "fast", "-w", "-t", "10"],
                owner,
                data.parent,
                timeout_s=STOP_TIMEOUT_S,
            )
    try:
        server.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        _kill(server)


@contextlib.contextmanager
def running_postgres(timeout_s: float = START_TIMEOUT_S) -> Iterator[PostgresServer]:
    """Start a throwaway cluster; stop it by pid and remove its folder on exit.

    Raises PostgresUnavailableError, before yielding, when the server cannot run here.
    """
    bindir = find_binaries()
    owner = _owner()
    folder = Path(tempfile.mkdtemp(prefix="zdp-pg-"))
    try:
        if owner.uid is not None:
            os.chown(folder, owner.uid, owner.gid or 0)
        data = folder / "data"
        _init_cluster(bindir, data, owner)
        server, port = _start(bindir, data, owner, timeout_s)
        try:
            yield PostgresServer(port=port, pid=server.pid, folder=folder)
        finally:
            _stop(bindir, data, owner, server)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def serve_or_skip() -> Iterator[PostgresServer]:
    """The body of a session fixture: a running cluster, or a skip naming why there is none."""
    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(running_postgres())
        except PostgresUnavailableError as err:
            pytest.skip(f"PostgreSQL cannot run here: {err}")
        yield server
