"""Ed25519 signing keys and DSSE v1 envelopes: generate, store, load, sign and verify.

DSSE (secure-systems-lab/dsse v1.0.0) signs PAE(payloadType, payload), never the raw payload,
so a signature cannot be replayed under another payload type. Trust comes only from which
trusted key verifies a signature: an envelope's keyid is a hint and grants nothing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from zdp.errors import ReleaseVerificationError, SigningKeyError
from zdp.fsutil import write_file_atomic
from zdp.models import DsseEnvelope, DsseSignature

PRIVATE_KEY_SUFFIX = ".key"
PUBLIC_KEY_SUFFIX = ".pub"
_KEY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass(frozen=True)
class KeyPairFiles:
    """Where a generated key pair was written, and the fingerprint that names it."""

    private_key: Path
    public_key: Path
    fingerprint: str


# --------------------------------------------------------------------------- files


# --------------------------------------------------------------------------- keys


def fingerprint(public_key: Ed25519PublicKey) -> str:
    """`sha256:` + hex SHA-256 of the raw 32-byte public key."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def generate_key_pair(
    directory: Path, name: str, passphrase: bytes | None = None, *, force: bool = False
) -> KeyPairFiles:
    """Write a new Ed25519 pair: `NAME.key` (PKCS#8 PEM, mode 0600) and `NAME.pub` (SPKI PEM).

    The private key is encrypted when a passphrase is given. Existing files are kept unless
    `force` is set.
    """
    if not _KEY_NAME.match(name):
        raise SigningKeyError(
            f"invalid key name {name!r}: use letters, digits, '.', '_' and '-' (no slashes)"
        )
    if passphrase is not None and not passphrase:
        raise SigningKeyError("the passphrase is empty: give a non-empty one or none at all")
    private_path = directory / f"{name}{PRIVATE_KEY_SUFFIX}"
    public_path = directory / f"{name}{PUBLIC_KEY_SUFFIX}"
    if not force:
        for path in (private_path, public_path):
            if path.exists():
                raise SigningKeyError(f"{path} already exists: choose another name or use --force")
    key = Ed25519PrivateKey.generate()
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_file_atomic(private_path, private_pem, mode=0o600, overwrite=force)
        write_file_atomic(public_path, public_pem, mode=0o644, overwrite=force)
    except FileExistsError as err:
        raise SigningKeyError(f"{err.filename} already exists: choose another name") from None
    except OSError as err:
        raise SigningKeyError(f"cannot write the key pair in {directory}: {err.strerror}") from None
    return KeyPairFiles(private_path, public_path, fingerprint(key.public_key()))


