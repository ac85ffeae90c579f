"""Release manifests: create them (with change metadata from git), store, sign and verify them.

A signed release is a DSSE envelope whose payload is an in-toto Statement v1: the subject is
the artifact (name and sha256), the predicate is the manifest. Verification trusts only a
key that actually verifies the signature, then checks the statement, the manifest on disk
and, for wheels, the file itself against what was signed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, ValidationError

from zdp.compliance.profiles import Evidence, missing_evidence
from zdp.errors import ReleaseError, ReleaseVerificationError
from zdp.fsutil import write_file_atomic
from zdp.models import (
    ApproverIdentity,
    Artifact,
    ChangeMetadata,
    DsseEnvelope,
    ReleaseManifest,
    SignedValidation,
    ValidationReference,
    VerifiedRelease,
)
from zdp.signing import fingerprint, load_trusted_keys, sign_dsse, verify_dsse

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://zero-downtime-pipeline.dev/release/v1"

_SHA256_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
_TICKET = re.compile(r"\b[A-Z][A-Z0-9]+-\d+\b")
# Keys that look like tickets but name standards, not work items ("UTF-8", "CVE-2024-1234").
_NOT_TICKETS = frozenset({"UTF", "ISO", "SHA", "RFC", "CVE", "PEP"})
_PIN_HINT = "pin the image by digest (name@sha256:<64 hex digits>)"
_DEPENDENCY_FILES = frozenset(
    {
        "pyproject.toml",
        "poetry.lock",
        "uv.lock",
        "package.json",
        "package-lock.json",
        "go.mod",
        "go.sum",
    }
)
_CONFIG_SUFFIXES = (".yaml", ".yml", ".toml", ".ini", ".env")
_TEST_DIRS = frozenset({"tests", "test"})


def summarize_validation_error(err: ValidationError) -> str:
    """The first pydantic error as one line: `field: message` (plus how many more)."""
    errors = err.errors()
    if not errors:
        return str(err).splitlines()[0]
    first = errors[0]
    field = ".".join(str(part) for part in first["loc"]) or "manifest"
    message = str(first["msg"]).removeprefix("Value error, ")
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{field}: {message}{more}"


def file_sha256(path: Path) -> str:
    """`sha256:` + hex SHA-256 of the file's bytes."""
    with path.open("rb") as handle:
        return "sha256:" + hashlib.file_digest(handle, "sha256").hexdigest()


# --------------------------------------------------------------------------- files


def _read_text(path: Path, what: str) -> str:
    """A text file's content; a missing or unreadable file is one ReleaseError line."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ReleaseError(f"{what} not found: {path}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ReleaseError(f"cannot read {what} {path}: {err}") from None


def _read_json(path: Path, what: str) -> Any:
    """A JSON file's data; a missing, unreadable or malformed file is one ReleaseError line."""
    text = _read_text(path, what)
    try:
        return json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except json.JSONDecodeError as err:
        raise ReleaseError(
            f"{path} is not valid JSON: {err.msg} at line {err.lineno} column {err.colno}"
        ) from None
    except _DuplicateKey as err:
        raise ReleaseError(
            f"{path} names {err.args[0]!r} twice: a reader could see either value"
        ) from None


class _DuplicateKey(ValueError):
    pass


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    for key in keys:
        if keys.count(key) > 1:
            raise _DuplicateKey(key)
    return dict(pairs)


def read_manifest(path: Path) -> ReleaseManifest:
    """Read and validate a release manifest; any problem is one ReleaseError line."""
    data = _read_json(path, "release manifest")
    try:
        return ReleaseManifest.model_validate(data)
    except ValidationError as err:
        raise ReleaseError(
            f"{path} is not a valid release manifest: {summarize_validation_error(err)}"
        ) from None


def write_manifest(manifest: ReleaseManifest, path: Path) -> None:
    """Write the manifest as indented JSON, atomically (temp file, fsync, rename)."""
    _write_json(path, manifest.model_dump_json(indent=2), "release manifest")


