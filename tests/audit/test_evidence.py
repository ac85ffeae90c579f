"""Evidence bundles: sealing, verification, tampering, idempotent re-seal, path safety, CLI."""

from __future__ import annotations

import base64
import json
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
import typer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner, Result

from tests.cli_checks import assert_one_line_error
from zdp.cli import evidence_cmd
from zdp.compliance.evidence import (
    EvidenceError,
    EvidenceVerificationError,
    seal_bundle,
    verify_bundle,
)
from zdp.signing import fingerprint

KEY = Ed25519PrivateKey.generate()
OTHER = Ed25519PrivateKey.generate()
SEALED_AT = datetime(2025, 3, 1, 9, 30, tzinfo=UTC)
FILES = {
    "timeline.json": b'[{"phase": "verify"}, {"phase": "promote"}]',
    "approvals.json": b'[{"by": "alice", "decision": "approve"}]',
    "gates/canary-25.json": b'{"verdict": "pass", "error_rate": 0.001}',
}
METADATA = {"workflow_id": "deploy-x-prod", "run_id": "9f3a", "outcome": "promoted"}

cli = typer.Typer()
cli.add_typer(evidence_cmd.app, name="evidence")


def seal(
    store: Path,
    name: str = "deploy-x-prod-9f3a",
    *,
    files: dict[str, bytes] = FILES,
    metadata: dict[str, str] = METADATA,
    sealed_at: datetime = SEALED_AT,
) -> Path:
    return seal_bundle(store, name, files, KEY, metadata, sealed_at=sealed_at)


def refused(bundle: Path, keys: list[Ed25519PrivateKey] | None = None) -> str:
    with pytest.raises(EvidenceVerificationError) as caught:
        verify_bundle(bundle, [k.public_key() for k in keys] if keys else None)
    return str(caught.value)


