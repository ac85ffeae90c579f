"""A throwaway PostgreSQL cluster that can be stopped and started again on the same port, for
outage tests: clients keep their URL, and what was committed before the stop is still there
after it (the data folder is kept). Built on tests/pg_server.py; stopped by pid on exit.

    with outage_postgres() as pg:   # PostgresUnavailableError when it cannot run here
        url = pg.create_database()
        pg.stop()                   # pg_ctl stop -m fast: sessions end, connections refused
        pg.start()                  # the same cluster, the same port
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from tests.pg_server import (
    START_TIMEOUT_S,
    PostgresUnavailableError,
    _init_cluster,
    _Owner,
    _owner,
    _settings,
    _stop,
    _tail,
    _wait_until_answering,
    find_binaries,
)
from tests.ports import free_port


@dataclass
class OutagePostgres:
    """A cluster on a fixed port whose server process comes and goes."""

    bindir: Path
    folder: Path
    owner: _Owner
    port: int
    server: subprocess.Popen[bytes] | None = field(default=None)

    @property
    def data(self) -> Path:
        return self.folder / "data"

    @property
    def running(self) -> bool:
        return self.server is not None and self.server.poll() is None

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, prefix: str = "test") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True, connect_timeout=5) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        log_path = self.folder / "server.log"
        with log_path.open("ab") as log:
            self.server = subprocess.Popen(
                [str(self.bindir / "postgres"), "-D", str(self.data),
                 *_settings(self.port, self.folder)],
                cwd=self.folder,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **self.owner.popen_options(),
            )  # fmt: skip
        if not _wait_until_answering(self.server, self.port, log_path, timeout_s):
            raise PostgresUnavailableError(
                f"postgres exited with {self.server.returncode} at start-up: {_tail(log_path)}"
            )

    def stop(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            _stop(self.bindir, self.data, self.owner, server)


@contextlib.contextmanager
def outage_postgres() -> Iterator[OutagePostgres]:
    """A running cluster that may be stopped and started; stopped and removed on exit.

    Raises PostgresUnavailableError, before yielding, when the server cannot run here."""
    bindir = find_binaries()
    owner = _owner()
    folder = Path(tempfile.mkdtemp(prefix="zdp-pg-outage-"))
    try:
        if owner.uid is not None:
            os.chown(folder, owner.uid, owner.gid or 0)
        _init_cluster(bindir, folder / "data", owner)
        pg = OutagePostgres(bindir, folder, owner, free_port())
        try:
            pg.start()
            yield pg
        finally:
            pg.stop()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