def read_envelope(path: Path) -> DsseEnvelope:
    """Read a DSSE envelope; a missing file means the release carries no signature."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ReleaseVerificationError(f"no signature: {path} not found") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ReleaseVerificationError(f"cannot read signature {path}: {err}") from None
    try:
        return DsseEnvelope.model_validate_json(text)
    except ValidationError as err:
        raise ReleaseVerificationError(
            f"malformed envelope {path}: {summarize_validation_error(err)}"
        ) from None


def write_envelope(envelope: DsseEnvelope, path: Path) -> None:
    """Write a DSSE envelope as indented JSON, atomically."""
    _write_json(path, envelope.model_dump_json(indent=2), "signature")


def _write_json(path: Path, text: str, what: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_file_atomic(path, (text + "\n").encode("utf-8"))
    except OSError as err:
        raise ReleaseError(f"cannot write {what} {path}: {err.strerror or err}") from None


def read_release_input(path: Path, envelope_path: Path | None = None) -> DsseEnvelope:
    """The release to deploy. The signed envelope is the release: `path` may be the envelope,
    or a manifest that says exactly what the statement signed in its envelope (beside it, or
    `envelope_path`) says, field by field (a key named twice is refused). Anything else is one
    ReleaseError line, and nothing is deployed: an edited manifest beside an old envelope would
    otherwise deploy what it does not say."""
    data = _read_json(path, "release")
    if isinstance(data, dict) and "payloadType" in data:
        if envelope_path is not None:
            raise ReleaseError(
                f"{path} is a signed envelope already: --envelope goes with a manifest only"
            )
        try:
            return DsseEnvelope.model_validate(data)
        except ValidationError as err:
            raise ReleaseError(
                f"malformed envelope {path}: {summarize_validation_error(err)}"
            ) from None
    if not isinstance(data, dict):
        raise ReleaseError(f"{path} is neither a release manifest nor a signed envelope")
    signed_path = envelope_path or envelope_path_for(path)
    if not signed_path.exists():
        raise ReleaseError(
            f"no signature: {signed_path} not found (sign it with `zdp release sign {path}`)"
        )
    envelope = read_envelope(signed_path)
    try:
        signed = claimed_predicate(envelope)
    except ReleaseError as err:
        raise ReleaseError(f"malformed envelope {signed_path}: {err}") from None
    try:
        # Compared as the release model reads them: a manifest written by hand or by CI that
        # leaves out defaults, or spells a time another way, is the same release.
        on_disk = ReleaseManifest.model_validate_json(json.dumps(data), strict=True)
        in_envelope = ReleaseManifest.model_validate(signed)
    except ValidationError as err:
        raise ReleaseError(
            f"{path} is not a valid release manifest: {summarize_validation_error(err)}"
        ) from None
    if on_disk.model_dump(mode="json") != in_envelope.model_dump(mode="json"):
        changed = _differing_fields(
            in_envelope.model_dump(mode="json"), on_disk.model_dump(mode="json")
        )
        raise ReleaseError(
            f"{path} differs from the release signed in {signed_path} "
            f"({', '.join(changed[:5])}{', …' if len(changed) > 5 else ''}): deploy the "
            "envelope, or sign this manifest again"
        )
    return envelope


def envelope_path_for(manifest_path: Path) -> Path:
    """Where a manifest's signature lives by default: `release.json` -> `release.dsse.json`."""
    return manifest_path.with_name(manifest_path.stem + ".dsse.json")


# --------------------------------------------------------------------------- creating


def wheel_artifact(path: Path) -> Artifact:
    """A wheel artifact named by its file name and pinned by the file's sha256."""
    if not path.is_file():
        raise ReleaseError(f"artifact not found: {path}")
    try:
        digest = file_sha256(path)
    except OSError as err:
        raise ReleaseError(f"cannot read artifact {path}: {err.strerror}") from None
    return Artifact(kind="wheel", reference=path.name, digest=digest)


def image_artifact(image: str) -> Artifact:
    """An OCI image artifact from `name@sha256:<hex>`; a tag alone is refused."""
    reference = image.strip()
    name, at, digest = reference.rpartition("@")
    if not at:
        raise ReleaseError(f"image {reference!r} is given by tag only: {_PIN_HINT}")
    if not name or not _SHA256_DIGEST.match(digest):
        raise ReleaseError(f"image {reference!r} has no valid sha256 digest: {_PIN_HINT}")
    return Artifact(kind="oci-image", reference=reference, digest=digest)


