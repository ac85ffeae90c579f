"""A small disk for tests: a tmpfs of a few MB mounted on a folder, filled up and freed at will.

Mounting needs root (or CAP_SYS_ADMIN); where it is refused, the test is skipped and the skip
says why (`small_disk`), or SmallDiskUnavailable says it (`mounted_small_disk`, for benches).
The mount is removed when the block ends, whatever happened.

    with small_disk(tmp_path / "audit") as disk:
        disk.fill()  # every write that needs a new page now fails with ENOSPC
        ...
        disk.free()
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

FILLER = ".filler"
_CHUNK = b"\0" * 65536


class SmallDiskUnavailable(Exception):
    """No small disk can be mounted here; the message says why."""


@dataclass(frozen=True)
class SmallDisk:
    """A mounted tmpfs: `fill` takes every free page, `free` gives them back."""

    path: Path

    def fill(self) -> None:
        fd = os.open(self.path / FILLER, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            while True:
                try:
                    os.write(fd, _CHUNK)
                except OSError as err:
                    if err.errno != errno.ENOSPC:
                        raise
                    break
        finally:
            os.close(fd)
        if os.statvfs(self.path).f_bavail != 0:
            raise AssertionError(f"{self.path} still has free blocks after filling it")

    def free(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.path / FILLER).unlink()


@contextlib.contextmanager
def mounted_small_disk(path: Path, size: str = "1m") -> Iterator[SmallDisk]:
    """A tmpfs of `size` mounted on `path` (created if missing), unmounted on exit;
    SmallDiskUnavailable, before yielding, when it cannot be mounted."""
    mount, umount = shutil.which("mount"), shutil.which("umount")
    if mount is None or umount is None:
        raise SmallDiskUnavailable("mount/umount not installed (util-linux)")
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [mount, "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if done.returncode != 0:
        reason = " ".join((done.stderr or done.stdout).split()) or f"exit {done.returncode}"
        raise SmallDiskUnavailable(
            f"cannot mount a tmpfs on {path} (needs root or CAP_SYS_ADMIN): {reason}"
        )
    try:
        yield SmallDisk(path)
    finally:
        subprocess.run([umount, str(path)], capture_output=True, timeout=30, check=False)
        if os.path.ismount(path):  # something still holds it open: detach it now
            subprocess.run([umount, "-l", str(path)], capture_output=True, timeout=30, check=False)


@contextlib.contextmanager
def small_disk(path: Path, size: str = "1m") -> Iterator[SmallDisk]:
    """`mounted_small_disk` for a test: skipped, with the reason, where it cannot mount."""
    import pytest

    try:
        mounted = mounted_small_disk(path, size)
        disk = mounted.__enter__()
    except SmallDiskUnavailable as err:
        pytest.skip(str(err))
    with contextlib.ExitStack() as stack:
        stack.push(mounted)
        yield disk
