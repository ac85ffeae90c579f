"""Test helpers for pharma-manufacturing: the demo users, request bodies, direct SQL access
(waiting for readiness to change is ops_kit.testing's).

The passwords are the documented demo ones (README.md, "Demo users"); local.yaml holds only
their scrypt hashes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ops_kit.readiness import CHECK_THREAD_NAME
from sqlalchemy import Connection, Engine, create_engine

PASSWORDS = {"olivia": "demo-olivia", "sam": "demo-sam", "quinn": "demo-quinn"}
DB_FILE = "pharma-manufacturing.db"


def as_user(user: str, password: str | None = None) -> dict[str, str]:
    """Request headers that sign in as a demo user."""
    return {"X-User": user, "X-Password": password or PASSWORDS[user]}


def drill_user(user: str = "quinn", password: str | None = None) -> dict[str, str]:
    """Headers for POST /drill/faults: a QA user (quinn) by default, the role drills need."""
    return as_user(user, password)


def signature(user: str, meaning: str = "performed", password: str | None = None) -> dict[str, str]:
    """An e-signature block: the signer re-authenticates with the password."""
    return {"user_id": user, "password": password or PASSWORDS[user], "meaning": meaning}


def step_body(
    step: str = "granulation", user: str = "olivia", **parameters: float
) -> dict[str, Any]:
    return {
        "step": step,
        "parameters": parameters or {"temperature_c": 41.5},
        "signature": signature(user),
    }


def write_headers(key: str, user: str = "olivia") -> dict[str, str]:
    """Sign in as `user` with an Idempotency-Key."""
    return {**as_user(user), "Idempotency-Key": key}


@contextmanager
def sqlite_engine(data_dir: Path) -> Iterator[Engine]:
    """A plain engine on the app's SQLite file, as another process (or a tamperer) has it."""
    engine = create_engine(f"sqlite:///{data_dir / DB_FILE}")
    try:
        yield engine
    finally:
        engine.dispose()


@contextmanager
def sql(data_dir: Path) -> Iterator[Connection]:
    """A connection in a transaction on the app's SQLite file, committed at the end."""
    with sqlite_engine(data_dir) as engine, engine.begin() as connection:
        yield connection


def in_readiness_check() -> bool:
    """Whether this runs in the background readiness check, whose queries a test that counts
    a request's queries leaves out."""
    return threading.current_thread().name == CHECK_THREAD_NAME