def create_manifest(
    app: str,
    version: str,
    artifact_path: Path | None,
    image: str | None,
    git_range: str | None,
    repo: Path = Path("."),
    ticket: str | None = None,
    author: str | None = None,
    config_overrides: Mapping[str, str] | None = None,
    validation_doc: str | None = None,
    environments: Sequence[str] = (),
    record: ChangeRecord | None = None,
) -> ReleaseManifest:
    """A new manifest for one artifact (a wheel file or a pinned image), dated now (UTC).

    With `git_range` the change metadata comes from git; the change `record` (a file's and the
    command line's, see `ChangeRecord`) overrides it, and `ticket`, `author` and
    `validation_doc` override both. `validation_doc` names the approved IQ/OQ/PQ record a GxP
    environment requires.
    """
    if (artifact_path is None) == (image is None):
        raise ReleaseError("give exactly one artifact: a wheel file or an image pinned by digest")
    artifact = wheel_artifact(artifact_path) if artifact_path else image_artifact(image or "")
    change = git_change_metadata(git_range, repo) if git_range else ChangeMetadata()
    record = (record or ChangeRecord()).merged(
        ChangeRecord(ticket=ticket, author=author, validation_doc=validation_doc)
    )
    for field, value in record.change_fields().items():
        setattr(change, field, value)
    try:
        return ReleaseManifest(
            app=app,
            version=version,
            artifact=artifact,
            config_overrides=dict(config_overrides or {}),
            change=change,
            created_at=datetime.now(UTC),
            validation=_validation_reference(record.validation_doc),
            environments=list(environments),
        )
    except ValidationError as err:
        raise ReleaseError(f"invalid release: {summarize_validation_error(err)}") from None


def _validation_reference(document_id: str | None) -> ValidationReference | None:
    if document_id is None:
        return None
    try:
        # Pending until a validation approver signs it (`zdp release approve-validation`).
        return ValidationReference(document_id=document_id, status="pending")
    except ValidationError:
        raise ReleaseError(
            f"validation document id {document_id!r} is not valid: use 3 to 64 letters, digits, "
            "'.', '_', '/' or '-', starting with a letter or digit"
        ) from None


# --------------------------------------------------------------------------- change records


class ChangeRecord(BaseModel):
    """The change record a release carries (what the compliance profiles ask for), as given
    in a file (`zdp release create --change-record FILE`, YAML or JSON) and on the command
    line; the command line wins, field by field. `reason` is not part of the release: it is
    the deployment request's (`zdp deploy --reason`), kept here so one file holds the whole
    record (the seed scripts pass it on)."""

    model_config = ConfigDict(extra="forbid")

    ticket: str | None = None
    author: str | None = None
    description: str | None = None
    security_impact: str | None = None
    test_evidence: str | None = None
    backout_procedure: str | None = None
    personal_data_change: bool | None = None
    dpia_ref: str | None = None
    validation_doc: str | None = None
    reason: str | None = None

    def merged(self, winner: ChangeRecord) -> ChangeRecord:
        """This record with every field `winner` sets replaced by the winner's."""
        given = {k: v for k, v in winner.model_dump().items() if v is not None}
        return self.model_copy(update=given)

    def change_fields(self) -> dict[str, Any]:
        """The fields set here that go into the release's change metadata."""
        return {
            key: value
            for key, value in self.model_dump(exclude={"validation_doc", "reason"}).items()
            if value is not None
        }


# How each field of a change record is given on the command line (and in a file: the same
# name without the dashes, `_` or `-` between words).
CHANGE_RECORD_FLAGS = {
    "ticket": "--ticket",
    "author": "--author",
    "description": "--description",
    "security_impact": "--security-impact",
    "test_evidence": "--test-evidence",
    "backout_procedure": "--backout-procedure",
    "personal_data_change": "--personal-data-change",
    "dpia_ref": "--dpia-ref",
    "validation_doc": "--validation-doc",
    "reason": "--reason",
}


class _RecordLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key named twice (YAML would keep the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_change_record(path: Path) -> ChangeRecord:
    """A change record file (YAML or JSON: a mapping of the `ChangeRecord` fields); a missing,
    malformed or unknown field is one ReleaseError line naming it. Empty values count as not
    given."""
    text = _read_text(path, "change record")
    try:
        data = yaml.load(text, Loader=_RecordLoader)  # a SafeLoader
    except _DuplicateKey as err:
        raise ReleaseError(f"change record {path} names {err.args[0]!r} twice") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        raise ReleaseError(
            f"change record {path} is not valid YAML or JSON{where} (quote a value that holds "
            "': ' or starts with a quote, '[', '{', '&', '*' or '!', or write it as a block: |)"
        ) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ReleaseError(f"change record {path} must be a mapping of field: value")
    fields: dict[str, Any] = {}
    for raw, value in data.items():
        key = str(raw).strip().replace("-", "_")
        if key not in ChangeRecord.model_fields:
            known = ", ".join(ChangeRecord.model_fields)
            raise ReleaseError(f"change record {path}: unknown field {raw!r} (known: {known})")
        if key in fields:
            raise ReleaseError(f"change record {path} names {key!r} twice")
        if isinstance(value, str):
            value = value.strip() or None
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)  # a ticket number written bare
        fields[key] = value
    try:
        return ChangeRecord.model_validate(fields)
    except ValidationError as err:
        raise ReleaseError(f"change record {path}: {summarize_validation_error(err)}") from None


