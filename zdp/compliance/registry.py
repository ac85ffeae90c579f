"""The identity registry: every person and bot that acts, with the key that speaks for them.

One JSON file per identity in `$ZDP_APPROVER_REGISTRY`, else `$ZDP_HOME/approvers` (the folder
Part 11 approvers have always used). Each file carries an administrator's signature over a
`SignedRegistration` of exactly its fields, so a key cannot be added by writing a file:

- the first administrator registers themselves (a self-signed root), once: while the registry
  holds no administrator. A second self-signed entry is refused.
- every later identity, administrators included, is signed by a registered administrator.
- removing an identity is also an administrator's signed decision; an administrator who
  registered others cannot be removed before those are removed (and, if they stay, registered
  again by another administrator): their registrations would no longer verify.

`load_registry` verifies every file and refuses the whole registry, naming the file, if one
does not verify: a registry that cannot be trusted stops the action, it never checks less.
Registrations and removals are recorded in the audit log (workflow id `identity-registry`)
before the registry changes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import ValidationError

from zdp.compliance.esign import sign_approval, verified_body
from zdp.errors import ConfigError, ZdpError
from zdp.fsutil import write_file_atomic
from zdp.models import (
    ApprovalSignature,
    ApproverIdentity,
    IdentityKind,
    SignedRegistration,
)
from zdp.settings import settings
from zdp.signing import fingerprint

REGISTRY_ENV = "ZDP_APPROVER_REGISTRY"
# Optional: the fingerprint of the registry's first administrator. Set, a registry rebuilt
# around another root (by someone who can write the folder) is refused.
ROOT_ENV = "ZDP_REGISTRY_ROOT"
AUDIT_WORKFLOW_ID = "identity-registry"
_USER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$")


@dataclass(frozen=True)
class Admin:
    """An administrator acting: their user id and their private key (which must be the key
    registered to them, or, for the first administrator, the key being registered)."""

    user: str
    key: Ed25519PrivateKey


@dataclass(frozen=True)
class RegistryChange:
    """What is written to the audit log for a registration or a removal."""

    kind: str  # identity_registered | identity_removed
    event_id: str
    at: datetime
    actor: str
    message: str
    data: dict[str, object]


Recorder = Callable[[RegistryChange], None]


def registry_dir(home: Path | None = None) -> Path:
    """ZDP_APPROVER_REGISTRY, else $ZDP_HOME/approvers."""
    found = settings()
    if found.APPROVER_REGISTRY is not None:
        return found.APPROVER_REGISTRY
    return (home or found.home) / "approvers"


def _pem(public_key: Ed25519PublicKey) -> str:
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def _statement(
    identity: ApproverIdentity, action: str, admin: str, at: datetime
) -> SignedRegistration:
    return SignedRegistration(
        action=action,
        user=identity.user,
        kind=identity.kind,
        administrator=identity.administrator,
        printed_name=identity.printed_name,
        fingerprint=identity.fingerprint,
        admin=admin,
        signed_at=at,
        encrypted_key=identity.encrypted_key,
    )


def _signed_statement(signature: ApprovalSignature) -> SignedRegistration | None:
    try:
        return SignedRegistration.model_validate_json(
            base64.b64decode(signature.payload, validate=True)
        )
    except (binascii.Error, ValueError, ValidationError):
        return None


def _event_id(signature: ApprovalSignature) -> str:
    return hashlib.sha256(signature.sig.encode()).hexdigest()[:32]


# --------------------------------------------------------------------------- reading


def load_registry(directory: Path) -> dict[str, ApproverIdentity]:
    """Every registered identity, each verified back to the registry's root administrator.
    A file that is malformed, names another user, or whose registration does not verify is a
    ConfigError naming it."""
    identities: dict[str, ApproverIdentity] = {}
    paths: dict[str, Path] = {}
    if not directory.is_dir():
        return identities
    for path in sorted(directory.glob("*.json")):
        try:
            identity = ApproverIdentity.model_validate_json(path.read_text(encoding="utf-8"))
        except (OSError, ValidationError) as err:
            raise ConfigError(f"{path}: not a valid identity ({type(err).__name__})") from None
        if identity.user != path.stem:
            raise ConfigError(f"{path}: names user {identity.user!r}, not {path.stem!r}")
        identities[identity.user] = identity
        paths[identity.user] = path
    roots = [u for u, i in identities.items() if _registrar(i) == u]
    pinned = settings().REGISTRY_ROOT or ""
    if pinned and any(identities[u].fingerprint != pinned for u in roots):
        raise ConfigError(
            f"{directory}: the registry's first administrator is not the one pinned in "
            f"{ROOT_ENV} ({pinned})"
        )
    if len(roots) > 1:
        raise ConfigError(
            f"{directory}: {len(roots)} self-registered administrators ({', '.join(roots)}); "
            "only the first administrator registers themselves, every other identity is "
            "registered by an administrator"
        )
    for user, identity in identities.items():
        problem = _registration_problem(identity, identities, set())
        if problem:
            raise ConfigError(f"{paths[user]}: {problem}")
    return identities


def _registrar(identity: ApproverIdentity) -> str | None:
    if identity.registration is None:
        return None
    statement = _signed_statement(identity.registration)
    return statement.admin if statement else None


def _registration_problem(
    identity: ApproverIdentity, registry: dict[str, ApproverIdentity], seen: set[str]
) -> str | None:
    """Why `identity` is not validly registered; None when its chain of administrators'
    signatures reaches the self-registered root."""
    who = identity.user
    if identity.registration is None:
        return (
            f"{who} was not registered by an administrator (no registration signature): "
            "register it with `zdp keys register`"
        )
    statement = _signed_statement(identity.registration)
    if statement is None or statement.action != "register":
        return f"{who}'s registration is malformed"
    expected = _statement(identity, "register", statement.admin, statement.signed_at)
    if statement != expected:
        return f"{who}'s file differs from what the administrator signed"
    try:
        on_file = serialization.load_pem_public_key(identity.public_key_pem.encode())
    except ValueError:
        return f"{who}'s public key is not a PEM key"
    if not isinstance(on_file, Ed25519PublicKey) or fingerprint(on_file) != identity.fingerprint:
        return f"{who}'s public key is not the one the administrator registered (fingerprint)"
    admin = identity if statement.admin == who else registry.get(statement.admin)
    if admin is None:
        return f"{who} was registered by {statement.admin}, who is not a registered identity"
    if not admin.administrator:
        return f"{who} was registered by {statement.admin}, who is not an administrator"
    body, problem = verified_body(identity.registration, admin, statement.admin)
    if body is None:
        return f"{who}'s registration: {problem}"
    if admin is identity:
        return None  # the root: checked to be the only self-registered identity
    if statement.admin in seen:
        return f"{who}'s registration goes round in a circle ({statement.admin} again)"
    upstream = _registration_problem(admin, registry, {*seen, who})
    return f"{who} was registered by {statement.admin}: {upstream}" if upstream else None


# --------------------------------------------------------------------------- changing


def _check_admin(admin: Admin, registry: dict[str, ApproverIdentity], user: str) -> None:
    current = registry.get(admin.user)
    if current is None:
        if admin.user == user and not any(i.administrator for i in registry.values()):
            return  # the first administrator, registering themselves
        raise ZdpError(
            f"{admin.user} is not a registered administrator: an administrator must sign "
            "every registration and removal"
        )
    if not current.administrator:
        raise ZdpError(
            f"{admin.user} is not an administrator: an administrator must sign every "
            "registration and removal"
        )
    if current.fingerprint != fingerprint(admin.key.public_key()):
        raise ZdpError(f"the key given for {admin.user} is not the key registered to them")


def register(
    directory: Path,
    user: str,
    printed_name: str,
    public_key: Ed25519PublicKey,
    admin: Admin,
    record: Recorder | None,
    *,
    kind: IdentityKind = "person",
    administrator: bool = False,
    encrypted_key: bool = False,
    now: datetime | None = None,
) -> ApproverIdentity:
    """Register `user` under `admin`'s signature: recorded (`record`), then written. The same
    key registered again is a no-op; another key for a registered user is refused (remove the
    old one first, so that the change is deliberate and on the record)."""
    if not _USER.match(user):
        raise ZdpError(f"user id {user!r} must be letters, digits, '.', '_', '@' or '-'")
    registry = load_registry(directory)
    existing = registry.get(user)
    if existing is not None:
        if existing.fingerprint == fingerprint(public_key):
            return existing
        raise ZdpError(
            f"{user} already has a registered key ({existing.fingerprint}); remove it first "
            "(`zdp keys remove`) to register another"
        )
    _check_admin(admin, registry, user)
    if admin.user == user and not administrator:
        raise ZdpError(
            f"{user} cannot register themselves: only the first administrator does "
            "(--administrator); everyone else is registered by an administrator"
        )
    if admin.user == user and fingerprint(admin.key.public_key()) != fingerprint(public_key):
        raise ZdpError("the first administrator signs their own registration with that key")
    at = now or datetime.now(UTC)
    try:
        identity = ApproverIdentity(
            user=user,
            printed_name=printed_name.strip(),
            public_key_pem=_pem(public_key),
            fingerprint=fingerprint(public_key),
            registered_at=at,
            kind=kind,
            administrator=administrator,
            encrypted_key=encrypted_key,
        )
    except ValidationError:
        raise ZdpError("printed name must be 2 to 200 characters") from None
    signature = sign_approval(admin.key, _statement(identity, "register", admin.user, at))
    identity = identity.model_copy(update={"registration": signature})
    role = f"{kind}{', administrator' if administrator else ''}"
    if record is not None:
        record(
            RegistryChange(
                kind="identity_registered",
                event_id=f"register/{_event_id(signature)}",
                at=at,
                actor=admin.user,
                message=f"{admin.user} registered {user} ({identity.printed_name}; {role}) "
                f"with key {identity.fingerprint}",
                data={
                    "user": user,
                    "kind": kind,
                    "administrator": administrator,
                    "fingerprint": identity.fingerprint,
                    "registration": signature.model_dump(),
                },
            )
        )
    directory.mkdir(parents=True, exist_ok=True)
    write_file_atomic(
        directory / f"{user}.json", (identity.model_dump_json(indent=2) + "\n").encode()
    )
    return identity


def remove(
    directory: Path,
    user: str,
    admin: Admin,
    record: Recorder | None,
    *,
    now: datetime | None = None,
) -> ApproverIdentity:
    """Remove `user` under `admin`'s signature: recorded, then deleted."""
    registry = load_registry(directory)
    identity = registry.get(user)
    if identity is None:
        raise ZdpError(f"{user} is not registered")
    _check_admin(admin, registry, "")
    dependants = sorted(u for u, i in registry.items() if u != user and _registrar(i) == user)
    if dependants:
        raise ZdpError(
            f"{user} registered {', '.join(dependants)}: remove them first (another "
            "administrator can register them again), or their registrations would no longer "
            "verify"
        )
    if identity.administrator and not any(
        i.administrator for u, i in registry.items() if u != user
    ):
        raise ZdpError(f"{user} is the last administrator; register another one first")
    at = now or datetime.now(UTC)
    signature = sign_approval(admin.key, _statement(identity, "remove", admin.user, at))
    if record is not None:
        record(
            RegistryChange(
                kind="identity_removed",
                event_id=f"remove/{_event_id(signature)}",
                at=at,
                actor=admin.user,
                message=f"{admin.user} removed {user} ({identity.printed_name}; key "
                f"{identity.fingerprint})",
                data={
                    "user": user,
                    "fingerprint": identity.fingerprint,
                    "removal": signature.model_dump(),
                },
            )
        )
    (directory / f"{user}.json").unlink()
    return identity


def audit_recorder(home: Path | None = None) -> Recorder:
    """Record registry changes in the engine's audit log (workflow id `identity-registry`),
    each append with a signed checkpoint; a change that cannot be recorded is not made."""
    from zdp.compliance.audit.log import AuditEvent, open_store

    def record(change: RegistryChange) -> None:
        event = AuditEvent(
            event_id=change.event_id,
            at=change.at,
            kind=change.kind,
            message=change.message,
            actor=change.actor,
            data=dict(change.data),
        )
        open_store(home).append(AUDIT_WORKFLOW_ID, [event], checkpoint=True)

    return record
