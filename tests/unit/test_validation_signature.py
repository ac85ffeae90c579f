"""Signed validation documents: an IQ/OQ/PQ approval is a Part 11 e-signature, bound to the
document and the release, by a registered validation approver who did not author the release.
Registration refuses a key without a passphrase (the second identification component)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner, Result

from tests.cli_checks import assert_one_line_error
from tests.kit import enrol
from zdp.cli import keys_cmd, release_cmd
from zdp.compliance.esign import UNSIGNED_VALIDATION, sign_approval, verify_validation
from zdp.compliance.registry import load_registry
from zdp.errors import ReleaseError
from zdp.models import (
    Artifact,
    ChangeMetadata,
    ReleaseManifest,
    SignedValidation,
    ValidationReference,
)
from zdp.release import approve_validation

ALLOWED = ["validation-eng", "qa-lead"]
VAL_KEY = Ed25519PrivateKey.generate()
QA_KEY = Ed25519PrivateKey.generate()


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    folder = tmp_path / "approvers"
    enrol(folder, "validation-eng", "Vera L. Engineer", VAL_KEY.public_key())
    enrol(folder, "qa-lead", "Quinn A. Lead", QA_KEY.public_key())
    enrol(folder, "mallory", "Mallory M. Mallory", QA_KEY.public_key())
    return folder


def manifest(digest: str = "0" * 64, author: str | None = "dev-dana") -> ReleaseManifest:
    return ReleaseManifest(
        app="pharma-manufacturing",
        version="2.1.0",
        artifact=Artifact(kind="wheel", reference="pharma.whl", digest=f"sha256:{digest}"),
        change=ChangeMetadata(author=author),
        validation=ValidationReference(document_id="VAL-2026-0142", status="pending"),
    )


def test_a_validation_approvers_signature_is_accepted_and_manifested(registry: Path) -> None:
    signed = approve_validation(
        manifest(), "validation-eng", "IQ/OQ/PQ approved", VAL_KEY, load_registry(registry)
    )
    assert signed.validation is not None and signed.validation.status == "approved"
    manifestation, refusal = verify_validation(signed, load_registry(registry), ALLOWED)
    assert refusal is None and manifestation is not None
    assert manifestation.line().startswith("signed by Vera L. Engineer — IQ/OQ/PQ approved — ")


def signed_by(
    release: ReleaseManifest, signer: str, key: Ed25519PrivateKey, **payload: object
) -> ReleaseManifest:
    """The release with its validation document signed as `signer` with `key`, the signed
    payload's fields overridden by `payload`: how a forger would try it."""
    ref = release.validation
    assert ref is not None
    fields: dict[str, object] = {
        "document_id": ref.document_id,
        "app": release.app,
        "release_digest": release.artifact.digest,
        "qualifications": list(ref.qualifications),
        "meaning": "IQ/OQ/PQ approved",
        "signer": signer,
        "printed_name": {"qa-lead": "Quinn A. Lead", "mallory": "Mallory M. Mallory"}.get(
            signer, "Vera L. Engineer"
        ),
        "signed_at": datetime.now(UTC),
    }
    fields.update(payload)
    signature = sign_approval(key, SignedValidation.model_validate(fields))
    approved = ref.model_copy(update={"status": "approved", "signature": signature})
    return release.model_copy(update={"validation": approved})


@pytest.mark.parametrize(
    ("forged", "refusal"),
    [
        (lambda r: r.model_copy(update={"validation": r.validation.model_copy(
            update={"signature": None})}), UNSIGNED_VALIDATION),
        (lambda r: signed_by(r, "mallory", QA_KEY),
         "mallory may not approve validation documents here"),
        (lambda r: signed_by(r.model_copy(update={"change": ChangeMetadata(author="qa-lead")}),
                             "qa-lead", QA_KEY),
         "qa-lead authored this release, so someone else must approve its validation"),
        (lambda r: signed_by(r, "qa-lead", QA_KEY, release_digest="sha256:" + "1" * 64),
         "made for another release (release_digest differs)"),
        (lambda r: signed_by(r, "qa-lead", QA_KEY, document_id="VAL-2026-0999"),
         "made for another validation document (document_id differs)"),
        (lambda r: signed_by(r, "qa-lead", QA_KEY, app="finance-trading"),
         "made for another app (app differs)"),
        (lambda r: signed_by(r, "validation-eng", QA_KEY),
         "not the key registered to validation-eng"),
        (lambda r: signed_by(r, "qa-lead", QA_KEY, printed_name="Someone Else"),
         "the signed printed name is not the registered one"),
    ],
    ids=["unsigned", "not a validation approver", "author", "another release",
         "another document", "another app", "another key", "another printed name"],
)  # fmt: skip
def test_anything_else_is_refused(registry: Path, forged: Any, refusal: str) -> None:
    manifestation, why = verify_validation(forged(manifest()), load_registry(registry), ALLOWED)
    assert manifestation is None
    assert why is not None and refusal in why


def test_an_unregistered_validation_approver_is_refused(registry: Path) -> None:
    stranger = Ed25519PrivateKey.generate()
    release = signed_by(manifest(), "val-2", stranger)
    _, why = verify_validation(release, load_registry(registry), [*ALLOWED, "val-2"])
    assert why == "val-2 has no registered signing key (zdp keys register-approver)"


