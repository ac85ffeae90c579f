"""Evidence bundles: a folder of files sealed by a signed manifest of their SHA-256 digests.

    <store>/<name>/
        <files>         what the deployment left behind: timeline, approvals, gate verdicts...
        MANIFEST.json   {format, name, sealed_at, metadata, files: {name: {sha256, size}},
                         key_fingerprint}
        MANIFEST.sig    base64 Ed25519 signature over the exact bytes of MANIFEST.json
        engine.pub      the sealing key (PEM), for convenience only

A bundle is staged in a hidden folder and renamed into place, so it appears whole or not at all,
and it is never overwritten: sealing the same content again (an activity retry) returns the
bundle already there. Trust comes from the keys the verifier brings; engine.pub is used only
when none are given, and the report says so.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from zdp.compliance.audit.log import canonical_json
from zdp.errors import SigningKeyError, ZdpError
from zdp.signing import decode_base64, fingerprint, load_public_key

FORMAT = "zdp-evidence/v1"
MANIFEST = "MANIFEST.json"
SIGNATURE = "MANIFEST.sig"
BUNDLED_KEY = "engine.pub"
_RESERVED = frozenset({MANIFEST, SIGNATURE, BUNDLED_KEY})
_BUNDLE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


class EvidenceError(ZdpError):
    """An evidence bundle cannot be sealed or read; the message says what to do."""


class EvidenceVerificationError(EvidenceError):
    """A sealed bundle fails verification; the message names the first problem."""


class FileDigest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(ge=0)


class EvidenceManifest(BaseModel):
    """MANIFEST.json: what the bundle holds, signed as the exact bytes written."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Literal["zdp-evidence/v1"]
    name: str
    sealed_at: AwareDatetime
    metadata: dict[str, Any]
    files: dict[str, FileDigest]
    key_fingerprint: str


class BundleReport(BaseModel):
    """A verified bundle, and whether the key that verified it was one the caller trusts."""

    path: Path
    name: str
    files: int
    sealed_at: datetime
    metadata: dict[str, Any]
    key_fingerprint: str
    trusted_key: bool  # False: verified only with the bundle's own engine.pub


def check_file_name(name: str) -> str:
    """`name` if it is a relative path that stays inside the bundle; EvidenceError otherwise."""
    parts = name.split("/")
    if not name or "\\" in name or "\0" in name or name.startswith("/"):
        raise EvidenceError(f"file name {name!r} is not a relative path inside the bundle")
    if any(part in ("", ".", "..") for part in parts):
        raise EvidenceError(f"file name {name!r} escapes the bundle or is not normalized")
    if name in _RESERVED:
        raise EvidenceError(f"file name {name!r} is reserved for the bundle's seal")
    return name


def _digest(data: bytes) -> FileDigest:
    return FileDigest(sha256=hashlib.sha256(data).hexdigest(), size=len(data))


def _plain_json(metadata: Mapping[str, Any]) -> dict[str, Any]:
    try:
        plain: dict[str, Any] = json.loads(canonical_json(dict(metadata)))
    except (TypeError, ValueError) as err:
        raise EvidenceError(f"bundle metadata must be plain JSON: {err}") from None
    return plain


