"""Release manifests: creating (with git metadata), files, signing, every refusal."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from zdp.errors import ReleaseError, ReleaseVerificationError
from zdp.models import Artifact, DsseEnvelope, ReleaseManifest
from zdp.release import (
    PAYLOAD_TYPE,
    PREDICATE_TYPE,
    STATEMENT_TYPE,
    ChangeRecord,
    classify_changed_paths,
    count_changed_lines,
    create_manifest,
    envelope_path_for,
    find_ticket,
    git_change_metadata,
    load_change_record,
    missing_for_environment,
    read_manifest,
    release_statement,
    sign_manifest,
    verify_envelope,
    verify_release_files,
    write_envelope,
    write_manifest,
)
from zdp.signing import fingerprint, generate_key_pair, load_private_key, sign_dsse

KEY = Ed25519PrivateKey.generate()
STRANGER = Ed25519PrivateKey.generate()
TRUSTED = {fingerprint(KEY.public_key()): KEY.public_key()}
DIGEST = "sha256:" + "ab" * 32
IMAGE = f"registry.example.com/shop/webshop@{DIGEST}"


def manifest(**changes: Any) -> ReleaseManifest:
    base = ReleaseManifest(
        app="webshop",
        version="2.0.0",
        artifact=Artifact(kind="oci-image", reference=IMAGE, digest=DIGEST),
    )
    return base.model_copy(update=changes)


def signed_statement(statement: dict[str, Any], key: Ed25519PrivateKey = KEY) -> DsseEnvelope:
    return sign_dsse(PAYLOAD_TYPE, json.dumps(statement).encode(), key)


# --------------------------------------------------------------------------- creating


def test_wheel_artifact_is_named_by_file_and_pinned_by_its_sha256(tmp_path: Path) -> None:
    wheel = tmp_path / "webshop-2.0.0-py3-none-any.whl"
    wheel.write_bytes(b"wheel bytes")

    created = create_manifest("webshop", "2.0.0", wheel, None, None, config_overrides={"A": "1"})

    assert created.artifact == Artifact(
        kind="wheel",
        reference="webshop-2.0.0-py3-none-any.whl",
        digest="sha256:" + hashlib.sha256(b"wheel bytes").hexdigest(),
    )
    assert created.config_overrides == {"A": "1"}
    assert created.created_at is not None and created.created_at.utcoffset() is not None


def test_image_pinned_by_digest_is_parsed() -> None:
    created = create_manifest("webshop", "2.0.0", None, IMAGE, None, ticket="OPS-7", author="bob")
    assert created.artifact == Artifact(kind="oci-image", reference=IMAGE, digest=DIGEST)
    assert (created.change.ticket, created.change.author) == ("OPS-7", "bob")


@pytest.mark.parametrize(
    "image", ["registry.example.com/shop/webshop:2.0.0", "webshop@sha256:abc", "@" + DIGEST]
)
def test_image_not_pinned_by_digest_is_refused(image: str) -> None:
    with pytest.raises(ReleaseError, match="pin the image by digest"):
        create_manifest("webshop", "2.0.0", None, image, None)


def test_exactly_one_artifact_is_required(tmp_path: Path) -> None:
    with pytest.raises(ReleaseError, match="exactly one artifact"):
        create_manifest("webshop", "2.0.0", None, None, None)
    with pytest.raises(ReleaseError, match="exactly one artifact"):
        create_manifest("webshop", "2.0.0", tmp_path / "a.whl", IMAGE, None)
    with pytest.raises(ReleaseError, match="artifact not found"):
        create_manifest("webshop", "2.0.0", tmp_path / "a.whl", None, None)


def test_invalid_app_name_is_one_line() -> None:
    with pytest.raises(ReleaseError) as caught:
        create_manifest("Web Shop", "2.0.0", None, IMAGE, None)
    assert str(caught.value).startswith("invalid release: app: app must be a DNS-style name")
    assert "\n" not in str(caught.value)


# --------------------------------------------------------------------------- files


def test_manifest_round_trips_through_an_atomic_write(tmp_path: Path) -> None:
    path = tmp_path / "out" / "release.json"
    original = create_manifest("webshop", "2.0.0", None, IMAGE, None)
    write_manifest(original, path)
    assert read_manifest(path) == original
    assert [p.name for p in path.parent.iterdir()] == ["release.json"]


def test_read_manifest_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(ReleaseError, match="release manifest not found"):
        read_manifest(tmp_path / "missing.json")

    broken = tmp_path / "broken.json"
    broken.write_text('{"app": ')
    with pytest.raises(ReleaseError, match=r"is not valid JSON: .* at line 1"):
        read_manifest(broken)

    invalid = tmp_path / "invalid.json"
    data = manifest().model_dump(mode="json")
    data["artifact"]["digest"] = "sha256:nothex"
    invalid.write_text(json.dumps(data))
    with pytest.raises(ReleaseError) as caught:
        read_manifest(invalid)
    assert str(caught.value) == (
        f"{invalid} is not a valid release manifest: artifact.digest: "
        "digest must be 'sha256:' followed by 64 lowercase hex digits"
    )


def test_envelope_lives_next_to_the_manifest() -> None:
    assert envelope_path_for(Path("out/release.json")) == Path("out/release.dsse.json")


# --------------------------------------------------------------------------- signing


def test_sign_then_verify_returns_the_signed_manifest() -> None:
    original = manifest()
    envelope = sign_manifest(original, KEY)

    verified = verify_envelope(envelope, TRUSTED)

    payload = base64.b64decode(envelope.payload)
    assert envelope.payloadType == PAYLOAD_TYPE == "application/vnd.in-toto+json"
    assert verified.manifest == original
    assert verified.signer_fingerprint == fingerprint(KEY.public_key())
    assert verified.statement_digest == "sha256:" + hashlib.sha256(payload).hexdigest()


def test_payload_is_a_canonical_in_toto_statement() -> None:
    payload = base64.b64decode(sign_manifest(manifest(), KEY).payload)
    statement = json.loads(payload)

    assert payload == json.dumps(statement, sort_keys=True, separators=(",", ":")).encode()
    assert statement["_type"] == STATEMENT_TYPE == "https://in-toto.io/Statement/v1"
    assert statement["subject"] == [{"name": IMAGE, "digest": {"sha256": "ab" * 32}}]
    assert statement["predicateType"] == PREDICATE_TYPE
    assert statement["predicate"] == manifest().model_dump(mode="json")


def test_tampered_payload_is_a_bad_signature() -> None:
    envelope = sign_manifest(manifest(), KEY)
    statement = json.loads(base64.b64decode(envelope.payload))
    statement["predicate"]["version"] = "2.0.0-evil"
    envelope.payload = base64.b64encode(json.dumps(statement).encode()).decode()
    with pytest.raises(ReleaseVerificationError, match=r"^bad signature"):
        verify_envelope(envelope, TRUSTED)


def test_signature_by_an_untrusted_key_is_an_unknown_key() -> None:
    with pytest.raises(ReleaseVerificationError, match=r"^unknown key"):
        verify_envelope(sign_manifest(manifest(), STRANGER), TRUSTED)


def test_forged_keyid_naming_a_trusted_key_is_refused() -> None:
    envelope = sign_manifest(manifest(), STRANGER)
    envelope.signatures[0].keyid = fingerprint(KEY.public_key())
    with pytest.raises(ReleaseVerificationError, match=r"^bad signature"):
        verify_envelope(envelope, TRUSTED)


def test_wrong_payload_type_is_refused() -> None:
    envelope = sign_manifest(manifest(), KEY)
    envelope.payloadType = "application/json"
    with pytest.raises(ReleaseVerificationError, match=r"^wrong payload type"):
        verify_envelope(envelope, TRUSTED)


def test_envelope_without_signatures_is_refused() -> None:
    envelope = sign_manifest(manifest(), KEY)
    envelope.signatures = []
    with pytest.raises(ReleaseVerificationError, match=r"^no signature"):
        verify_envelope(envelope, TRUSTED)


def test_signed_payload_that_is_not_a_statement_is_refused() -> None:
    statement = release_statement(manifest())
    statement["_type"] = "https://in-toto.io/Statement/v0.1"
    with pytest.raises(ReleaseVerificationError, match="not an in-toto Statement v1"):
        verify_envelope(signed_statement(statement), TRUSTED)
    with pytest.raises(ReleaseVerificationError, match="not an in-toto Statement v1: not JSON"):
        verify_envelope(sign_dsse(PAYLOAD_TYPE, b"\xff not json", KEY), TRUSTED)


def test_wrong_predicate_type_is_refused() -> None:
    statement = release_statement(manifest())
    statement["predicateType"] = "https://slsa.dev/provenance/v1"
    with pytest.raises(ReleaseVerificationError, match=r"^wrong predicateType"):
        verify_envelope(signed_statement(statement), TRUSTED)


def test_predicate_that_is_not_a_manifest_is_refused() -> None:
    statement = release_statement(manifest())
    del statement["predicate"]["version"]
    with pytest.raises(
        ReleaseVerificationError, match=r"^predicate is not a valid release manifest: version:"
    ):
        verify_envelope(signed_statement(statement), TRUSTED)


def test_subject_digest_must_match_the_manifest_artifact() -> None:
    statement = release_statement(manifest())
    statement["subject"][0]["digest"]["sha256"] = "cd" * 32
    with pytest.raises(ReleaseVerificationError, match=r"subject digest .* differs"):
        verify_envelope(signed_statement(statement), TRUSTED)


# --------------------------------------------------------------------------- files on disk


@pytest.fixture
def signed_wheel_release(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(manifest path, trusted keys dir, wheel path) of a wheel release signed on disk."""
    keys = generate_key_pair(tmp_path / "keys", "ci")
    trusted = tmp_path / "trusted"
    trusted.mkdir()
    (trusted / "ci.pub").write_bytes(keys.public_key.read_bytes())
    wheel = tmp_path / "webshop-2.0.0-py3-none-any.whl"
    wheel.write_bytes(b"the wheel")
    path = tmp_path / "release.json"
    release = create_manifest("webshop", "2.0.0", wheel, None, None)
    write_manifest(release, path)
    write_envelope(
        sign_manifest(release, load_private_key(keys.private_key)), envelope_path_for(path)
    )
    return path, trusted, wheel


