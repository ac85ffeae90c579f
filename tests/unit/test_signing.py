"""Ed25519 keys and DSSE primitives: PAE, key files, passphrases, trust by verifying key."""

from __future__ import annotations

import base64
import hashlib
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from zdp.errors import ReleaseVerificationError, SigningKeyError
from zdp.models import DsseSignature
from zdp.signing import (
    decode_base64,
    fingerprint,
    generate_key_pair,
    load_private_key,
    load_public_key,
    load_trusted_keys,
    pae,
    sign_dsse,
    verify_dsse,
    write_file_atomic,
)

TYPE = "application/vnd.in-toto+json"
KEY = Ed25519PrivateKey.generate()
OTHER = Ed25519PrivateKey.generate()
TRUSTED = {fingerprint(KEY.public_key()): KEY.public_key()}


def test_pae_matches_the_dsse_spec_worked_example() -> None:
    assert (
        pae("http://example.com/HelloWorld", b"hello world")
        == b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


def test_pae_counts_bytes_not_characters() -> None:
    assert pae("t/\u00e9", "\u00e9".encode()) == b"DSSEv1 4 t/\xc3\xa9 2 \xc3\xa9"


def test_fingerprint_is_sha256_of_the_raw_public_key() -> None:
    raw = KEY.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert fingerprint(KEY.public_key()) == "sha256:" + hashlib.sha256(raw).hexdigest()


def test_generated_key_pair_is_pem_with_a_private_key_file_of_mode_0600(tmp_path: Path) -> None:
    files = generate_key_pair(tmp_path / "keys", "release-ci")

    assert files.private_key == tmp_path / "keys" / "release-ci.key"
    assert stat.S_IMODE(files.private_key.stat().st_mode) == 0o600
    assert files.private_key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert files.public_key.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    private = load_private_key(files.private_key)
    assert fingerprint(private.public_key()) == files.fingerprint
    assert fingerprint(load_public_key(files.public_key)) == files.fingerprint
    assert not [p for p in (tmp_path / "keys").iterdir() if p.name.endswith(".tmp")]


def test_generate_refuses_to_overwrite_unless_forced(tmp_path: Path) -> None:
    first = generate_key_pair(tmp_path, "ci")
    with pytest.raises(SigningKeyError, match="already exists"):
        generate_key_pair(tmp_path, "ci")
    assert load_private_key(first.private_key)  # untouched

    second = generate_key_pair(tmp_path, "ci", force=True)
    assert second.fingerprint != first.fingerprint
    assert fingerprint(load_public_key(second.public_key)) == second.fingerprint


def test_key_names_cannot_escape_the_key_folder(tmp_path: Path) -> None:
    with pytest.raises(SigningKeyError, match="invalid key name"):
        generate_key_pair(tmp_path, "../evil")


def test_encrypted_key_needs_the_right_passphrase(tmp_path: Path) -> None:
    files = generate_key_pair(tmp_path, "ci", b"correct horse")
    assert b"ENCRYPTED PRIVATE KEY" in files.private_key.read_bytes()

    with pytest.raises(SigningKeyError, match="is encrypted: give its passphrase"):
        load_private_key(files.private_key)
    with pytest.raises(SigningKeyError, match="wrong passphrase"):
        load_private_key(files.private_key, b"battery staple")
    key = load_private_key(files.private_key, b"correct horse")
    assert fingerprint(key.public_key()) == files.fingerprint


def test_passphrase_for_an_unencrypted_key_is_refused(tmp_path: Path) -> None:
    files = generate_key_pair(tmp_path, "ci")
    with pytest.raises(SigningKeyError, match="not encrypted"):
        load_private_key(files.private_key, b"x")


def test_missing_and_foreign_private_keys_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(SigningKeyError, match="signing key not found"):
        load_private_key(tmp_path / "nope.key")

    ec_key = tmp_path / "ec.key"
    ec_key.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(SigningKeyError, match="not an Ed25519 key"):
        load_private_key(ec_key)

    garbage = tmp_path / "garbage.key"
    garbage.write_text("not a key")
    with pytest.raises(SigningKeyError, match="not a PEM private key"):
        load_private_key(garbage)


def test_trusted_keys_are_keyed_by_fingerprint_and_skip_other_key_types(tmp_path: Path) -> None:
    ci = generate_key_pair(tmp_path, "ci")
    (tmp_path / "ec.pub").write_bytes(
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )

    trusted = load_trusted_keys(tmp_path)

    assert list(trusted) == [ci.fingerprint]


def test_trusted_keys_folder_must_exist_and_hold_ed25519_keys(tmp_path: Path) -> None:
    with pytest.raises(SigningKeyError, match="trusted keys folder not found"):
        load_trusted_keys(tmp_path / "missing")
    with pytest.raises(SigningKeyError, match="no Ed25519 public keys"):
        load_trusted_keys(tmp_path)
    (tmp_path / "ec.pub").write_bytes(
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(SigningKeyError, match=r"ignored non-Ed25519 keys: ec\.pub"):
        load_trusted_keys(tmp_path)


def test_a_broken_trusted_key_file_is_an_error(tmp_path: Path) -> None:
    generate_key_pair(tmp_path, "ci")
    (tmp_path / "broken.pub").write_text("-----BEGIN PUBLIC KEY-----\nxx\n")
    with pytest.raises(SigningKeyError, match=r"broken\.pub is not a PEM public key"):
        load_trusted_keys(tmp_path)


def test_write_file_atomic_without_overwrite_keeps_the_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"old")
    with pytest.raises(FileExistsError):
        write_file_atomic(target, b"new", overwrite=False)
    assert target.read_bytes() == b"old"
    write_file_atomic(target, b"new")
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_envelope_signs_pae_not_the_bare_payload() -> None:
    envelope = sign_dsse(TYPE, b'{"a":1}', KEY)

    signature = decode_base64(envelope.signatures[0].sig)
    KEY.public_key().verify(signature, pae(TYPE, b'{"a":1}'))
    assert envelope.signatures[0].keyid == fingerprint(KEY.public_key())
    assert base64.b64decode(envelope.payload) == b'{"a":1}'


@settings(max_examples=30, deadline=None)
@given(payload=st.binary(max_size=512))
def test_any_payload_round_trips_and_any_flipped_byte_is_refused(payload: bytes) -> None:
    envelope = sign_dsse(TYPE, payload, KEY)
    assert verify_dsse(envelope, TRUSTED, TYPE) == (payload, fingerprint(KEY.public_key()))

    tampered = envelope.model_copy(update={"payload": base64.b64encode(payload + b"\x00").decode()})
    with pytest.raises(ReleaseVerificationError, match="bad signature"):
        verify_dsse(tampered, TRUSTED, TYPE)


def test_trust_comes_from_the_verifying_key_not_the_keyid() -> None:
    envelope = sign_dsse(TYPE, b"x", KEY)
    envelope.signatures[0].keyid = "whatever"
    assert verify_dsse(envelope, TRUSTED, TYPE)[1] == fingerprint(KEY.public_key())

    forged = sign_dsse(TYPE, b"x", OTHER)
    forged.signatures[0].keyid = fingerprint(KEY.public_key())
    with pytest.raises(ReleaseVerificationError, match="bad signature"):
        verify_dsse(forged, TRUSTED, TYPE)


def test_one_trusted_signature_among_several_is_enough() -> None:
    envelope = sign_dsse(TYPE, b"x", OTHER)
    envelope.signatures.append(sign_dsse(TYPE, b"x", KEY).signatures[0])
    assert verify_dsse(envelope, TRUSTED, TYPE)[1] == fingerprint(KEY.public_key())


def test_undecodable_signature_is_not_a_crash() -> None:
    envelope = sign_dsse(TYPE, b"x", KEY)
    envelope.signatures = [DsseSignature(keyid="", sig="%%%not base64%%%")]
    with pytest.raises(ReleaseVerificationError, match="unknown key"):
        verify_dsse(envelope, TRUSTED, TYPE)


def test_url_safe_unpadded_base64_is_accepted() -> None:
    data = bytes(range(250, 256))
    assert decode_base64(base64.urlsafe_b64encode(data).decode().rstrip("=")) == data
