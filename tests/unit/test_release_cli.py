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
from zdp.config import load_config

IMAGE = "registry.example.com/shop/webshop@sha256:" + "ab" * 32
APPS = Path(__file__).parents[2] / "infrastructure" / "canary-deployments" / "apps.yaml"
PCI = {
    "description": "Quotes from the in-memory book",
    "security_impact": "none: no change to authentication or stored data",
    "test_evidence": "CI run 4242, staging canary promoted",
    "backout_procedure": "zdp abort; after promotion redeploy 2.0.0 with --allow-downgrade",
}

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
        "--for-env", "dev", "--for-env", "prod",
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    data = json.loads((workspace / "release.json").read_text())
    assert data["config_overrides"] == {"FEATURE_X": "on", "DSN": "a=b"}
    assert data["environments"] == ["dev", "prod"]  # signed with the rest
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

    assert_one_line_error(  # no terminal to ask on: refused before anything is signed
        run("release", "sign", "release.json", "--key", "keys/locked.key"), "is encrypted", 2
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


# --------------------------------------------------------------------------- change records


@pytest.fixture
def production(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The workspace against the shipped engine config (finance: sox and pci-dss in
    production; pharma: part11 and gdpr, and a validation document), with a wheel."""
    monkeypatch.setenv("ZDP_CONFIG", str(APPS))
    (workspace / "finance_trading-1.0.0-py3-none-any.whl").write_bytes(b"wheel")
    return workspace


def create(*args: str | Path, env: dict[str, str] | None = None) -> Result:
    return run(
        "release", "create", "finance-trading", "--version", "2.1.0",
        "--artifact", "finance_trading-1.0.0-py3-none-any.whl", *args, env=env,
    )  # fmt: skip


def test_the_whole_change_record_comes_from_a_file_and_flags_win(production: Path) -> None:
    record = production / "change.yaml"
    record.write_text(
        "ticket: CHG-1234\nauthor: dev@example.com\n"
        + "".join(f"{key}: {json.dumps(value)}\n" for key, value in PCI.items())
        + "reason: quotes were slow at the open\n"
    )
    result = create(
        "--change-record", record, "--test-evidence", "report-77.html", "--for-env", "production"
    )
    assert result.exit_code == 0, result.output
    change = json.loads((production / "release.json").read_text())["change"]
    assert change["ticket"] == "CHG-1234" and change["author"] == "dev@example.com"
    assert change["description"] == PCI["description"]
    assert change["security_impact"] == PCI["security_impact"]
    assert change["backout_procedure"] == PCI["backout_procedure"]
    assert change["test_evidence"] == "report-77.html"  # the flag, over the file
    assert "reason" not in change  # the request's, not the release's: said for zdp deploy
    assert "reason:   quotes were slow at the open (for `zdp deploy --reason`)" in result.stdout
    assert "note:" not in result.stdout  # nothing more to give for production


def test_every_field_has_a_flag(production: Path) -> None:
    flags = [arg for key, value in PCI.items() for arg in (f"--{key.replace('_', '-')}", value)]
    result = create(
        *flags, "--ticket", "CHG-1", "--personal-data-change", "--dpia-ref", "DPIA-7",
        "--for-env", "production",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    change = json.loads((production / "release.json").read_text())["change"]
    assert {key: change[key] for key in PCI} == PCI
    assert change["personal_data_change"] is True and change["dpia_ref"] == "DPIA-7"
    # The reason is given at deploy: create says so once.
    assert "production (pci-dss 6.5.1) needs the reason for the change: give `zdp deploy " in (
        result.stdout
    )


def test_production_without_the_pci_record_is_refused_at_create_naming_each_field(
    production: Path,
) -> None:
    result = create("--ticket", "CHG-1", "--description", "x", "--for-env", "production")
    assert_one_line_error(result, "not written: for production (sox, pci-dss) it lacks: ", 2)
    line = result.stderr
    assert "change description" not in line  # given
    for flag in ("--security-impact", "--test-evidence", "--backout-procedure"):
        assert flag in line
    assert "give them as flags or in --change-record FILE" in line
    assert not (production / "release.json").exists()
    # Staging asks for none of it: the same release is written for staging.
    assert create("--for-env", "staging").exit_code == 0


def test_without_for_env_the_missing_record_is_refused_at_verify(production: Path) -> None:
    """Not bound to an environment, the release is written; production's verify (the worker's
    accept_release, which `zdp deploy` runs first) refuses it, naming what it lacks."""
    from zdp.acceptance import Target, accept_release
    from zdp.errors import ReleaseVerificationError
    from zdp.release import read_manifest

    assert create("--ticket", "CHG-1").exit_code == 0
    manifest = read_manifest(production / "release.json")
    target = Target("finance-trading", "production", change_ref=None, reason="slow quotes")
    with pytest.raises(ReleaseVerificationError) as refused:
        accept_release(manifest, target, load_config(APPS))
    for what in ("change description", "security impact", "test evidence", "back-out procedure"):
        assert f"{what} (pci-dss 6.5.1)" in str(refused.value)

    flags = [arg for key, value in PCI.items() for arg in (f"--{key.replace('_', '-')}", value)]
    assert create("--ticket", "CHG-1", *flags).exit_code == 0
    checks = accept_release(read_manifest(production / "release.json"), target, load_config(APPS))
    assert any(c.name == "compliance" and c.passed for c in checks)


def test_pharma_production_needs_its_validation_document_and_says_what_comes_next(
    production: Path,
) -> None:
    (production / "pharma_manufacturing-1.0.0-py3-none-any.whl").write_bytes(b"wheel")

    def pharma(*args: str) -> Result:
        return run(
            "release", "create", "pharma-manufacturing", "--version", "2.1.0", "--artifact",
            "pharma_manufacturing-1.0.0-py3-none-any.whl", "--for-env", "production", *args,
        )  # fmt: skip

    assert_one_line_error(pharma(), "validation document (--validation-doc ID; part11)", 2)
    record = production / "change.json"
    record.write_text(json.dumps({"validation_doc": "VAL-2026-0142", "author": "dev"}))
    result = pharma("--change-record", str(record))
    assert result.exit_code == 0, result.output
    pending = [line for line in result.stdout.splitlines() if line.startswith("pending: ")]
    assert len(pending) == 1, result.stdout
    assert "(validation-eng, qa-lead), not the author" in pending[0]
    assert "zdp release approve-validation release.json --as USER" in pending[0]
    manifest = json.loads((production / "release.json").read_text())
    assert manifest["validation"]["document_id"] == "VAL-2026-0142"
    assert manifest["validation"]["status"] == "pending"


def test_an_environment_the_app_does_not_have_is_refused(production: Path) -> None:
    assert_one_line_error(
        create("--for-env", "prod"), "app 'finance-trading' has no environment 'prod'", 2
    )


def test_a_bad_change_record_file_is_one_line(production: Path) -> None:
    (production / "change.yaml").write_text("risk: low\n")
    assert_one_line_error(create("--change-record", "change.yaml"), "unknown field 'risk'", 2)
    assert_one_line_error(
        create("--change-record", "nowhere.yaml"), "change record not found: nowhere.yaml", 2
    )


# --------------------------------------------------------------------------- the operator's key


def test_sign_without_a_key_says_which_key_and_how_to_make_it(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ZDP_KEY_DIR", str(workspace / "my-keys"))
    monkeypatch.setenv("ZDP_HOME", str(workspace / "home"))
    monkeypatch.setenv("ZDP_USER", "olivia")
    monkeypatch.delenv("ZDP_TRUSTED_KEYS", raising=False)
    assert run("release", "create", "webshop", "--version", "2", "--image", IMAGE).exit_code == 0

    result = run("release", "sign", "release.json")
    assert_one_line_error(result, f"no signing key for olivia: {workspace}/my-keys/olivia.key", 2)
    assert f"`zdp keys generate olivia --dir {workspace}/my-keys --prompt`" in result.stderr
    assert f"--public-key {workspace}/my-keys/olivia.pub" in result.stderr
    assert f"`cp {workspace}/my-keys/olivia.pub {workspace}/home/trusted-keys/`" in result.stderr
    assert not (workspace / "release.dsse.json").exists()

    assert run("keys", "generate", "olivia", "--dir", workspace / "my-keys").exit_code == 0
    signed = run("release", "sign", "release.json")
    assert signed.exit_code == 0, signed.output
    assert (workspace / "release.dsse.json").is_file()


def test_signing_key_checks_trust_then_registration(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ZDP_KEY_DIR", str(workspace / "keys"))
    monkeypatch.setenv("ZDP_HOME", str(workspace / "home"))
    monkeypatch.setenv("ZDP_USER", "release-ci")
    monkeypatch.delenv("ZDP_APPROVER_REGISTRY", raising=False)
    (workspace / "untrusted").mkdir()

    shown = run("release", "signing-key", "--trusted-keys", "trusted")
    assert shown.exit_code == 0, shown.output
    assert shown.stdout.splitlines()[:2] == [
        "user: release-ci", f"key: {workspace}/keys/release-ci.key"
    ]  # fmt: skip
    refused = run("release", "signing-key", "--trusted-keys", "untrusted")
    assert_one_line_error(refused, "the worker does not trust", 2)
    assert f"cp {workspace}/keys/release-ci.pub untrusted/" in refused.stderr

    first = run("release", "signing-key", "--registered")
    assert_one_line_error(first, "the registry", 2)
    assert "--administrator --as release-ci" in first.stderr  # the first administrator
    registered = run(
        "keys", "register", "release-ci", "--key", "keys/release-ci.key",
        "--printed-name", "Release CI", "--administrator", "--as", "release-ci",
    )  # fmt: skip
    assert registered.exit_code == 0, registered.output
    assert run("release", "signing-key", "--registered").exit_code == 0
    assert_one_line_error(
        run("release", "signing-key", "--registered", "--as", "olivia", "--key",
            "keys/release-ci.key"),
        "olivia is not registered in",
        2,
    )  # fmt: skip