def test_release_files_verify(signed_wheel_release: tuple[Path, Path, Path]) -> None:
    path, trusted, wheel = signed_wheel_release
    verified = verify_release_files(path, trusted)
    assert verified.manifest == read_manifest(path)
    assert verify_release_files(path, trusted, artifact_path=wheel) == verified


def test_one_changed_byte_in_the_manifest_file_is_refused(
    signed_wheel_release: tuple[Path, Path, Path],
) -> None:
    path, trusted, _ = signed_wheel_release
    path.write_bytes(path.read_bytes().replace(b'"2.0.0"', b'"2.0.1"', 1))
    with pytest.raises(ReleaseVerificationError) as caught:
        verify_release_files(path, trusted)
    assert str(caught.value) == "manifest differs from the signed release: version"


def test_manifest_file_broken_after_signing_is_refused(
    signed_wheel_release: tuple[Path, Path, Path],
) -> None:
    path, trusted, _ = signed_wheel_release
    path.write_bytes(path.read_bytes().replace(b"{", b"[", 1))
    with pytest.raises(ReleaseVerificationError, match=r"manifest differs .* not valid JSON"):
        verify_release_files(path, trusted)


def test_wheel_changed_after_signing_is_an_artifact_digest_mismatch(
    signed_wheel_release: tuple[Path, Path, Path],
) -> None:
    path, trusted, wheel = signed_wheel_release
    wheel.write_bytes(b"the wheel, patched")
    with pytest.raises(
        ReleaseVerificationError, match=r"^artifact digest mismatch: signed sha256:.* file has"
    ):
        verify_release_files(path, trusted)


