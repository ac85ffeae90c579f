"""Small file and process helpers shared by the core: atomic writes, log tails, /proc reads."""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import time
from pathlib import Path

from zdp.errors import ReleaseError, ZdpError


def write_file_atomic(
    path: Path, data: bytes, *, mode: int = 0o644, overwrite: bool = True
) -> None:
    """Write `data` to `path` all at once: temp file in the same folder, fsync, then rename.

    With `overwrite=False` the temp file is hard-linked into place, which fails with
    FileExistsError instead of replacing a file that appeared in the meantime.
    """
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)
            tmp.unlink()
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    with contextlib.suppress(OSError):  # make the rename itself durable where the OS allows
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def tail_log(path: Path, lines: int = 5) -> str:
    """The last `lines` lines of a log as one line (for an error message)."""
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(text[-lines:]) or "(empty log)"


def proc_cmdline(pid: int) -> list[str]:
    """A process's argv from /proc; empty if it is gone or a zombie."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def rotate_log(path: Path, keep: int = 3) -> None:
    """Move `path` to `path.1` (and `.1` to `.2` …, keeping `keep`) so a new process starts a
    fresh log without emptying the last one: a crashed process's last lines stay readable."""
    try:
        if not path.exists() or path.stat().st_size == 0:
            return
        for n in range(keep - 1, 0, -1):
            older = path.with_name(f"{path.name}.{n}")
            if older.exists():
                older.replace(path.with_name(f"{path.name}.{n + 1}"))
        path.replace(path.with_name(f"{path.name}.1"))
    except OSError as err:
        raise ZdpError(f"cannot rotate {path}: {err.strerror}") from None


def inside(base: Path, *parts: str) -> Path:
    """`base/parts…`, proven to stay inside `base` once resolved (no '..', no absolute part,
    no symlink out); ReleaseError (not retried) naming the escape otherwise. Every path built
    from release data goes through here."""
    root = base.resolve()
    path = root.joinpath(*parts)
    resolved = path.resolve()
    if any(not p or Path(p).is_absolute() or p in (".", "..") for p in parts) or (
        resolved != root and root not in resolved.parents
    ):
        raise ReleaseError(f"{'/'.join(parts)!r} would lead outside {root}: refused")
    return path


def pid_alive(pid: int, needle: str) -> bool:
    """True if `pid` runs and its command line contains `needle` (never trust a recycled pid)."""
    return needle in " ".join(proc_cmdline(pid))


def stop_pid(pid: int, needle: str, grace: float = 10.0) -> bool:
    """SIGTERM the process, then SIGKILL after `grace` seconds; only if it is still ours."""
    if not pid_alive(pid, needle):
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not pid_alive(pid, needle):
            return True
        time.sleep(0.05)
    if pid_alive(pid, needle):
        os.kill(pid, signal.SIGKILL)
    return True