def missing_for_environment(
    manifest: ReleaseManifest, profiles: Sequence[str], requires_validation: bool
) -> list[str]:
    """What the release itself lacks for an environment with these compliance profiles, each
    as "<what> (<flag>; <clause>)". The deployment request's own evidence (the reason, a
    change ref for a release without a ticket) is given at deploy and not counted here; a
    validation document still pending is not missing (it is approved before signing)."""
    flags = {
        "change description": "--description",
        "security impact": "--security-impact",
        "test evidence": "--test-evidence",
        "back-out procedure": "--backout-procedure",
        "DPIA reference for a personal-data change": "--dpia-ref",
    }
    at_deploy = Evidence(change_ref="given at deploy", reason="given at deploy")
    missing: list[str] = []
    for item in missing_evidence(list(profiles), manifest, at_deploy):
        what, _, clause = item.rpartition(" (")
        flag = flags.get(what)
        missing.append(f"{what} ({flag}; {clause}" if flag else item)
    if (requires_validation or "part11" in profiles) and manifest.validation is None:
        missing.append("validation document (--validation-doc ID; part11)")
    return missing


# --------------------------------------------------------------------------- git


def _git(repo: Path, *args: str) -> str:
    try:
        done = subprocess.run(
            ["git", "-C", str(repo), *args],
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            check=False,
            timeout=60,
        )
    except FileNotFoundError:
        raise ReleaseError("git is not installed: install it or leave out the git range") from None
    except subprocess.TimeoutExpired:
        raise ReleaseError(f"git {args[0]} timed out in {repo}") from None
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        detail = lines[0] if lines else f"exit status {done.returncode}"
        raise ReleaseError(f"git {args[0]} failed in {repo}: {detail}")
    return done.stdout


def range_end(git_range: str) -> str:
    """The revision a range ends at: `v1.2.0..HEAD` -> `HEAD`; an empty end means HEAD."""
    if git_range.startswith("-") or ".." not in git_range:
        raise ReleaseError(f"git range {git_range!r} must look like FROM..TO (e.g. v1.2.0..HEAD)")
    return git_range.split("...", 1)[1] if "..." in git_range else git_range.split("..", 1)[1]


def count_changed_lines(numstat_z: str) -> int:
    """Lines added plus deleted, from `git diff --numstat -z` (binary files count 0)."""
    total = 0
    for record in numstat_z.split("\0"):
        added, _, rest = record.partition("\t")
        deleted, _, _path = rest.partition("\t")
        total += sum(int(n) for n in (added, deleted) if n.isdigit())
    return total


def classify_changed_paths(paths: Iterable[str]) -> dict[str, bool]:
    """Which kinds of change the paths hold: migrations, config, dependencies."""
    migrations = config = dependencies = False
    for path in paths:
        pure = PurePosixPath(path)
        if "migrations/" in path or "alembic/versions/" in path or path.endswith(".sql"):
            migrations = True
        in_tests = any(part in _TEST_DIRS for part in pure.parts[:-1])
        if not in_tests and (
            "config" in pure.parts[:-1]
            or pure.name.endswith(_CONFIG_SUFFIXES)
            or pure.name == ".env"
        ):
            config = True
        if pure.name in _DEPENDENCY_FILES or (
            pure.name.startswith("requirements") and pure.name.endswith(".txt")
        ):
            dependencies = True
    return {
        "migrations": migrations,
        "config_changed": config,
        "dependencies_changed": dependencies,
    }


def find_ticket(text: str) -> str | None:
    """The first JIRA-style ticket key (e.g. PAY-123) in `text`, if any."""
    for match in _TICKET.finditer(text):
        if match.group(0).split("-", 1)[0] not in _NOT_TICKETS:
            return match.group(0)
    return None