def test_explicit_artifact_must_exist_and_match(
    signed_wheel_release: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    path, trusted, _ = signed_wheel_release
    with pytest.raises(ReleaseVerificationError, match="artifact not found"):
        verify_release_files(path, trusted, artifact_path=tmp_path / "other.whl")
    other = tmp_path / "other.whl"
    other.write_bytes(b"another wheel")
    with pytest.raises(ReleaseVerificationError, match="artifact digest mismatch"):
        verify_release_files(path, trusted, artifact_path=other)


def test_missing_envelope_is_no_signature(signed_wheel_release: tuple[Path, Path, Path]) -> None:
    path, trusted, _ = signed_wheel_release
    envelope = envelope_path_for(path)
    envelope.unlink()
    with pytest.raises(ReleaseVerificationError) as caught:
        verify_release_files(path, trusted)
    assert str(caught.value) == f"no signature: {envelope} not found"


# --------------------------------------------------------------------------- git


GIT_ENV = {
    "GIT_AUTHOR_NAME": "Ada Dev",
    "GIT_AUTHOR_EMAIL": "ada@example.com",
    "GIT_COMMITTER_NAME": "Ada Dev",
    "GIT_COMMITTER_EMAIL": "ada@example.com",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, **GIT_ENV}
    done = subprocess.run(
        ["git", "-C", str(repo), *args], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repo tagged v1.0.0, then one commit adding a migration, config and a dependency."""
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "pyproject.toml").write_text('[project]\nname = "webshop"\ndependencies = []\n')
    (root / "app.py").write_text("print('v1')\n")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "initial")
    git(root, "tag", "v1.0.0")

    (root / "pyproject.toml").write_text('[project]\nname = "webshop"\ndependencies = ["httpx"]\n')
    (root / "migrations").mkdir()
    (root / "migrations" / "0002_add_orders.py").write_text("up = 1\ndown = 2\n")
    (root / "config").mkdir()
    (root / "config" / "settings.yaml").write_text("limit: 5\n")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "Add orders table\n\nRefs PAY-142, follow-up to PAY-99")
    return root


def test_git_metadata_comes_from_the_range(repo: Path) -> None:
    change = git_change_metadata("v1.0.0..HEAD", repo)

    assert change.commit == git(repo, "rev-parse", "HEAD")
    assert change.files_changed == 3
    # pyproject: 1 added + 1 deleted; migration: 2 added; settings: 1 added.
    assert change.lines_changed == 5
    assert change.migrations and change.config_changed and change.dependencies_changed
    assert change.ticket == "PAY-142"
    assert change.author == "ada@example.com"


def test_code_only_range_flags_nothing(repo: Path) -> None:
    (repo / "app.py").write_text("print('v2')\nprint('more')\n")
    git(repo, "commit", "-q", "-am", "tweak output (UTF-8 safe)")
    change = git_change_metadata("HEAD~1..HEAD", repo)
    assert (change.files_changed, change.lines_changed) == (1, 3)
    assert not (change.migrations or change.config_changed or change.dependencies_changed)
    assert change.ticket is None


def test_create_manifest_from_git_lets_ticket_and_author_override(repo: Path) -> None:
    created = create_manifest(
        "webshop", "2.0.0", None, IMAGE, "v1.0.0..HEAD", repo=repo, author="carol"
    )
    assert created.change.ticket == "PAY-142"
    assert created.change.author == "carol"
    assert created.change.migrations


def test_bad_git_ranges_are_one_line_errors(repo: Path) -> None:
    with pytest.raises(ReleaseError, match=r"must look like FROM\.\.TO"):
        git_change_metadata("v1.0.0", repo)
    with pytest.raises(ReleaseError, match=r"must look like FROM\.\.TO"):
        git_change_metadata("--output=/tmp/x..HEAD", repo)
    with pytest.raises(ReleaseError, match="git diff failed"):
        git_change_metadata("v9.9.9..HEAD", repo)


def test_numstat_counts_added_and_deleted_lines_and_skips_binaries() -> None:
    assert count_changed_lines("3\t1\ta.py\0-\t-\tlogo.png\0" + "10\t0\tb.sql\0") == 14


def test_paths_are_classified_by_kind() -> None:
    assert classify_changed_paths(["db/alembic/versions/1.py"])["migrations"]
    assert classify_changed_paths(["schema/init.sql"])["migrations"]
    assert classify_changed_paths(["apps/pay/config/app.py"])["config_changed"]
    assert classify_changed_paths(["deploy.ini"])["config_changed"]
    assert classify_changed_paths(["prod.env"])["config_changed"]
    assert not classify_changed_paths(["tests/fixtures/x.yaml"])["config_changed"]
    assert classify_changed_paths(["requirements-dev.txt"])["dependencies_changed"]
    assert classify_changed_paths(["web/package-lock.json"])["dependencies_changed"]
    assert classify_changed_paths(["src/app.py", "README.md"]) == {
        "migrations": False,
        "config_changed": False,
        "dependencies_changed": False,
    }


def test_first_jira_style_ticket_wins_and_standards_are_not_tickets() -> None:
    assert find_ticket("handle UTF-8 and CVE-2024-1234 (OPS-12, OPS-13)") == "OPS-12"
    assert find_ticket("no ticket here, just a-1 and Pay-2") is None


@pytest.mark.parametrize(
    "version",
    ["../../trusted-keys", "/etc/zdp", "..", "2.0.0/../../x", "v2", "2.0.0\\..\\x", "", "1" * 65],
)
def test_a_version_that_is_not_a_version_is_refused_wherever_a_manifest_is_parsed(
    version: str,
) -> None:
    """A version names a folder of the local runtime (and a label on Kubernetes): one signed
    with a path in it is refused at verify, as by every other reader of a manifest."""
    statement = release_statement(manifest())
    statement["predicate"]["version"] = version
    with pytest.raises(ReleaseVerificationError, match="version"):
        verify_envelope(signed_statement(statement), TRUSTED)
    with pytest.raises(ValueError, match="version"):
        ReleaseManifest.model_validate({**manifest().model_dump(), "version": version})


@pytest.mark.parametrize("version", ["2.0.0", "2.0.0-rc.1", "2.0.0+build.5", "2.0.0rc1", "1.100.0"])
def test_semver_and_pep_440_versions_are_accepted(version: str) -> None:
    assert ReleaseManifest.model_validate({**manifest().model_dump(), "version": version})


# --------------------------------------------------------------------------- change records


def test_a_change_record_file_is_read_as_yaml_or_json_with_either_spelling(
    tmp_path: Path,
) -> None:
    yaml_file = tmp_path / "change.yaml"
    yaml_file.write_text(
        "ticket: 1234\n"  # a bare number is a ticket too
        "security-impact: none\n"
        "backout_procedure: |\n  redeploy 2.0.0\n"
        "description: ''\n"  # empty counts as not given
        "personal_data_change: true\n"
    )
    record = load_change_record(yaml_file)
    assert record.ticket == "1234"
    assert record.security_impact == "none"
    assert record.backout_procedure == "redeploy 2.0.0"
    assert record.description is None and record.personal_data_change is True

    json_file = tmp_path / "change.json"
    json_file.write_text(json.dumps({"test_evidence": "CI run 7", "reason": "slow quotes"}))
    record = load_change_record(json_file)
    assert record.test_evidence == "CI run 7" and record.reason == "slow quotes"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("risk: low\n", "unknown field 'risk'"),
        ("- a list\n", "must be a mapping"),
        ("description: [unclosed\n", "not valid YAML or JSON at line"),
        ("personal_data_change: maybe\n", "personal_data_change"),
        ("ticket: A\nticket: B\n", "names 'ticket' twice"),
        ("security_impact: x\nsecurity-impact: y\n", "names 'security_impact' twice"),
    ],
)
def test_a_bad_change_record_is_one_line_naming_the_field(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "change.yaml"
    path.write_text(text)
    with pytest.raises(ReleaseError, match=message) as caught:
        load_change_record(path)
    assert "\n" not in str(caught.value)
    with pytest.raises(ReleaseError, match="change record not found"):
        load_change_record(tmp_path / "missing.yaml")


def test_the_record_and_then_explicit_arguments_override_git(repo: Path) -> None:
    record = ChangeRecord(ticket="CHG-9", description="what", author="rec@example.com")
    created = create_manifest(
        "webshop", "2", None, IMAGE, "v1.0.0..HEAD", repo, author="cli@example.com", record=record
    )
    assert created.change.ticket == "CHG-9"  # the record's, over the commit message's
    assert created.change.author == "cli@example.com"  # the flag's, over the record's
    assert created.change.description == "what"
    assert created.change.lines_changed > 0  # git's own fields stay


def test_what_a_release_lacks_for_an_environment_matches_the_profiles_at_verify() -> None:
    """`missing_for_environment` (create --for-env) asks exactly what missing_evidence asks of
    the release, naming the flag for each; the request's own evidence is left to deploy."""
    from zdp.compliance.profiles import Evidence, missing_evidence

    bare = manifest()
    lacks = missing_for_environment(bare, ["sox", "pci-dss"], False)
    assert lacks == [
        "change description (--description; pci-dss 6.5.1)",
        "security impact (--security-impact; pci-dss 6.5.1)",
        "test evidence (--test-evidence; pci-dss 6.5.1)",
        "back-out procedure (--backout-procedure; pci-dss 6.5.1)",
    ]
    full = manifest(
        change=bare.change.model_copy(
            update={
                "description": "d",
                "security_impact": "s",
                "test_evidence": "t",
                "backout_procedure": "b",
            }
        )
    )
    assert missing_for_environment(full, ["sox", "pci-dss"], False) == []
    assert missing_evidence(["sox", "pci-dss"], full, Evidence("CHG-1", "why")) == []
    assert missing_for_environment(bare, ["part11", "gdpr"], True) == [
        "validation document (--validation-doc ID; part11)"
    ]
    personal = manifest(change=bare.change.model_copy(update={"personal_data_change": True}))
    assert missing_for_environment(personal, ["gdpr"], False) == [
        "DPIA reference for a personal-data change (--dpia-ref; gdpr Art. 35)"
    ]