def seal_bundle(
    store_dir: Path,
    name: str,
    files: Mapping[str, bytes],
    signer: Ed25519PrivateKey,
    metadata: Mapping[str, Any],
    *,
    sealed_at: datetime | None = None,
) -> Path:
    """Write and sign `<store_dir>/<name>/`; return the existing bundle if it holds the same."""
    if not _BUNDLE_NAME.match(name):
        raise EvidenceError(
            f"invalid bundle name {name!r}: use letters, digits, '.', '_' and '-' (no slashes)"
        )
    digests = {check_file_name(n): _digest(files[n]) for n in sorted(files)}
    for file_name in digests:
        parent = file_name.rpartition("/")[0]
        while parent:
            if parent in digests:
                raise EvidenceError(
                    f"{parent!r} cannot be both a file and the folder of {file_name!r}"
                )
            parent = parent.rpartition("/")[0]
    plain_metadata = _plain_json(metadata)
    target = store_dir / name
    if target.exists():
        return _same_bundle(target, digests, plain_metadata)
    public_key = signer.public_key()
    if sealed_at is not None and sealed_at.tzinfo is None:
        raise EvidenceError("sealed_at has no timezone: give an aware datetime")
    manifest = EvidenceManifest(
        format=FORMAT,
        name=name,
        sealed_at=sealed_at or datetime.now(UTC),
        metadata=plain_metadata,
        files=digests,
        key_fingerprint=fingerprint(public_key),
    )
    manifest_bytes = manifest.model_dump_json(indent=2).encode("utf-8") + b"\n"
    seal = {
        MANIFEST: manifest_bytes,
        SIGNATURE: base64.b64encode(signer.sign(manifest_bytes)) + b"\n",
        BUNDLED_KEY: public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
    }
    try:
        store_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=store_dir, prefix=f".{name}.", suffix=".sealing"))
    except OSError as err:
        raise EvidenceError(f"cannot write in {store_dir}: {err.strerror}") from None
    try:
        os.chmod(staging, 0o755)
        for file_name, data in [*files.items(), *seal.items()]:
            _write_durable(staging / file_name, data)
        try:
            os.rename(staging, target)  # fails if another writer sealed `name` meanwhile
        except OSError:
            if not target.exists():
                raise
            return _same_bundle(target, digests, plain_metadata)
        _fsync_dir(store_dir)
    except OSError as err:
        raise EvidenceError(f"cannot seal {target}: {err.strerror}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _write_durable(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("xb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _same_bundle(
    target: Path, digests: Mapping[str, FileDigest], metadata: Mapping[str, Any]
) -> Path:
    """The sealed bundle at `target` when it holds exactly these files and metadata."""
    try:
        manifest = _read_manifest(target)
        _check_files(target, manifest)
    except EvidenceVerificationError as err:
        raise EvidenceError(
            f"{target} exists but is not an intact sealed bundle ({err}): "
            "run `zdp evidence verify` on it, or seal under another name"
        ) from None
    if manifest.files != digests or manifest.metadata != metadata:
        raise EvidenceError(
            f"evidence bundle {target} is already sealed with different content: sealed "
            "bundles are never overwritten; seal under another name"
        )
    return target


def _read_manifest(bundle: Path) -> EvidenceManifest:
    try:
        manifest = EvidenceManifest.model_validate_json((bundle / MANIFEST).read_bytes())
    except FileNotFoundError:
        raise EvidenceVerificationError(f"{MANIFEST}: missing (not a sealed bundle?)") from None
    except OSError as err:
        raise EvidenceVerificationError(f"{MANIFEST}: cannot read it: {err.strerror}") from None
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "document"
        raise EvidenceVerificationError(
            f"{MANIFEST}: malformed ({where}: {first['msg']})"
        ) from None
    for file_name in manifest.files:
        try:
            check_file_name(file_name)
        except EvidenceError as err:
            raise EvidenceVerificationError(f"{MANIFEST}: {err}") from None
    return manifest


def _trusted_keys(
    bundle: Path, trusted_public_keys: Sequence[Ed25519PublicKey] | None
) -> dict[str, Ed25519PublicKey]:
    if trusted_public_keys:
        return {fingerprint(key): key for key in trusted_public_keys}
    try:
        bundled = load_public_key(bundle / BUNDLED_KEY)
    except SigningKeyError as err:
        raise EvidenceVerificationError(
            f"{BUNDLED_KEY}: {err}, and no trusted key was given (pass --key)"
        ) from None
    return {fingerprint(bundled): bundled}


def _check_signature(
    bundle: Path, manifest: EvidenceManifest, keys: Mapping[str, Ed25519PublicKey]
) -> None:
    key = keys.get(manifest.key_fingerprint)
    if key is None:
        raise EvidenceVerificationError(
            f"{MANIFEST}: signed by {manifest.key_fingerprint}, which is not a trusted key"
        )
    try:
        signature = decode_base64((bundle / SIGNATURE).read_text("ascii"))
    except FileNotFoundError:
        raise EvidenceVerificationError(f"{SIGNATURE}: missing (never sealed?)") from None
    except (OSError, UnicodeDecodeError, binascii.Error, ValueError):
        raise EvidenceVerificationError(f"{SIGNATURE}: not a base64 signature") from None
    try:
        key.verify(signature, (bundle / MANIFEST).read_bytes())
    except InvalidSignature:
        raise EvidenceVerificationError(
            f"{SIGNATURE}: the signature does not verify over {MANIFEST} (edited, or signed "
            "by another key?)"
        ) from None


def _files_on_disk(bundle: Path) -> set[str]:
    """Every file in the bundle except its seal, by relative name; links are refused."""
    found: set[str] = set()
    for folder, dirs, names in os.walk(bundle):
        relative = Path(folder).relative_to(bundle)
        for entry in sorted([*dirs, *names]):
            path = Path(folder) / entry
            rel = (relative / entry).as_posix()
            if path.is_symlink():
                raise EvidenceVerificationError(f"{rel}: a symbolic link (not allowed in a bundle)")
            if entry in names and rel not in _RESERVED:
                found.add(rel)
    return found


def _check_files(bundle: Path, manifest: EvidenceManifest) -> None:
    on_disk = _files_on_disk(bundle)
    for name in sorted(on_disk | set(manifest.files)):
        expected = manifest.files.get(name)
        if expected is None:
            raise EvidenceVerificationError(f"{name}: not in the manifest (added after sealing?)")
        if name not in on_disk:
            raise EvidenceVerificationError(f"{name}: missing (listed in the manifest)")
        digest = hashlib.sha256()
        size = 0
        with (bundle / name).open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
                size += len(chunk)
        if digest.hexdigest() != expected.sha256 or size != expected.size:
            raise EvidenceVerificationError(
                f"{name}: sha256 does not match the manifest (modified?)"
            )


def verify_bundle(
    path: Path, trusted_public_keys: Sequence[Ed25519PublicKey] | None = None
) -> BundleReport:
    """Check the seal, then every file; EvidenceVerificationError names the first problem.

    With trusted keys the manifest's key must be one of them. Without, the bundle's own
    engine.pub is used and the report says `trusted_key=False`: that proves integrity since
    sealing, not who sealed it.
    """
    if not path.is_dir():
        raise EvidenceVerificationError(f"evidence bundle not found: {path}")
    try:
        manifest = _read_manifest(path)
        _check_signature(path, manifest, _trusted_keys(path, trusted_public_keys))
        _check_files(path, manifest)
    except OSError as err:
        raise EvidenceVerificationError(f"cannot read {err.filename}: {err.strerror}") from None
    return BundleReport(
        path=path,
        name=manifest.name,
        files=len(manifest.files),
        sealed_at=manifest.sealed_at,
        metadata=manifest.metadata,
        key_fingerprint=manifest.key_fingerprint,
        trusted_key=bool(trusted_public_keys),
    )