@pytest.mark.parametrize(
    ("author", "refusal"),
    [
        ("qa-lead", "qa-lead authored this release"),
        ("Qa-Lead@example.com", "qa-lead authored this release"),  # git records an e-mail
        (None, "the release names no author"),
        ("  ", "the release names no author"),
    ],
)
def test_the_author_cannot_approve_their_own_release(
    registry: Path, author: str | None, refusal: str
) -> None:
    with pytest.raises(ReleaseError, match=refusal):
        approve_validation(
            manifest(author=author), "qa-lead", "ok", QA_KEY, load_registry(registry)
        )
    forged = signed_by(manifest(author=author), "qa-lead", QA_KEY)
    _, why = verify_validation(forged, load_registry(registry), ALLOWED)
    assert why is not None and refusal in why


# --------------------------------------------------------------------------- the commands

cli = typer.Typer()
cli.add_typer(keys_cmd.app, name="keys")
cli.add_typer(release_cmd.app, name="release")


def run(*args: str | Path, env: dict[str, str]) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], env=env)


def bootstrap_admin(tmp_path: Path, env: dict[str, str]) -> list[str | Path]:
    """The registry's first administrator, self-registered; the options that sign as them."""
    assert run("keys", "generate", "admin", "--dir", tmp_path, env=env).exit_code == 0
    made = run(
        "keys", "register", "ada", "--key", tmp_path / "admin.key", "--printed-name",
        "Ada D. Admin", "--administrator", "--as", "ada", env=env,
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    return ["--as", "ada", "--admin-key", tmp_path / "admin.key"]


def test_registration_refuses_a_key_without_a_passphrase(tmp_path: Path) -> None:
    env = {
        "ZDP_APPROVER_REGISTRY": str(tmp_path / "approvers"),
        "PASS": "correct horse",
        "ZDP_HOME": str(tmp_path / "home"),
    }
    assert run("keys", "generate", "plain", "--dir", tmp_path, env=env).exit_code == 0
    admin = bootstrap_admin(tmp_path, env)
    refused = run(
        "keys", "register-approver", "qa-lead", "--key", tmp_path / "plain.key",
        "--printed-name", "Quinn A. Lead", *admin, env=env,
    )  # fmt: skip
    assert_one_line_error(refused, "plain.key is not passphrase-encrypted", code=2)
    assert not (tmp_path / "approvers" / "qa-lead.json").exists()

    made = run("keys", "generate", "locked", "--dir", tmp_path, "--passphrase-env", "PASS", env=env)
    assert made.exit_code == 0, made.output
    ok = run(
        "keys", "register-approver", "qa-lead", "--key", tmp_path / "locked.key",
        "--printed-name", "Quinn A. Lead", "--passphrase-env", "PASS", *admin, env=env,
    )  # fmt: skip
    assert ok.exit_code == 0, ok.output
    assert ok.stdout.startswith("registered qa-lead (Quinn A. Lead; person): sha256:")
    assert "signed by ada; recorded in the audit log" in ok.stdout


def test_approve_validation_then_sign(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    env = {
        "ZDP_APPROVER_REGISTRY": str(tmp_path / "approvers"),
        "PASS": "correct horse",
        "ZDP_CONFIG": str(Path(__file__).parents[1] / "workflows" / "engine.yaml"),
        "ZDP_HOME": str(tmp_path / "home"),
    }
    for name in ("val", "ci"):
        assert run("keys", "generate", name, "--dir", tmp_path, "--passphrase-env", "PASS",
                   env=env).exit_code == 0  # fmt: skip
    admin = bootstrap_admin(tmp_path, env)
    registered = run(
        "keys", "register-approver", "validation-eng", "--key", tmp_path / "val.key",
        "--printed-name", "Vera L. Engineer", "--passphrase-env", "PASS", *admin, env=env,
    )  # fmt: skip
    assert registered.exit_code == 0, registered.output
    created = run(
        "release", "create", "webshop", "--version", "2.1.0", "--image",
        "registry.example.com/shop/webshop@sha256:" + "ab" * 32, "--author", "dev-dana",
        "--validation-doc", "VAL-2026-0142", "-o", "release.json", env=env,
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    assert "VAL-2026-0142 (IQ/OQ/PQ pending" in created.stdout

    approved = run(
        "release", "approve-validation", "release.json", "--as", "validation-eng", "--key",
        tmp_path / "val.key", "--meaning", "IQ/OQ/PQ executed and approved",
        "--passphrase-env", "PASS", env=env,
    )  # fmt: skip
    assert approved.exit_code == 0, approved.output
    assert approved.stdout.startswith("validation VAL-2026-0142 approved by validation-eng")
    ref = json.loads((tmp_path / "release.json").read_text())["validation"]
    assert ref["status"] == "approved" and ref["signature"]["sig"]

    unknown = run(
        "release", "approve-validation", "release.json", "--as", "stranger", "--key",
        tmp_path / "ci.key", "--meaning", "ok", "--passphrase-env", "PASS", env=env,
    )  # fmt: skip
    assert_one_line_error(unknown, "stranger has no registered signing key")