def git_change_metadata(git_range: str, repo: Path = Path(".")) -> ChangeMetadata:
    """What changed in `git_range` (e.g. `v1.2.0..HEAD`) of the repository at `repo`."""
    end = range_end(git_range) or "HEAD"
    numstat = _git(repo, "diff", "--no-renames", "--numstat", "-z", git_range, "--")
    names = _git(repo, "diff", "--no-renames", "--name-only", "-z", git_range, "--")
    commit = _git(repo, "rev-parse", "--verify", "--quiet", f"{end}^{{commit}}").strip()
    author = _git(repo, "log", "-1", "--format=%ae", commit, "--").strip()
    messages = _git(repo, "log", "--format=%B", git_range, "--")
    paths = [name for name in names.split("\0") if name]
    return ChangeMetadata(
        commit=commit,
        lines_changed=count_changed_lines(numstat),
        files_changed=len(paths),
        ticket=find_ticket(messages),
        author=author or None,
        **classify_changed_paths(paths),
    )


# --------------------------------------------------------------------------- signing


def release_statement(manifest: ReleaseManifest) -> dict[str, Any]:
    """The in-toto Statement v1 that a release signature covers."""
    return {
        "_type": STATEMENT_TYPE,
        "subject": [
            {
                "name": manifest.artifact.reference,
                "digest": {"sha256": manifest.artifact.digest.removeprefix("sha256:")},
            }
        ],
        "predicateType": PREDICATE_TYPE,
        "predicate": manifest.model_dump(mode="json"),
    }


def statement_payload(manifest: ReleaseManifest) -> bytes:
    """The statement as canonical JSON bytes (sorted keys, no spaces)."""
    text = json.dumps(release_statement(manifest), sort_keys=True, separators=(",", ":"))
    return text.encode("utf-8")


def sign_manifest(manifest: ReleaseManifest, private_key: Ed25519PrivateKey) -> DsseEnvelope:
    """A DSSE envelope over the manifest's in-toto statement, signed with `private_key`."""
    return sign_dsse(PAYLOAD_TYPE, statement_payload(manifest), private_key)


# --------------------------------------------------------------------------- verifying


def claimed_predicate(envelope: DsseEnvelope) -> Any:
    """The predicate (the manifest's data) the envelope's statement claims, its signature
    unchecked: for comparing and pre-checking only, never for trusting. ReleaseError if the
    payload is not a release statement."""
    try:
        payload = base64.b64decode(envelope.payload, validate=True)
    except (binascii.Error, ValueError):
        raise ReleaseVerificationError("the payload is not base64") from None
    return _statement_from(payload).get("predicate")


def _statement_from(payload: bytes) -> dict[str, Any]:
    not_statement = "payload is not an in-toto Statement v1"
    try:
        statement = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ReleaseVerificationError(f"{not_statement}: not JSON") from None
    if not isinstance(statement, dict) or statement.get("_type") != STATEMENT_TYPE:
        raise ReleaseVerificationError(f"{not_statement}: _type is not {STATEMENT_TYPE}")
    subject = statement.get("subject")
    if (
        not isinstance(subject, list)
        or len(subject) != 1
        or not isinstance(subject[0], dict)
        or not isinstance(subject[0].get("name"), str)
        or not isinstance(subject[0].get("digest"), dict)
        or not _SHA256_HEX.match(str(subject[0]["digest"].get("sha256", "")))
    ):
        raise ReleaseVerificationError(
            f"{not_statement}: expected one subject with a name and a sha256 digest"
        )
    if statement.get("predicateType") != PREDICATE_TYPE:
        raise ReleaseVerificationError(
            f"wrong predicateType: expected {PREDICATE_TYPE}, got {statement.get('predicateType')}"
        )
    return statement


def verify_envelope(
    envelope: DsseEnvelope, trusted: Mapping[str, Ed25519PublicKey]
) -> VerifiedRelease:
    """The signed release, if a trusted key signed it and its statement is consistent."""
    payload, signer = verify_dsse(envelope, trusted, PAYLOAD_TYPE)
    statement = _statement_from(payload)
    try:
        manifest = ReleaseManifest.model_validate(statement.get("predicate"))
    except ValidationError as err:
        raise ReleaseVerificationError(
            f"predicate is not a valid release manifest: {summarize_validation_error(err)}"
        ) from None
    subject_digest = "sha256:" + statement["subject"][0]["digest"]["sha256"]
    if subject_digest != manifest.artifact.digest:
        raise ReleaseVerificationError(
            f"subject digest {subject_digest} differs from the manifest's artifact digest "
            f"{manifest.artifact.digest}"
        )
    return VerifiedRelease(
        manifest=manifest,
        signer_fingerprint=signer,
        statement_digest="sha256:" + hashlib.sha256(payload).hexdigest(),
    )


