"""`zdp keys` and `zdp release` as a user runs them: outputs, exit codes, one-line errors."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner, Result

from tests.cli_checks import assert_one_line_error
from zdp.cli import keys_cmd, release_cmd

IMAGE = "registry.example.com/shop/webshop@sha256:" + "ab" * 32

cli = typer.Typer()
cli.add_typer(keys_cmd.app, name="keys")
cli.add_typer(release_cmd.app, name="release")


def run(*args: str | Path, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], env=env)


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working folder with a key pair in ./keys and its public key in ./trusted."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ZDP_CONFIG", str(Path(__file__).parents[1] / "workflows" / "engine.yaml"))
    result = run("keys", "generate", "release-ci")
    assert result.exit_code == 0, result.output
    (tmp_path / "trusted").mkdir()
    (tmp_path / "trusted" / "release-ci.pub").write_bytes(
        (tmp_path / "keys" / "release-ci.pub").read_bytes()
    )
    return tmp_path


def test_keys_generate_writes_the_pair_and_prints_the_fingerprint(workspace: Path) -> None:
    key = workspace / "keys" / "release-ci.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert (workspace / "keys" / "release-ci.pub").is_file()

    result = run("keys", "generate", "other", "--dir", workspace / "elsewhere")
    assert result.exit_code == 0, result.output
    assert "fingerprint: sha256:" in result.stdout
    assert (workspace / "elsewhere" / "other.key").is_file()


def test_keys_generate_refuses_to_overwrite_unless_forced(workspace: Path) -> None:
    before = (workspace / "keys" / "release-ci.key").read_bytes()
    assert_one_line_error(run("keys", "generate", "release-ci"), "already exists")
    assert (workspace / "keys" / "release-ci.key").read_bytes() == before

    assert run("keys", "generate", "release-ci", "--force").exit_code == 0
    assert (workspace / "keys" / "release-ci.key").read_bytes() != before


def test_passphrase_is_never_a_plain_option(workspace: Path) -> None:
    result = run("keys", "generate", "x", "--passphrase", "hunter2")
    assert result.exit_code == 2
    assert not (workspace / "keys" / "x.key").exists()


def test_full_round_trip_create_sign_verify(workspace: Path) -> None:
    wheel = workspace / "webshop-2.0.0-py3-none-any.whl"
    wheel.write_bytes(b"wheel")

    created = run(
        "release", "create", "webshop", "--version", "2.0.0", "--artifact", wheel,
        "--ticket", "OPS-1", "--set", "FEATURE_X=on", "--set", "DSN=a=b", "-o", "release.json",
        "--for-env", "staging", "--for-env", "production",
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    data = json.loads((workspace / "release.json").read_text())
    assert data["config_overrides"] == {"FEATURE_X": "on", "DSN": "a=b"}
    assert data["environments"] == ["staging", "production"]  # signed with the rest
    assert data["change"]["ticket"] == "OPS-1"

    signed = run("release", "sign", "release.json", "--key", "keys/release-ci.key")
    assert signed.exit_code == 0, signed.output
    assert "release.dsse.json" in signed.stdout
    assert "signer: sha256:" in signed.stdout

    verified = run("release", "verify", "release.json", "--trusted-keys", "trusted")
    assert verified.exit_code == 0, verified.output
    fingerprint = signed.stdout.split("signer: ")[1].strip()
    assert verified.stdout.strip() == f"verified: webshop 2.0.0 signed by {fingerprint}"


def test_one_changed_byte_in_the_manifest_fails_verify(workspace: Path) -> None:
    assert run("release", "create", "webshop", "--version", "2", "--image", IMAGE).exit_code == 0
    assert run("release", "sign", "release.json", "--key", "keys/release-ci.key").exit_code == 0
    manifest = workspace / "release.json"
    data = bytearray(manifest.read_bytes())
    at = data.index(b'"version": "2"') + len(b'"version": "')
    data[at] = ord("3")  # exactly one byte changes
    manifest.write_bytes(bytes(data))

    result = run("release", "verify", "release.json", "--trusted-keys", "trusted")

    assert_one_line_error(result, "manifest differs from the signed release: version")


def test_verify_without_a_signature_or_trusted_keys_is_one_line(workspace: Path) -> None:
    assert run("release", "create", "webshop", "--version", "2", "--image", IMAGE).exit_code == 0
    assert_one_line_error(
        run("release", "verify", "release.json", "--trusted-keys", "trusted"),
        "no signature: release.dsse.json not found",
    )
    assert_one_line_error(
        run("release", "verify", "release.json", "--trusted-keys", "nowhere"),
        "trusted keys folder not found",
    )


def test_signature_by_another_key_is_an_unknown_key(workspace: Path) -> None:
    assert run("keys", "generate", "rogue").exit_code == 0
    assert run("release", "create", "webshop", "--version", "2", "--image", IMAGE).exit_code == 0
    assert run("release", "sign", "release.json", "--key", "keys/rogue.key").exit_code == 0
    assert_one_line_error(
        run("release", "verify", "release.json", "--trusted-keys", "trusted"), "unknown key"
    )


def test_encrypted_key_signs_only_with_its_passphrase(workspace: Path) -> None:
    env = {"ZDP_KEY_PASS": "s3cret"}
    assert (
        run("keys", "generate", "locked", "--passphrase-env", "ZDP_KEY_PASS", env=env).exit_code
        == 0
    )
    assert b"ENCRYPTED" in (workspace / "keys" / "locked.key").read_bytes()
    assert run("release", "create", "webshop", "--version", "2", "--image", IMAGE).exit_code == 0

    assert_one_line_error(
        run("release", "sign", "release.json", "--key", "keys/locked.key"), "is encrypted"
    )
    (workspace / "wrong.txt").write_text("nope\n")
    assert_one_line_error(
        run("release", "sign", "release.json", "--key", "keys/locked.key",
            "--passphrase-file", "wrong.txt"),
        "wrong passphrase",
    )  # fmt: skip
    (workspace / "right.txt").write_text("s3cret\n")
    result = run(
        "release", "sign", "release.json", "--key", "keys/locked.key",
        "--passphrase-file", "right.txt", "-o", "out/sig.json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (workspace / "out" / "sig.json").is_file()


def test_create_refuses_an_image_by_tag(workspace: Path) -> None:
    result = run(
        "release", "create", "webshop", "--version", "2", "--image", "registry.example.com/x:2"
    )
    assert_one_line_error(result, "pin the image by digest")
    assert not (workspace / "release.json").exists()


def test_create_from_git_outside_a_repo_is_one_line(workspace: Path) -> None:
    result = run(
        "release", "create", "webshop", "--version", "2", "--image", IMAGE,
        "--from-git", "v1..HEAD", "--repo", workspace,
    )  # fmt: skip
    assert_one_line_error(result, "git diff failed")


def test_sign_a_broken_manifest_is_one_line(workspace: Path) -> None:
    (workspace / "release.json").write_text("{")
    assert_one_line_error(
        run("release", "sign", "release.json", "--key", "keys/release-ci.key"), "not valid JSON"
    )


def test_error_messages_with_brackets_are_printed_verbatim(workspace: Path) -> None:
    assert_one_line_error(
        run("release", "verify", "[bold]x.json", "--trusted-keys", "trusted"),
        "release manifest not found: [bold]x.json",
    )


def test_prompted_passphrase_is_confirmed_and_encrypts_the_key(workspace: Path) -> None:
    result = CliRunner().invoke(
        cli, ["keys", "generate", "prompted", "--prompt"], input="pw-1\npw-1\n"
    )
    assert result.exit_code == 0, result.output
    assert "pw-1" not in result.output
    assert b"ENCRYPTED" in (workspace / "keys" / "prompted.key").read_bytes()

    both = run("keys", "generate", "y", "--prompt", "--passphrase-env", "X")
    assert both.exit_code == 2


def test_create_with_a_validation_document_records_it(workspace: Path) -> None:
    result = run(
        "release", "create", "webshop", "--version", "2.0.0",
        "--image", IMAGE, "--validation-doc", "VAL-2026-0142", "-o", "release.json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    # Pending until a validation approver signs it (tests/unit/test_validation_signature.py).
    assert "validation: VAL-2026-0142 (IQ/OQ/PQ pending: a validation approver signs it" in (
        result.stdout
    )
    manifest = json.loads((workspace / "release.json").read_text())
    assert manifest["validation"] == {
        "document_id": "VAL-2026-0142",
        "qualifications": ["IQ", "OQ", "PQ"],
        "status": "pending",
        "signature": None,
    }


def test_create_refuses_a_malformed_validation_document_id(workspace: Path) -> None:
    result = run(
        "release", "create", "webshop", "--version", "2.0.0",
        "--image", IMAGE, "--validation-doc", "no spaces allowed",
    )  # fmt: skip
    assert_one_line_error(result, "validation document id 'no spaces allowed' is not valid")


def test_a_hand_written_manifest_is_the_release_it_signed(workspace: Path) -> None:
    """A manifest that leaves out defaults (as CI writes one) is accepted beside its own
    envelope; a key named twice, or any changed field, is refused."""
    from zdp.errors import ReleaseError
    from zdp.release import read_release_input

    minimal = {
        "app": "webshop",
        "version": "2.0.0",
        "artifact": {"kind": "oci-image", "reference": IMAGE, "digest": "sha256:" + "ab" * 32},
        "created_at": "2026-12-06T10:00:00+00:00",
    }
    (workspace / "release.json").write_text(json.dumps(minimal))
    signed = run("release", "sign", "release.json", "--key", "keys/release-ci.key")
    assert signed.exit_code == 0, signed.output
    assert read_release_input(workspace / "release.json").payloadType

    text = json.dumps(minimal)
    (workspace / "release.json").write_text(text[:-1] + ', "version": "9.9.9"}')
    with pytest.raises(ReleaseError, match="names 'version' twice"):
        read_release_input(workspace / "release.json")
    (workspace / "release.json").write_text(json.dumps({**minimal, "version": "9.9.9"}))
    with pytest.raises(ReleaseError, match=r"differs from the release signed in .* \(version\)"):
        read_release_input(workspace / "release.json")
