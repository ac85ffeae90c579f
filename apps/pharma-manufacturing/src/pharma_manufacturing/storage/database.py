"""The SQLAlchemy engine, URL-driven; SQLite is set up for two processes sharing one file.

Two versions of the app (stable and canary, or blue and green) run side by side against the
same SQLite file, so every connection uses WAL (readers never wait for the writer) and a busy
timeout (a writer waits for the other process's write instead of failing). Write transactions
start with BEGIN IMMEDIATE: taking the write lock up front means a transaction that reads and
then writes cannot fail halfway with SQLITE_BUSY when the other process wrote in between.

The services rely on that: a write transaction checks, then writes (the next step number, what
is left of a lot, whether a batch is still open). On PostgreSQL a write transaction therefore
starts by taking a transaction-level advisory lock, so writers run one at a time there too,
across every replica; readers never wait for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import StaticPool

SQLITE_FILE_NAME = "pharma-manufacturing.db"
# PostgreSQL: the advisory lock every write transaction holds (SQLite's BEGIN IMMEDIATE).
PG_WRITE_LOCK = 7_302_012

T = TypeVar("T")


def sqlite_url(data_dir: Path) -> str:
    """The database URL for the app's SQLite file in `data_dir`."""
    return f"sqlite:///{data_dir / SQLITE_FILE_NAME}"


class Database:
    """One engine for the process; `reading()` and `writing()` hand out connections."""

    def __init__(self, url: str, busy_timeout_ms: int = 5000) -> None:
        self.url = make_url(url)
        self.dialect = self.url.get_backend_name()
        if self.dialect == "sqlite":
            self.engine = _sqlite_engine(url, busy_timeout_ms)
        else:
            self.engine = create_engine(url, pool_pre_ping=True)

    def describe(self) -> str:
        """The URL with any password masked, for logs."""
        return self.url.render_as_string(hide_password=True)

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A connection for reads; its transaction is rolled back when the block ends."""
        with self.engine.connect() as connection:
            yield connection

    @contextmanager
    def writing(self) -> Iterator[Connection]:
        """A connection in a write transaction, committed when the block ends without error."""
        with self.engine.connect() as connection:
            connection.execution_options(sqlite_begin="IMMEDIATE")
            with connection.begin():
                if self.dialect == "postgresql":
                    connection.execute(
                        text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_WRITE_LOCK}
                    )
                yield connection

    async def read(self, query: Callable[..., T], *args: Any) -> T:
        """Run a blocking read from async code.

        On SQLite it runs inline: under WAL a read never waits for the writer and takes a
        fraction of a millisecond, less than the hop to a worker thread and back (measured:
        the batch read costs about twice as much through the thread pool). On a server
        database it runs in a worker thread, so network round trips never block the loop.
        """
        if self.dialect == "sqlite":
            return query(*args)
        return await asyncio.to_thread(query, *args)

    def dispose(self) -> None:
        """Close every pooled connection (on shutdown)."""
        self.engine.dispose()


def _sqlite_engine(url: str, busy_timeout_ms: int) -> Engine:
    parsed = make_url(url)
    options: dict[str, Any] = {
        "connect_args": {"timeout": busy_timeout_ms / 1000, "check_same_thread": False}
    }
    if parsed.database in (None, "", ":memory:"):
        options["poolclass"] = StaticPool  # one shared in-memory database, for experiments only
    engine = create_engine(url, **options)

    @event.listens_for(engine, "connect")
    def configure(dbapi_connection: Any, _: Any) -> None:
        # pysqlite's own transaction handling would not put DDL inside a transaction and
        # always begins DEFERRED; take it over (SQLAlchemy's documented recipe) and begin
        # explicitly in `begin` below, so migrations are atomic and writes lock up front.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")  # durable at each checkpoint under WAL
        cursor.close()

    @event.listens_for(engine, "begin")
    def begin(connection: Connection) -> None:
        mode = connection.get_execution_options().get("sqlite_begin", "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")

    return engine
