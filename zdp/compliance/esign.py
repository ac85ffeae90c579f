"""21 CFR Part 11 electronic signatures on approvals.

An approver registers an Ed25519 public key under their user id with their printed name
(`zdp keys register-approver`). The private key stays with the approver, encrypted under their
passphrase: the key file and the passphrase are the two distinct identification components of
§11.200(a)(1). To approve, `zdp approve ID --as USER --key FILE --meaning "..."` signs a payload
that binds the deployment (workflow id and run id), the release digest, the decision, the
meaning, the signer's printed name and the time (§11.50 manifestation, §11.70 linking): the
signature cannot be moved to another deployment, release or approver.

`verify_approval` is pure (no clock, no I/O), so the workflow's update validator can run it: the
registered identities travel into the workflow with the risk report and stay in its history.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ValidationError

from zdp.errors import ZdpError
from zdp.models import (
    ApprovalSignature,
    ApproverIdentity,
    ReleaseManifest,
    SignatureManifestation,
    SignedApproval,
    SignedValidation,
)
from zdp.signing import fingerprint

PAYLOAD_TYPE = "zdp-approval/v1"
# A signature older than this, or dated this far in the future, is refused: a signature is
# made for the decision at hand, not kept and sent later.
MAX_SIGNATURE_AGE = timedelta(minutes=15)
MAX_CLOCK_SKEW = timedelta(minutes=2)
_USER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")


def _import_invalid_signature_now() -> None:
    """cryptography's Rust code imports `InvalidSignature` the first time it raises it. Inside
    the workflow sandbox that import fails and aborts the process (pyo3 panics), so a failed
    verification is provoked once here, when this module is imported outside the sandbox; the
    imported type is then cached for the life of the process."""
    try:
        Ed25519PrivateKey.generate().public_key().verify(bytes(64), b"")
    except InvalidSignature:
        pass


_import_invalid_signature_now()


def canonical(payload: BaseModel) -> bytes:
    data = payload.model_dump(mode="json")
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sign_approval(private_key: Ed25519PrivateKey, payload: BaseModel) -> ApprovalSignature:
    body = canonical(payload)
    return ApprovalSignature(
        payload=base64.b64encode(body).decode(),
        sig=base64.b64encode(private_key.sign(body)).decode(),
        key_fingerprint=fingerprint(private_key.public_key()),
    )


@dataclass(frozen=True)
class Binding:
    """The record a signature must be bound to: what the payload has to say, field by field.
    The meaning, printed name and time come from the payload (checked against the registry
    and the clock)."""

    deployment_id: str
    run_id: str
    release_digest: str
    decision: str
    signer: str


def verify_approval(
    signature: ApprovalSignature | None,
    identity: ApproverIdentity | None,
    expected: Binding,
    now: datetime,
    used: set[str],
) -> tuple[SignatureManifestation | None, str | None]:
    """(the manifestation, None) when the signature is valid for exactly `expected`;
    (None, why) when it is missing, malformed, foreign, moved from another record, stale or
    reused."""
    who = expected.signer
    if identity is None:
        return None, f"{who} has no registered signing key: register one first (part11)"
    if signature is None:
        return None, (
            f"this environment requires a Part 11 electronic signature: approve with "
            f"--key (the registered key of {who}) and --meaning"
        )
    if signature.sig in used:
        return None, "this signature was already used: sign each decision anew"
    body, problem = verified_body(signature, identity, who)
    if body is None:
        return None, problem
    try:
        payload = SignedApproval.model_validate_json(body)
    except ValidationError:
        return None, "the signature or its payload is malformed"
    for field, label in (
        ("deployment_id", "another deployment"),
        ("run_id", "another run of this deployment"),
        ("release_digest", "another release"),
        ("decision", "another decision"),
        ("signer", "another approver"),
    ):
        if getattr(payload, field) != getattr(expected, field):
            return None, f"the signature was made for {label} ({field} differs)"
    if payload.printed_name != identity.printed_name:
        return None, "the signed printed name is not the registered one"
    if payload.signed_at > now + MAX_CLOCK_SKEW or payload.signed_at < now - MAX_SIGNATURE_AGE:
        return None, (
            f"the signature is dated {payload.signed_at.isoformat()}: sign within "
            f"{int(MAX_SIGNATURE_AGE.total_seconds() // 60)} minutes of sending"
        )
    return _manifestation(payload, signature), None


def verified_body(
    signature: ApprovalSignature, identity: ApproverIdentity, who: str
) -> tuple[bytes | None, str | None]:
    """The signed payload's bytes when `signature` verifies with the key registered to `who`;
    (None, why) otherwise."""
    if signature.key_fingerprint != identity.fingerprint:
        return None, f"signed with key {signature.key_fingerprint}, not the key registered to {who}"
    try:
        body = base64.b64decode(signature.payload, validate=True)
        raw_sig = base64.b64decode(signature.sig, validate=True)
        # One spelling per signature: base64 ignores a last character's unused bits, and a
        # second spelling of a used signature must not pass as a new one.
        if base64.b64encode(raw_sig).decode() != signature.sig or (
            base64.b64encode(body).decode() != signature.payload
        ):
            return None, "the signature is not in canonical base64"
        public = serialization.load_pem_public_key(identity.public_key_pem.encode())
        if not isinstance(public, Ed25519PublicKey):
            return None, f"the key registered to {who} is not Ed25519"
        if fingerprint(public) != identity.fingerprint:  # the file's key was swapped
            return None, f"the key on file for {who} is not the one registered (fingerprint)"
        public.verify(raw_sig, body)
    except (binascii.Error, ValueError):
        return None, "the signature or its payload is malformed"
    except InvalidSignature:
        return None, f"the signature does not verify with the key registered to {who}"
    return body, None


def _manifestation(
    payload: SignedApproval | SignedValidation, signature: ApprovalSignature
) -> SignatureManifestation:
    """§11.50: what is shown wherever the signed record is shown."""
    return SignatureManifestation(
        printed_name=payload.printed_name,
        meaning=payload.meaning,
        signed_at=payload.signed_at,
        key_fingerprint=signature.key_fingerprint,
        signature=signature.sig,
    )


# --------------------------------------------------------------------------- validation

UNSIGNED_VALIDATION = (
    "it is not signed: a validation approver signs it with `zdp release approve-validation` "
    "before the release is signed"
)


def verify_validation(
    manifest: ReleaseManifest,
    registry: dict[str, ApproverIdentity],
    allowed: list[str],
) -> tuple[SignatureManifestation | None, str | None]:
    """(the manifestation, None) when the release's validation document carries a valid
    Part 11 signature of a registered validation approver in `allowed` who did not author the
    release, bound to this document, app and artifact digest; (None, why) otherwise."""
    ref = manifest.validation
    if ref is None:
        return None, "the release names no validation document"
    if ref.signature is None:
        return None, UNSIGNED_VALIDATION
    signature = ref.signature
    try:
        body = base64.b64decode(signature.payload, validate=True)
        payload = SignedValidation.model_validate_json(body)
    except (binascii.Error, ValueError, ValidationError):
        return None, "its signature is malformed"
    who = payload.signer
    if who not in allowed:
        return None, (
            f"{who} may not approve validation documents here; validation approvers: "
            f"{', '.join(allowed) or 'nobody'}"
        )
    author_refusal = authorship_refusal(manifest.change.author, who)
    if author_refusal is not None:
        return None, author_refusal
    identity = registry.get(who)
    if identity is None:
        return None, f"{who} has no registered signing key (zdp keys register-approver)"
    if identity.kind != "person" or not identity.encrypted_key:
        return None, (
            f"{who} is not registered for Part 11 signatures (a person's passphrase-encrypted "
            "key: zdp keys register-approver)"
        )
    verified, problem = verified_body(signature, identity, who)
    if verified is None:
        return None, problem
    for field, expected, label in (
        ("document_id", ref.document_id, "another validation document"),
        ("app", manifest.app, "another app"),
        ("release_digest", manifest.artifact.digest, "another release"),
        ("qualifications", ref.qualifications, "other qualifications"),
    ):
        if getattr(payload, field) != expected:
            return None, f"the validation signature was made for {label} ({field} differs)"
    if payload.printed_name != identity.printed_name:
        return None, "the signed printed name is not the registered one"
    return _manifestation(payload, signature), None


def authorship_refusal(author: str | None, signer: str) -> str | None:
    """Why `signer` may not approve the validation of a release by `author`: the author is
    unknown (the release must name who wrote it), or is the signer, by user id or by the
    local part of an e-mail address git recorded, ignoring case."""
    if not author or not author.strip():
        return (
            "the release names no author, so nobody can show the approver is someone else: "
            "create it with --author or --from-git"
        )
    names = {author.strip().lower(), author.strip().lower().split("@", 1)[0]}
    if signer.lower() in names:
        return f"{signer} authored this release, so someone else must approve its validation"
    return None


def require_encrypted_key(path: Path) -> None:
    """Part 11 §11.200(a)(1): two distinct identification components, here the key file and
    its passphrase. A signing key stored without a passphrase is refused for registration."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ZdpError(f"cannot read {path}: {err.strerror}") from None
    if b"-----BEGIN ENCRYPTED PRIVATE KEY-----" not in data:
        raise ZdpError(
            f"{path} is not passphrase-encrypted: Part 11 needs two identification components "
            "(the key file and its passphrase); make one with `zdp keys generate NAME --prompt`"
        )
