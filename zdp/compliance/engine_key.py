"""The engine's own Ed25519 key: signs audit checkpoints and evidence bundles, made on first use.

The pair lives in `$ZDP_HOME/keys/engine.key` (PKCS#8 PEM, 0600) and `engine.pub`. Two processes
may start at once on a fresh home; the private key is hard-linked into place (never replaced),
so exactly one of them creates it and both end up using that one key.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from zdp.errors import SigningKeyError
from zdp.fsutil import write_file_atomic
from zdp.settings import zdp_home
from zdp.signing import (
    PRIVATE_KEY_SUFFIX,
    PUBLIC_KEY_SUFFIX,
    fingerprint,
    generate_key_pair,
    load_private_key,
    load_public_key,
)

ENGINE_KEY_NAME = "engine"


def engine_keys_dir(home: Path | None = None) -> Path:
    """$ZDP_HOME/keys."""
    return (home or zdp_home()) / "keys"


def engine_private_key_path(home: Path | None = None) -> Path:
    """$ZDP_HOME/keys/engine.key."""
    return engine_keys_dir(home) / f"{ENGINE_KEY_NAME}{PRIVATE_KEY_SUFFIX}"


def engine_public_key_path(home: Path | None = None) -> Path:
    """$ZDP_HOME/keys/engine.pub: give this file to auditors to verify checkpoints and bundles."""
    return engine_keys_dir(home) / f"{ENGINE_KEY_NAME}{PUBLIC_KEY_SUFFIX}"


def engine_key(home: Path | None = None) -> Ed25519PrivateKey:
    """The engine's signing key, creating the pair on first use (safe when processes race)."""
    private_path = engine_private_key_path(home)
    public_path = engine_public_key_path(home)
    if not private_path.exists():
        if public_path.exists():
            # The creator writes engine.key before engine.pub, so this is never a race.
            raise SigningKeyError(
                f"{public_path} exists but its private key {private_path} does not: restore "
                "engine.key, or move engine.pub away to make a new engine key (keep the old "
                "engine.pub to verify what it signed)"
            )
        try:
            generate_key_pair(private_path.parent, ENGINE_KEY_NAME)
        except SigningKeyError:
            if not private_path.exists():  # not a lost race: a real failure
                raise
    key = load_private_key(private_path)
    _ensure_public_key(key, public_path)
    return key


def _ensure_public_key(key: Ed25519PrivateKey, public_path: Path) -> None:
    """Write engine.pub when it is missing (its creator stopped between the two files), and
    refuse one that belongs to another key: verifiers trust that file."""
    if not public_path.exists():
        pem = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        try:
            write_file_atomic(public_path, pem, mode=0o644, overwrite=False)
            return
        except FileExistsError:
            pass  # another process wrote it meanwhile: check it below
        except OSError as err:
            raise SigningKeyError(f"cannot write {public_path}: {err.strerror}") from None
    if fingerprint(load_public_key(public_path)) != fingerprint(key.public_key()):
        raise SigningKeyError(
            f"{public_path} does not match the engine's private key: restore the matching "
            "engine.pub (verifiers trust this file)"
        )