def pem(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    return seal(tmp_path / "evidence")


def test_a_sealed_bundle_holds_the_files_a_manifest_and_its_signature(bundle: Path) -> None:
    assert bundle.name == "deploy-x-prod-9f3a"
    assert (bundle / "gates" / "canary-25.json").read_bytes() == FILES["gates/canary-25.json"]
    manifest = json.loads((bundle / "MANIFEST.json").read_bytes())
    assert manifest["format"] == "zdp-evidence/v1"
    assert manifest["metadata"] == METADATA
    assert manifest["key_fingerprint"] == fingerprint(KEY.public_key())
    assert set(manifest["files"]) == set(FILES)
    assert manifest["files"]["timeline.json"]["size"] == len(FILES["timeline.json"])
    signature = base64.b64decode((bundle / "MANIFEST.sig").read_text())
    KEY.public_key().verify(signature, (bundle / "MANIFEST.json").read_bytes())
    assert (bundle / "engine.pub").read_bytes() == pem(KEY)
    assert not [p for p in bundle.parent.iterdir() if p.name.startswith(".")]  # no staging left


def test_verify_with_a_trusted_key(bundle: Path) -> None:
    report = verify_bundle(bundle, [OTHER.public_key(), KEY.public_key()])

    assert (report.name, report.files, report.sealed_at) == ("deploy-x-prod-9f3a", 3, SEALED_AT)
    assert report.metadata == METADATA
    assert report.key_fingerprint == fingerprint(KEY.public_key())
    assert report.trusted_key


def test_verify_without_keys_uses_the_bundled_key_and_says_so(bundle: Path) -> None:
    report = verify_bundle(bundle)
    assert report.key_fingerprint == fingerprint(KEY.public_key())
    assert not report.trusted_key


def test_a_modified_file_is_named(bundle: Path) -> None:
    (bundle / "timeline.json").write_bytes(b'[{"phase": "verify"}]')
    assert refused(bundle, [KEY]) == "timeline.json: sha256 does not match the manifest (modified?)"


def test_an_extra_file_is_named(bundle: Path) -> None:
    (bundle / "gates" / "canary-50.json").write_text("{}")
    assert refused(bundle, [KEY]) == (
        "gates/canary-50.json: not in the manifest (added after sealing?)"
    )


def test_a_missing_file_is_named(bundle: Path) -> None:
    (bundle / "approvals.json").unlink()
    assert refused(bundle, [KEY]) == "approvals.json: missing (listed in the manifest)"


def test_a_symbolic_link_in_a_bundle_is_refused(bundle: Path, tmp_path: Path) -> None:
    (tmp_path / "outside.json").write_text("{}")
    (bundle / "link.json").symlink_to(tmp_path / "outside.json")
    assert "link.json: a symbolic link" in refused(bundle, [KEY])


def test_an_edited_manifest_breaks_the_signature(bundle: Path) -> None:
    manifest = bundle / "MANIFEST.json"
    manifest.write_bytes(manifest.read_bytes().replace(b"promoted", b"rejected"))
    assert refused(bundle, [KEY]).startswith("MANIFEST.sig: the signature does not verify")
    assert refused(bundle).startswith("MANIFEST.sig: the signature does not verify")


def test_a_malformed_manifest_is_named(bundle: Path) -> None:
    (bundle / "MANIFEST.json").write_text('{"format": "zdp-evidence/v1"')
    assert refused(bundle, [KEY]).startswith("MANIFEST.json: malformed")
    (bundle / "MANIFEST.json").write_text('{"format": "zdp-evidence/v2"}')
    assert refused(bundle, [KEY]).startswith("MANIFEST.json: malformed (format:")


def test_a_manifest_naming_a_path_outside_the_bundle_is_refused(bundle: Path) -> None:
    manifest = json.loads((bundle / "MANIFEST.json").read_bytes())
    manifest["files"]["../../etc/passwd"] = manifest["files"].pop("timeline.json")
    data = json.dumps(manifest).encode()
    (bundle / "MANIFEST.json").write_bytes(data)
    (bundle / "MANIFEST.sig").write_bytes(base64.b64encode(KEY.sign(data)))
    assert "escapes the bundle" in refused(bundle, [KEY])


def test_a_signature_by_another_key_fails(bundle: Path) -> None:
    data = (bundle / "MANIFEST.json").read_bytes()
    (bundle / "MANIFEST.sig").write_bytes(base64.b64encode(OTHER.sign(data)))
    assert refused(bundle, [KEY]).startswith("MANIFEST.sig: the signature does not verify")


def test_a_bundle_resealed_by_another_key_is_untrusted_when_keys_are_given(bundle: Path) -> None:
    """Everything rewritten consistently with another key: only the verifier's keys catch it."""
    manifest = json.loads((bundle / "MANIFEST.json").read_bytes())
    manifest["key_fingerprint"] = fingerprint(OTHER.public_key())
    data = json.dumps(manifest).encode()
    (bundle / "MANIFEST.json").write_bytes(data)
    (bundle / "MANIFEST.sig").write_bytes(base64.b64encode(OTHER.sign(data)))
    (bundle / "engine.pub").write_bytes(pem(OTHER))

    assert refused(bundle, [KEY]) == (
        f"MANIFEST.json: signed by {fingerprint(OTHER.public_key())}, which is not a trusted key"
    )
    assert not verify_bundle(bundle).trusted_key  # self-consistent, so only integrity is shown


def test_resealing_the_same_content_returns_the_bundle_unchanged(bundle: Path) -> None:
    before = (bundle / "MANIFEST.json").read_bytes()

    again = seal(bundle.parent, sealed_at=datetime.now(UTC))  # an activity retry, later

    assert again == bundle
    assert (bundle / "MANIFEST.json").read_bytes() == before


def test_resealing_different_content_is_refused(bundle: Path) -> None:
    before = (bundle / "MANIFEST.json").read_bytes()
    with pytest.raises(EvidenceError, match="already sealed with different content"):
        seal(bundle.parent, files={**FILES, "timeline.json": b"[]"})
    with pytest.raises(EvidenceError, match="already sealed with different content"):
        seal(bundle.parent, metadata={**METADATA, "outcome": "rolled_back"})
    assert (bundle / "MANIFEST.json").read_bytes() == before
    assert (bundle / "timeline.json").read_bytes() == FILES["timeline.json"]


def test_resealing_over_a_tampered_bundle_is_refused(bundle: Path) -> None:
    (bundle / "timeline.json").write_bytes(b"[]")
    with pytest.raises(EvidenceError, match="not an intact sealed bundle"):
        seal(bundle.parent)


def test_sealing_the_same_bundle_from_several_threads_keeps_one(tmp_path: Path) -> None:
    start = threading.Barrier(4)
    found: list[Path] = []

    def sealer() -> None:
        start.wait()
        found.append(seal(tmp_path))

    threads = [threading.Thread(target=sealer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert found == [tmp_path / "deploy-x-prod-9f3a"] * 4
    assert verify_bundle(found[0], [KEY.public_key()]).files == 3
    assert [p.name for p in tmp_path.iterdir()] == ["deploy-x-prod-9f3a"]


@pytest.mark.parametrize(
    "name",
    ["../escape.json", "/etc/passwd", "gates/../../x", "gates//x", "./x", "a\\b", "MANIFEST.json"],
)
def test_file_names_must_stay_inside_the_bundle(tmp_path: Path, name: str) -> None:
    with pytest.raises(EvidenceError):
        seal(tmp_path / "store", files={name: b"x"})
    assert not (tmp_path / "store").exists()
    assert not (tmp_path / "escape.json").exists()


@pytest.mark.parametrize("name", ["", "../up", "a/b", ".hidden"])
def test_bundle_names_are_one_plain_folder(tmp_path: Path, name: str) -> None:
    with pytest.raises(EvidenceError, match="invalid bundle name"):
        seal(tmp_path, name=name)


def test_a_name_cannot_be_both_a_file_and_a_folder(tmp_path: Path) -> None:
    with pytest.raises(EvidenceError, match="both a file and the folder"):
        seal(tmp_path, files={"gates": b"x", "gates/a.json": b"y"})


# --------------------------------------------------------------------------- CLI


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_cli_verify_with_a_trusted_key(bundle: Path, tmp_path: Path) -> None:
    (tmp_path / "engine.pub").write_bytes(pem(KEY))

    result = run("evidence", "verify", bundle, "--key", tmp_path / "engine.pub")

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "evidence bundle OK: deploy-x-prod-9f3a",
        "files: 3, sealed at 2025-03-01T09:30:00+00:00",
        f"verified by {fingerprint(KEY.public_key())} (a trusted key)",
    ]


def test_cli_verify_without_a_key_says_it_used_the_bundled_one(bundle: Path) -> None:
    result = run("evidence", "verify", bundle)
    assert result.exit_code == 0, result.output
    assert "the bundle's own engine.pub, not independently trusted" in result.stdout


def test_cli_verify_failures_are_one_line(bundle: Path, tmp_path: Path) -> None:
    (tmp_path / "other.pub").write_bytes(pem(OTHER))
    assert_one_line_error(
        run("evidence", "verify", bundle, "--key", tmp_path / "other.pub"), "not a trusted key"
    )
    (bundle / "timeline.json").write_bytes(b"[]")
    assert_one_line_error(
        run("evidence", "verify", bundle),
        "timeline.json: sha256 does not match the manifest (modified?)",
    )
    assert_one_line_error(run("evidence", "verify", tmp_path / "nowhere"), "bundle not found")
    assert_one_line_error(
        run("evidence", "verify", bundle, "--key", tmp_path / "missing.pub"),
        "public key not found",
    )