def _read_key_file(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise SigningKeyError(f"{what} not found: {path}") from None
    except OSError as err:
        raise SigningKeyError(f"cannot read {what} {path}: {err.strerror}") from None


def load_private_key(path: Path, passphrase: bytes | None = None) -> Ed25519PrivateKey:
    """Load an Ed25519 private key from a PEM file, decrypting it with `passphrase` if needed."""
    data = _read_key_file(path, "signing key")
    try:
        key = serialization.load_pem_private_key(data, password=passphrase)
    except TypeError:  # cryptography's way of saying a passphrase is missing or unexpected
        if passphrase is None:
            raise SigningKeyError(f"signing key {path} is encrypted: give its passphrase") from None
        raise SigningKeyError(
            f"signing key {path} is not encrypted: leave the passphrase out"
        ) from None
    except ValueError:
        if passphrase is not None and b"ENCRYPTED" in data:
            raise SigningKeyError(f"wrong passphrase for signing key {path}") from None
        raise SigningKeyError(f"{path} is not a PEM private key") from None
    except UnsupportedAlgorithm:
        raise SigningKeyError(f"{path} is not an Ed25519 key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{path} is not an Ed25519 key ({type(key).__name__})")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """Load an Ed25519 public key from a SubjectPublicKeyInfo PEM file."""
    data = _read_key_file(path, "public key")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        raise SigningKeyError(f"{path} is not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise SigningKeyError(f"{path} is not an Ed25519 key ({type(key).__name__})")
    return key


def load_trusted_keys(directory: Path) -> dict[str, Ed25519PublicKey]:
    """Every Ed25519 key in `directory/*.pub`, keyed by fingerprint.

    Keys of other types are skipped (never trusted); a file that is not a PEM public key
    is an error, so a broken trust store is noticed rather than half used.
    """
    if not directory.is_dir():
        raise SigningKeyError(f"trusted keys folder not found: {directory}")
    trusted: dict[str, Ed25519PublicKey] = {}
    skipped: list[str] = []
    for path in sorted(directory.glob(f"*{PUBLIC_KEY_SUFFIX}")):
        if not path.is_file():
            continue
        try:
            key = serialization.load_pem_public_key(_read_key_file(path, "trusted key"))
        except (ValueError, UnsupportedAlgorithm):
            raise SigningKeyError(f"trusted key {path} is not a PEM public key") from None
        if isinstance(key, Ed25519PublicKey):
            trusted[fingerprint(key)] = key
        else:
            skipped.append(path.name)
    if not trusted:
        ignored = f" (ignored non-Ed25519 keys: {', '.join(skipped)})" if skipped else ""
        raise SigningKeyError(f"no Ed25519 public keys (*.pub) in {directory}{ignored}")
    return trusted


# --------------------------------------------------------------------------- DSSE


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body."""
    encoded_type = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(encoded_type), encoded_type, len(payload), payload)


def decode_base64(value: str) -> bytes:
    """Decode DSSE base64: standard or URL-safe alphabet, with or without padding."""
    normalized = value.strip().replace("-", "+").replace("_", "/")
    normalized += "=" * (-len(normalized) % 4)
    return base64.b64decode(normalized, validate=True)


def sign_dsse(payload_type: str, payload: bytes, private_key: Ed25519PrivateKey) -> DsseEnvelope:
    """A DSSE envelope with one Ed25519 signature over PAE(payload_type, payload)."""
    signature = private_key.sign(pae(payload_type, payload))
    return DsseEnvelope(
        payloadType=payload_type,
        payload=base64.b64encode(payload).decode("ascii"),
        signatures=[
            DsseSignature(
                keyid=fingerprint(private_key.public_key()),
                sig=base64.b64encode(signature).decode("ascii"),
            )
        ],
    )


def _signer_of(
    message: bytes, signature: DsseSignature, trusted: Mapping[str, Ed25519PublicKey]
) -> str | None:
    """The fingerprint of the trusted key that verifies `signature`, trying its keyid first."""
    try:
        raw = decode_base64(signature.sig)
    except (binascii.Error, ValueError):
        return None
    candidates = sorted(trusted, key=lambda fp: fp != signature.keyid)
    for fp in candidates:
        try:
            trusted[fp].verify(raw, message)
        except InvalidSignature:
            continue
        return fp
    return None


def verify_dsse(
    envelope: DsseEnvelope, trusted: Mapping[str, Ed25519PublicKey], payload_type: str
) -> tuple[bytes, str]:
    """Return (payload, signer fingerprint) when a trusted key signed the envelope.

    Raises ReleaseVerificationError naming the reason: no signature, wrong payload type,
    malformed payload, unknown key, or bad signature.
    """
    if not envelope.signatures:
        raise ReleaseVerificationError("no signature: the envelope carries no signatures")
    if envelope.payloadType != payload_type:
        raise ReleaseVerificationError(
            f"wrong payload type: expected {payload_type!r}, got {envelope.payloadType!r}"
        )
    try:
        payload = decode_base64(envelope.payload)
    except (binascii.Error, ValueError):
        raise ReleaseVerificationError("malformed envelope: the payload is not base64") from None
    message = pae(envelope.payloadType, payload)
    for signature in envelope.signatures:
        signer = _signer_of(message, signature, trusted)
        if signer is not None:
            return payload, signer
    claimed = [s.keyid for s in envelope.signatures if s.keyid in trusted]
    if claimed:
        raise ReleaseVerificationError(
            f"bad signature: the signature claiming trusted key {claimed[0]} does not verify"
        )
    keyids = ", ".join(s.keyid or "<none>" for s in envelope.signatures)
    raise ReleaseVerificationError(
        f"unknown key: no trusted key verifies the signature (keyid {keyids})"
    )