def _differing_fields(signed: Any, on_disk: Any, prefix: str = "") -> list[str]:
    if isinstance(signed, dict) and isinstance(on_disk, dict):
        fields: list[str] = []
        for key in sorted(set(signed) | set(on_disk)):
            fields += _differing_fields(signed.get(key), on_disk.get(key), f"{prefix}{key}.")
        return fields
    return [] if signed == on_disk else [prefix.rstrip(".") or "manifest"]


def verify_release_files(
    manifest_path: Path,
    trusted_keys_dir: Path,
    envelope_path: Path | None = None,
    artifact_path: Path | None = None,
) -> VerifiedRelease:
    """Verify a manifest file against its signature, and a wheel file against the signed digest."""
    if not manifest_path.is_file():
        raise ReleaseError(f"release manifest not found: {manifest_path}")
    trusted = load_trusted_keys(trusted_keys_dir)
    envelope = read_envelope(envelope_path or envelope_path_for(manifest_path))
    verified = verify_envelope(envelope, trusted)
    try:
        on_disk = read_manifest(manifest_path)
    except ReleaseError as err:
        raise ReleaseVerificationError(f"manifest differs from the signed release: {err}") from None
    changed = _differing_fields(
        verified.manifest.model_dump(mode="json"), on_disk.model_dump(mode="json")
    )
    if changed:
        raise ReleaseVerificationError(
            f"manifest differs from the signed release: {', '.join(changed)}"
        )
    _check_artifact_file(verified.manifest.artifact, manifest_path, artifact_path)
    return verified


def _check_artifact_file(signed: Artifact, manifest_path: Path, artifact_path: Path | None) -> None:
    """A wheel's file (given, or found next to the manifest) must hash to the signed digest."""
    if signed.kind != "wheel":
        if artifact_path is not None:
            raise ReleaseError(
                f"the release's artifact is an OCI image, not a file: {signed.reference}"
            )
        return
    candidate = artifact_path or manifest_path.parent / PurePosixPath(signed.reference).name
    if not candidate.is_file():
        if artifact_path is not None:
            raise ReleaseVerificationError(f"artifact not found: {artifact_path}")
        return
    try:
        actual = file_sha256(candidate)
    except OSError as err:
        raise ReleaseVerificationError(
            f"cannot read artifact {candidate}: {err.strerror}"
        ) from None
    if actual != signed.digest:
        raise ReleaseVerificationError(
            f"artifact digest mismatch: signed {signed.digest}, file has {actual}"
        )


def approve_validation(
    manifest: ReleaseManifest,
    signer: str,
    meaning: str,
    key: Ed25519PrivateKey,
    registry: Mapping[str, ApproverIdentity],
) -> ReleaseManifest:
    """The manifest with its validation document approved: a Part 11 e-signature of `signer`
    (registered, with this key, and not the release's author) over the document, the app and
    the artifact digest. The release is signed after this, so the approval is in what the
    release signature covers."""
    from zdp.compliance.esign import authorship_refusal, sign_approval

    ref = manifest.validation
    if ref is None:
        raise ReleaseError(
            f"{manifest.app} {manifest.version} names no validation document: create the "
            "release with --validation-doc ID"
        )
    identity = registry.get(signer)
    if identity is None:
        raise ReleaseError(f"{signer} has no registered signing key (zdp keys register-approver)")
    if fingerprint(key.public_key()) != identity.fingerprint:
        raise ReleaseError(f"this key is not the one registered to {signer}")
    author_refusal = authorship_refusal(manifest.change.author, signer)
    if author_refusal is not None:
        raise ReleaseError(author_refusal)
    try:
        payload = SignedValidation(
            document_id=ref.document_id,
            app=manifest.app,
            release_digest=manifest.artifact.digest,
            qualifications=list(ref.qualifications),
            meaning=meaning,
            signer=signer,
            printed_name=identity.printed_name,
            signed_at=datetime.now(UTC),
        )
    except ValidationError as err:
        raise ReleaseError(f"invalid approval: {summarize_validation_error(err)}") from None
    approved = ref.model_copy(
        update={"status": "approved", "signature": sign_approval(key, payload)}
    )
    return manifest.model_copy(update={"validation": approved})
